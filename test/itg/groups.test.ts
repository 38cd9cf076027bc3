import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import * as core from '@actions/core';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import tar from 'tar-stream';
import { backup } from '../../src/commands.js';
import { parseBackupInputs } from '../../src/core/inputs.js';
import { DirDestination } from '../../src/destinations/dir/index.js';
import { backupSummary } from '../../src/report.js';
import { storedBlobs } from '../../src/snapshot/manifest.js';
import { inputs, restoreFrom, testEnv } from '../support/commands.js';
import { Resources, docker, quietLog, runContainer, waitFor } from '../support/fixtures.js';

/** Every file under `path` of a container (running or not), by its name below `path`, with its content. */
async function filesIn(container: string, path: string): Promise<Map<string, string>> {
  const stream = (await docker.getContainer(container).getArchive({ path })) as unknown as NodeJS.ReadableStream;
  const extract = tar.extract();
  stream.pipe(extract);
  const files = new Map<string, string>();
  for await (const entry of extract) {
    const chunks: Buffer[] = [];
    for await (const chunk of entry) chunks.push(chunk as Buffer);
    const parts = entry.header.name.split('/');
    if (entry.header.type === 'file') files.set(parts.length > 1 ? parts.slice(1).join('/') : parts[0], Buffer.concat(chunks).toString());
  }
  return files;
}

const compose = (project: string, service: string, extra: Record<string, string> = {}) => ({
  'com.docker.compose.project': project,
  'com.docker.compose.service': service,
  'com.docker.compose.container-number': '1',
  'com.docker.compose.oneoff': 'False',
  ...extra,
});

describe('consistency groups and Compose projects', () => {
  const res = new Resources(inject('runPrefix'), 'grp');
  const image = inject('fixtureImage');
  let store: string;
  const run = (values: Record<string, string>) =>
    backup(parseBackupInputs(inputs({ destination: `dir:${store}`, ...values })), { log: quietLog, env: testEnv });

  beforeAll(() => {
    store = join(res.tempDir(), 'store');
  });
  afterAll(() => res.cleanup());

  /**
   * A db and a web app under steady writes: the web writes upload N into its volume, then says N on a
   * host directory both bind-mount (not backed up; one write, so a reader sees all of it or an empty
   * file); the db appends row N to its volume only after that. In any one instant, every row has its upload. Named so that, one after the other, the
   * web is taken before the db.
   */
  async function blog(tag: string) {
    const project = `${res.prefix}-${tag}`;
    const chan = res.tempDir();
    const web = res.name(`${tag}-a-web`);
    const db = res.name(`${tag}-b-db`);
    const uploads = res.volume(`${tag}-uploads`);
    const rows = res.volume(`${tag}-rows`);
    const webLoop = 'i=0; while true; do i=$((i+1)); echo upload-$i > /uploads/$i; echo $i > /chan/last; busybox usleep 5000; done';
    const dbLoop =
      'n=0; while true; do last=$n; read last < /chan/last; [ -n "$last" ] || last=$n; while [ $n -lt $last ]; do n=$((n+1)); echo $n >> /data/rows; done; busybox usleep 5000; done';
    await runContainer(
      { name: db, Image: image, Labels: compose(project, 'db'), Cmd: ['sh', '-c', dbLoop], HostConfig: { Binds: [`${rows}:/data`, `${chan}:/chan`] } },
      'running',
    );
    await runContainer(
      {
        name: web,
        Image: image,
        Labels: compose(project, 'web', { 'com.docker.compose.depends_on': 'db:service_started:false' }),
        Cmd: ['sh', '-c', webLoop],
        HostConfig: { Binds: [`${uploads}:/uploads`, `${chan}:/chan`] },
      },
      'running',
    );
    await waitFor(async () => ((await filesIn(db, '/data').catch(() => new Map<string, string>())).get('rows') ?? '').split('\n').length > 50);
    return { project, web, db, uploads, rows };
  }

  /** The rows of the restored db whose upload the restored web lacks (both restored beside the originals, not started). */
  async function rowsAhead(app: Awaited<ReturnType<typeof blog>>, tag: string): Promise<{ rows: number; uploads: number; ahead: number[] }> {
    const [web, db] = [res.name(`${tag}-web-copy`), res.name(`${tag}-db-copy`)];
    const rename = [
      `${app.web}=${web}`,
      `${app.db}=${db}`,
      `${app.uploads}=${res.volume(`${tag}-uploads-copy`)}`,
      `${app.rows}=${res.volume(`${tag}-rows-copy`)}`,
    ].join(',');
    const r = await restoreFrom({ source: `dir:${store}`, snapshot: tag, rename, start: 'never' });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    for (const c of [web, db]) res.image((await docker.getContainer(c).inspect()).Config.Image);
    const rows = ((await filesIn(db, '/data')).get('rows') ?? '').split('\n').filter(Boolean);
    const uploads = await filesIn(web, '/uploads');
    return { rows: rows.length, uploads: uploads.size, ahead: rows.filter((n) => uploads.get(n) !== `upload-${n}\n`).map(Number) };
  }

  it('holds a db and a web app as one group: after a restore, every row has its upload', async () => {
    const app = await blog('grouped');
    const result = await run({ projects: app.project, 'group-by': 'compose-project', tag: 'grouped', parallelism: '1' });
    expect(result.failed, JSON.stringify(result.containers)).toBe(0);
    expect(result.groups).toEqual([{ name: app.project, containers: [app.db, app.web], status: 'ok', windowMs: expect.any(Number) }]);
    expect(result.groups?.[0].windowMs).toBeGreaterThan(0);
    expect(result.containers.map((c) => [c.group, c.groupWindowMs])).toEqual([
      [app.project, result.groups?.[0].windowMs],
      [app.project, result.groups?.[0].windowMs],
    ]);
    expect(backupSummary(core.summary.emptyBuffer(), result, false).stringify()).toContain(
      `- ✅ ${app.project} (${app.db}, ${app.web}): held together for ${result.groups?.[0].windowMs} ms`,
    );
    const log = quietLog.lines.join('\n');
    expect(log).toContain(`Group ${app.project}: ${app.db}, ${app.web} held together`);
    const set = (await new DirDestination('dir:store', store).readSet('grouped'))!;
    expect(set.containers.map((c) => [c.name, c.group]).sort()).toEqual(
      [
        [app.web, app.project],
        [app.db, app.project],
      ].sort(),
    );
    const check = await rowsAhead(app, 'grouped');
    expect(check.rows).toBeGreaterThan(50);
    expect(check.ahead).toEqual([]);
    for (const c of [app.web, app.db]) expect((await docker.getContainer(c).inspect()).State).toMatchObject({ Running: true, Paused: false });
  });

  it('without a group, the same app taken one container after the other restores rows whose upload is missing', async () => {
    const app = await blog('apart');
    const result = await run({ projects: app.project, tag: 'apart', parallelism: '1' });
    expect(result.failed, JSON.stringify(result.containers)).toBe(0);
    expect(result.groups ?? []).toEqual([]);
    const check = await rowsAhead(app, 'apart');
    expect(check.ahead.length).toBeGreaterThan(0);
  });

  it('restores a Compose project with its labels, its network and its volume under the project names', async () => {
    const project = `${res.prefix}-proj`;
    const network = res.network('proj_default');
    const volume = res.volume('proj_data');
    await docker.createNetwork({
      Name: network,
      Labels: { 'com.docker.compose.project': project, 'com.docker.compose.network': 'default', 'com.docker.compose.version': '2.24.0' },
    });
    await docker.createVolume({
      Name: volume,
      Labels: { 'com.docker.compose.project': project, 'com.docker.compose.volume': 'data', 'com.docker.compose.version': '2.24.0' },
    });
    const db = res.name('proj-db-1');
    const web = res.name('proj-web-1');
    const labels = { db: compose(project, 'db'), web: compose(project, 'web', { 'com.docker.compose.depends_on': 'db:service_started:false' }) };
    const net = (alias: string) => ({ EndpointsConfig: { [network]: { Aliases: [alias] } } });
    await runContainer(
      {
        name: db,
        Image: image,
        Labels: labels.db,
        Cmd: ['sh', '-c', 'echo 42 > /data/answer; exec sleep 100000'],
        HostConfig: { Binds: [`${volume}:/data`], NetworkMode: network },
        NetworkingConfig: net('db'),
      },
      'running',
    );
    await runContainer(
      { name: web, Image: image, Labels: labels.web, Cmd: ['sleep', '100000'], HostConfig: { NetworkMode: network }, NetworkingConfig: net('web') },
      'running',
    );
    await waitFor(async () => (await filesIn(db, '/data/answer').catch(() => new Map())).size === 1);
    const result = await run({ projects: project, 'group-by': 'compose-project', tag: 'project' });
    expect(result.failed, JSON.stringify(result.containers)).toBe(0);
    expect(result.containers.map((c) => c.name)).toEqual([db, web]);

    for (const c of [db, web]) await docker.getContainer(c).remove({ force: true });
    await docker.getVolume(volume).remove();
    await docker.getNetwork(network).remove();
    const r = await restoreFrom({ source: `dir:${store}`, snapshot: 'project' });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    for (const c of [db, web]) res.image((await docker.getContainer(c).inspect()).Config.Image);

    // What `docker compose ps` lists: the containers carrying the project's label.
    const listed = await docker.listContainers({ all: true, filters: { label: [`com.docker.compose.project=${project}`] } });
    expect(listed.map((c) => c.Names[0].slice(1)).sort()).toEqual([db, web]);
    for (const [name, want] of [
      [db, labels.db],
      [web, labels.web],
    ] as const) {
      const info = await docker.getContainer(name).inspect();
      expect(info.Config.Labels).toMatchObject(want);
      expect(info.State.Running).toBe(true);
      expect(Object.keys(info.NetworkSettings.Networks)).toEqual([network]);
    }
    expect((await docker.getNetwork(network).inspect()).Labels).toMatchObject({
      'com.docker.compose.project': project,
      'com.docker.compose.network': 'default',
    });
    expect((await docker.getVolume(volume).inspect()).Labels).toMatchObject({ 'com.docker.compose.project': project, 'com.docker.compose.volume': 'data' });
    expect((await docker.getContainer(db).inspect()).Mounts.map((m) => m.Name)).toEqual([volume]);
    expect((await filesIn(db, '/data/answer')).get('answer')).toBe('42\n');
  });

  it('runs pre-commands in dependency order and post-commands in reverse; a stopped group starts again', async () => {
    const project = `${res.prefix}-hooks`;
    const chan = res.tempDir();
    const hook = (what: string, service: string) => `echo ${what} ${service} >> /chan/log`;
    const make = async (service: string, extra: Record<string, string>) => {
      const name = res.name(`hooks-${service}-1`);
      const labels = { ...compose(project, service, extra), 'container-snapshot.pre': hook('pre', service), 'container-snapshot.post': hook('post', service) };
      await runContainer({ name, Image: image, Labels: labels, Cmd: ['sleep', '100000'], HostConfig: { Binds: [`${chan}:/chan`] } }, 'running');
      return name;
    };
    // Named against the order: the proxy before the web before the db, each depending on the next.
    const proxy = await make('a-proxy', { 'com.docker.compose.depends_on': 'b-web:service_started:false' });
    const web = await make('b-web', { 'com.docker.compose.depends_on': 'c-db:service_started:false' });
    const db = await make('c-db', {});
    const result = await run({ projects: project, 'group-by': 'compose-project', stop: 'true', 'stop-timeout': '1', tag: 'hooks' });
    expect(result.failed, JSON.stringify(result.containers)).toBe(0);
    expect(readFileSync(join(chan, 'log'), 'utf8').trim().split('\n')).toEqual([
      'pre c-db',
      'pre b-web',
      'pre a-proxy',
      'post a-proxy',
      'post b-web',
      'post c-db',
    ]);
    for (const c of [proxy, web, db]) {
      expect(result.containers.find((o) => o.name === c)?.stoppedMs).toBeGreaterThan(0);
      expect((await docker.getContainer(c).inspect()).State.Running).toBe(true);
    }
    expect(result.groups?.[0].windowMs).toBeGreaterThanOrEqual(Math.max(...result.containers.map((o) => o.stoppedMs)));
  });

  async function idle(suffix: string, labels: Record<string, string>) {
    const name = res.name(suffix);
    await runContainer({ name, Image: image, Labels: labels, Cmd: ['sleep', '100000'] }, 'running');
    return name;
  }

  it('group-by label:KEY makes one group per value; the container-snapshot.group label groups whatever group-by says', async () => {
    const key = `${res.prefix}.app`;
    const [a1, a2, b1, solo, own1, own2] = [
      await idle('lbl-a1', { [key]: 'alpha' }),
      await idle('lbl-a2', { [key]: 'alpha' }),
      await idle('lbl-b1', { [key]: 'beta' }),
      await idle('lbl-solo', {}),
      await idle('lbl-own1', { 'container-snapshot.group': `${res.prefix}-own` }),
      await idle('lbl-own2', { 'container-snapshot.group': `${res.prefix}-own` }),
    ];
    const result = await run({ containers: `${res.prefix}-lbl-*`, 'group-by': `label:${key}`, tag: 'labels' });
    expect(result.failed, JSON.stringify(result.containers)).toBe(0);
    expect(result.groups?.map((g) => [g.name, g.containers, g.status])).toEqual([
      ['alpha', [a1, a2], 'ok'],
      ['beta', [b1], 'ok'],
      [`${res.prefix}-own`, [own1, own2], 'ok'],
    ]);
    expect(result.containers.find((c) => c.name === solo)?.group).toBeUndefined();
    const none = await run({ containers: `${res.prefix}-lbl-*`, tag: 'labels-none' });
    expect(none.groups?.map((g) => g.name)).toEqual([`${res.prefix}-own`]);
  });

  it('a group with a member missing, or one failing, is not taken; the other groups are', async () => {
    const [p1, p2, p3] = ['miss', 'fail', 'fine'].map((s) => `${res.prefix}-${s}`);
    // web depends on db, but p1 has no db.
    const lonely = await idle('miss-web-1', compose(p1, 'web', { 'com.docker.compose.depends_on': 'db:service_started:false' }));
    const failing = await idle('fail-db-1', { ...compose(p2, 'db'), 'container-snapshot.pre': 'echo cannot flush >&2; exit 3' });
    const partner = await idle('fail-web-1', compose(p2, 'web'));
    const [fine1, fine2] = [await idle('fine-db-1', compose(p3, 'db')), await idle('fine-web-1', compose(p3, 'web'))];
    const result = await run({ projects: [p1, p2, p3].join(','), 'group-by': 'compose-project', tag: 'partial' });
    expect(result.failed).toBe(3);
    const byName = new Map(result.containers.map((c) => [c.name, c]));
    expect(byName.get(lonely)?.error).toBe(`group ${p1} not taken: a member is missing: ${lonely} depends on service db, which is not in the group`);
    expect(byName.get(failing)?.error).toMatch(
      new RegExp(`^group ${p2} not taken: ${failing} failed: pre-command exited with 3 after \\d+ ms: echo cannot flush >&2; exit 3$`),
    );
    expect(byName.get(partner)?.error).toBe(byName.get(failing)?.error);
    expect([fine1, fine2].map((n) => byName.get(n)?.status)).toEqual(['ok', 'ok']);
    expect(result.groups?.map((g) => [g.name, g.status])).toEqual([
      [p2, 'failed'],
      [p3, 'ok'],
      [p1, 'failed'],
    ]);
    expect(result.written).toBe(true);
    for (const c of [failing, partner]) expect((await docker.getContainer(c).inspect()).State).toMatchObject({ Running: true, Paused: false });
    const aborted = await run({ projects: [p2, p3].join(','), 'group-by': 'compose-project', tag: 'partial-abort', 'on-error': 'abort' }).catch(
      (err: Error) => err,
    );
    expect(aborted).toBeInstanceOf(Error);
    expect((aborted as Error).message).toContain(`group ${p2} not taken`);
  });

  it('restores a group as one transaction: a member refused, or failing midway, puts the others back', async () => {
    const group = `${res.prefix}-txn`;
    const members = ['a', 'b'].map((m) => ({ name: res.name(`tx-${m}`), volume: res.volume(`tx-${m}-data`), marker: `${m}-${res.prefix}` }));
    for (const m of members) {
      const cmd = `echo ${m.marker} > /data/marker; exec sleep 100000`;
      await runContainer(
        { name: m.name, Image: image, Labels: { 'container-snapshot.group': group }, Cmd: ['sh', '-c', cmd], HostConfig: { Binds: [`${m.volume}:/data`] } },
        'running',
      );
      await waitFor(async () => (await filesIn(m.name, '/data/marker').catch(() => new Map())).size === 1);
    }
    const result = await run({ containers: members.map((m) => m.name).join(','), tag: 'txn' });
    expect(result.failed, JSON.stringify(result.containers)).toBe(0);
    const [a, b] = members;
    const gone = async (m: (typeof members)[number]) => ({
      container: await docker
        .getContainer(m.name)
        .inspect()
        .then(
          () => false,
          () => true,
        ),
      volume: await docker
        .getVolume(m.volume)
        .inspect()
        .then(
          () => false,
          () => true,
        ),
    });
    const removeA = async () => {
      await docker.getContainer(a.name).remove({ force: true });
      await docker.getVolume(a.volume).remove();
    };

    // b still exists (no replace): refused, so a is not restored either.
    await removeA();
    const refused = await restoreFrom({ source: `dir:${store}`, snapshot: 'txn' });
    expect(refused.failed).toBe(2);
    expect(refused.containers.find((c) => c.name === a.name)?.error).toMatch(
      new RegExp(`^group ${group} not restored: ${b.name} failed: refused: container '${b.name}' exists`),
    );
    expect(await gone(a)).toEqual({ container: true, volume: true });
    expect((await docker.getContainer(b.name).inspect()).State.Running).toBe(true);

    // Neither exists; b's volume blob is damaged: a is restored first, then put back when b fails.
    await docker.getContainer(b.name).remove({ force: true });
    await docker.getVolume(b.volume).remove();
    const set = (await new DirDestination('dir:store', store).readSet('txn'))!;
    const [blob] = storedBlobs(set.containers.find((c) => c.name === b.name)!.volumes[0].blob);
    const file = join(store, 'blobs', 'sha256', blob.digest.slice('sha256:'.length));
    const bytes = readFileSync(file);
    bytes[Math.floor(bytes.length / 2)] ^= 0xff;
    writeFileSync(file, bytes);
    quietLog.lines.length = 0;
    const midway = await restoreFrom({ source: `dir:${store}`, snapshot: 'txn' });
    expect(midway.failed).toBe(2);
    expect(quietLog.lines).toContain(`${a.name}: restored (running)`);
    expect(midway.containers.find((c) => c.name === a.name)?.error).toMatch(new RegExp(`^group ${group} not restored: ${b.name} failed: `));
    expect(await gone(a)).toEqual({ container: true, volume: true });
    expect(await gone(b)).toEqual({ container: true, volume: true });
  });
});
