import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { backup, list, prune, restore, verify } from '../../src/commands.js';
import { parseBackupInputs, parseRestoreInputs } from '../../src/core/inputs.js';
import { parseDestination, type Credentials } from '../../src/core/destination-input.js';
import { processStart } from '../../src/core/process-liveness.js';
import { RegistryClient } from '../../src/registry/client.js';
import { storedBlobs, type SnapshotSet } from '../../src/snapshot/manifest.js';
import { parseRetentionPolicy } from '../../src/core/retention-input.js';
import { Resources, docker, quietLog, runContainer } from '../support/fixtures.js';

const env = { ...process.env, DOCKER_CONFIG: '/nonexistent' };
const inputs = (values: Record<string, string>) => (name: string) => values[name] ?? '';

/** Five sets, at chosen times: two on one day, one a month back. */
const SETS = [
  ['s1', '2026-11-01T10:00:00.000Z'],
  ['s2', '2026-11-20T10:00:00.000Z'],
  ['s3', '2026-11-28T10:00:00.000Z'],
  ['s4', '2026-11-28T20:00:00.000Z'],
  ['s5', '2026-11-30T10:00:00.000Z'],
] as const;
// restic's rules over them: last=1 keeps s5; daily=3 keeps the newest of the 3 newest days with a set: s5, s4, s2.
const POLICY = parseRetentionPolicy('last=1,daily=3')!;
const NOW = new Date('2026-12-01T00:00:00.000Z');

describe('prune applies a retention policy to dir: and registry:', () => {
  const res = new Resources(inject('runPrefix'), 'retention');
  const reg = inject('registry');
  const credentials: Credentials = { username: reg.username, password: reg.password };
  const creds = { 'registry-username': reg.username, 'registry-password': reg.password };
  const name = res.name('app');
  const volume = res.volume('data');
  const regPrefix = `${res.prefix}-sets`;
  const regLocation = `registry:${reg.host}/${regPrefix}`;
  const client = new RegistryClient({ host: reg.host, auth: credentials });
  let root = '';
  let dirLocation = '';
  const tagOf = (t: string) => `${res.prefix}-${t}`;
  const blobFiles = () => new Set(readdirSync(join(root, 'blobs', 'sha256')));
  const docOf = (tag: string): SnapshotSet => {
    const { digest } = JSON.parse(readFileSync(join(root, 'sets', `${tag}.json`), 'utf8')) as { digest: string };
    return JSON.parse(readFileSync(join(root, 'blobs', 'sha256', digest.slice(7)), 'utf8')) as SnapshotSet;
  };
  /** The blob files a set needs: its document and every blob it names. */
  const needs = (tag: string): string[] => {
    const set = docOf(tag);
    const { digest } = JSON.parse(readFileSync(join(root, 'sets', `${tag}.json`), 'utf8')) as { digest: string };
    const blobs = set.containers.flatMap((c) => [
      c.image.config,
      ...(c.image.layerIndex ? [c.image.layerIndex] : []),
      ...c.image.layers,
      ...c.volumes.flatMap((v) => [...storedBlobs(v.blob), ...(v.metadata?.record ? [v.metadata.record] : [])]),
    ]);
    return [digest, ...blobs.map((b) => b.digest)].map((d) => d.slice(7));
  };

  async function backUp(tag: string, created: string, extra: Record<string, string> = {}) {
    const opts = parseBackupInputs(
      inputs({
        containers: name,
        destination: `${dirLocation}\n${regLocation}`,
        tag,
        'pre-command': `echo ${tag} > /data/f && echo ${tag} > /stamp`,
        ...creds,
        ...extra,
      }),
    );
    const r = await backup(opts, { log: quietLog, env, now: () => new Date(created) });
    expect(r.failed).toBe(0);
    expect(r.destinations.every((d) => d.written)).toBe(true);
    return r;
  }

  async function restoredContent(location: string, tag: string): Promise<string> {
    await docker
      .getContainer(name)
      .remove({ force: true })
      .catch(() => undefined);
    await docker
      .getVolume(volume)
      .remove({ force: true })
      .catch(() => undefined);
    const r = await restore(parseRestoreInputs(inputs({ source: location, snapshot: tag, start: 'never', ...creds })), { log: quietLog, env });
    expect(r.failed).toBe(0);
    res.image((await docker.getContainer(name).inspect()).Config.Image);
    return restoredFiles();
  }

  /** /data/f of the restored volume and /stamp of the restored container's layer, read through the engine's archive API. */
  async function restoredFiles(): Promise<string> {
    const c = docker.getContainer(name);
    const read = async (path: string) => {
      const stream = (await c.getArchive({ path })) as unknown as NodeJS.ReadableStream;
      const chunks: Buffer[] = [];
      for await (const chunk of stream) chunks.push(chunk as Buffer);
      return /([a-z0-9-]+)\n/.exec(Buffer.concat(chunks).subarray(512).toString('utf8'))?.[1] ?? '';
    };
    return `${await read('/data/f')} ${await read('/stamp')}`;
  }

  beforeAll(async () => {
    root = join(res.tempDir(), 'store');
    dirLocation = `dir:${root}`;
    await runContainer({ name, Image: inject('fixtureImage'), Cmd: ['sh', '-c', 'exec sleep 100000'], HostConfig: { Binds: [`${volume}:/data`] } }, 'running');
    for (const [t, created] of SETS) await backUp(tagOf(t), created);
  });
  afterAll(() => res.cleanup());

  it('a dry run reports the plan and the space it would free, and changes nothing', async () => {
    const before = blobFiles();
    const [dirPlan, regPlan] = await prune([parseDestination(dirLocation), parseDestination(regLocation)], POLICY, true, credentials, {
      log: quietLog,
      env,
      now: () => NOW,
    });
    for (const plan of [dirPlan, regPlan]) {
      expect(plan.dryRun).toBe(true);
      expect(plan.kept.map((k) => [k.tag, k.reasons])).toEqual([
        [tagOf('s5'), ['last snapshot', 'daily snapshot', 'newest set']],
        [tagOf('s4'), ['daily snapshot']],
        [tagOf('s2'), ['daily snapshot']],
      ]);
      expect(plan.removed.map((r) => r.tag)).toEqual([tagOf('s3'), tagOf('s1')]);
    }
    expect(dirPlan.swept?.blobs).toBeGreaterThan(0);
    expect(regPlan.swept).toBeUndefined();
    expect(regPlan.note).toMatch(/garbage collection/);
    expect(blobFiles()).toEqual(before);
    expect((await list(parseDestination(dirLocation), {}, { log: quietLog, env })).map((s) => s.tag)).toHaveLength(SETS.length);
    expect(await client.listTags(regPrefix)).toHaveLength(SETS.length);
  });

  it('dir: removes the sets the policy drops and the blobs only they used, keeps shared blobs, and every kept set verifies and restores', async () => {
    const before = blobFiles();
    const kept = ['s5', 's4', 's2'].map(tagOf);
    const gone = ['s3', 's1'].map(tagOf);
    const keptBlobs = new Set(kept.flatMap(needs));
    const goneBlobs = new Set(gone.flatMap(needs));
    const onlyGone = [...goneBlobs].filter((b) => !keptBlobs.has(b));
    const shared = [...goneBlobs].filter((b) => keptBlobs.has(b));
    expect(onlyGone.length).toBeGreaterThan(0);
    expect(shared.length).toBeGreaterThan(0);
    const bytes = onlyGone.reduce((n, b) => n + statSync(join(root, 'blobs', 'sha256', b)).size, 0);
    const dryRun = (await prune([parseDestination(dirLocation)], POLICY, true, {}, { log: quietLog, env, now: () => NOW }))[0];

    const [result] = await prune([parseDestination(dirLocation)], POLICY, false, {}, { log: quietLog, env, now: () => NOW });
    expect(result.removed.map((r) => r.tag)).toEqual(gone);
    expect(result.swept).toEqual({ blobs: onlyGone.length, bytes });
    expect(dryRun.swept).toEqual(result.swept);
    const after = blobFiles();
    expect([...before].filter((b) => !after.has(b)).sort()).toEqual(onlyGone.sort());
    for (const b of keptBlobs) expect(after.has(b), `kept blob ${b}`).toBe(true);
    for (const t of gone) expect(existsSync(join(root, 'sets', `${t}.json`))).toBe(false);
    expect((await list(parseDestination(dirLocation), {}, { log: quietLog, env })).map((s) => s.tag)).toEqual(kept);
    for (const t of kept) expect((await verify(parseDestination(dirLocation), t, {}, { log: quietLog, env })).blobs).toBeGreaterThan(0);
    for (const t of gone) await expect(verify(parseDestination(dirLocation), t, {}, { log: quietLog, env })).rejects.toThrow();
    expect(await restoredContent(dirLocation, tagOf('s2'))).toBe(`${tagOf('s2')} ${tagOf('s2')}`);
    // Applied again: nothing more to remove.
    const [again] = await prune([parseDestination(dirLocation)], POLICY, false, {}, { log: quietLog, env, now: () => NOW });
    expect(again.removed).toEqual([]);
    expect(again.swept).toEqual({ blobs: 0, bytes: 0 });
  });

  it('registry: deletes the set manifest and each container image of the removed sets; the kept ones verify and restore', async () => {
    const kept = ['s5', 's4', 's2'].map(tagOf);
    const gone = ['s3', 's1'].map(tagOf);
    const [result] = await prune([parseDestination(regLocation)], POLICY, false, credentials, { log: quietLog, env, now: () => NOW });
    expect(result.removed.map((r) => r.tag)).toEqual(gone);
    expect((await client.listTags(regPrefix)).sort()).toEqual([...kept].sort());
    expect((await client.listTags(`${regPrefix}/${name}`)).sort()).toEqual([...kept].sort());
    expect((await list(parseDestination(regLocation), credentials, { log: quietLog, env })).map((s) => s.tag)).toEqual(kept);
    for (const t of kept) expect((await verify(parseDestination(regLocation), t, credentials, { log: quietLog, env })).blobs).toBeGreaterThan(0);
    expect(await restoredContent(regLocation, tagOf('s4'))).toBe(`${tagOf('s4')} ${tagOf('s4')}`);
  });

  it('keep after a backup: prunes each destination that holds the new set, never the set just written', async () => {
    // Made "earlier" than s5: the newest set is s5, and the set just written is protected all the same.
    const tag = tagOf('s6');
    const r = await backUp(tag, '2026-11-29T00:00:00.000Z', { keep: 'last=1' });
    expect(r.pruned?.map((p) => p.destination)).toEqual([dirLocation, regLocation]);
    for (const p of r.pruned ?? []) {
      expect(p.kept.map((k) => [k.tag, k.reasons.at(-1)])).toEqual([
        [tagOf('s5'), 'newest set'],
        [tag, 'just written'],
      ]);
      expect(p.removed.map((x) => x.tag)).toEqual([tagOf('s4'), tagOf('s2')]);
    }
    for (const loc of [dirLocation, regLocation]) {
      expect((await list(parseDestination(loc), credentials, { log: quietLog, env })).map((s) => s.tag)).toEqual([tagOf('s5'), tag]);
      await verify(parseDestination(loc), tag, credentials, { log: quietLog, env });
    }
  });

  it('prune-only with dry-run: reports each destination and backs up or removes nothing', async () => {
    const opts = parseBackupInputs(
      inputs({ containers: name, destination: `${dirLocation}\n${regLocation}`, keep: 'last=1', 'prune-only': 'true', 'dry-run': 'true', ...creds }),
    );
    const before = blobFiles();
    const r = await backup(opts, { log: quietLog, env, now: () => NOW });
    expect(r.containers).toEqual([]);
    expect(r.pruned?.map((p) => [p.destination, p.dryRun, p.removed.map((x) => x.tag)])).toEqual([
      [dirLocation, true, [tagOf('s6')]],
      [regLocation, true, [tagOf('s6')]],
    ]);
    expect(blobFiles()).toEqual(before);
    for (const loc of [dirLocation, regLocation])
      expect((await list(parseDestination(loc), credentials, { log: quietLog, env })).map((s) => s.tag)).toEqual([tagOf('s5'), tagOf('s6')]);
  });

  it('dir: a live backup lock defers the sweep (tags still go); a damaged set is kept, reported, and stops the sweep', async () => {
    const lock = join(root, 'locks', `backup-${hostname()}-${process.pid}-test.json`);
    writeFileSync(lock, JSON.stringify({ host: hostname(), pid: process.pid, started: processStart(process.pid) }));
    const before = blobFiles();
    const [locked] = await prune([parseDestination(dirLocation)], parseRetentionPolicy('last=1')!, false, {}, { log: quietLog, env, now: () => NOW });
    expect(locked.removed.map((r) => r.tag)).toEqual([tagOf('s6')]);
    expect(locked.swept).toEqual({ blobs: 0, bytes: 0, skipped: expect.stringContaining(`locks/backup-${hostname()}-${process.pid}-test.json`) });
    expect(blobFiles()).toEqual(before);
    rmSync(lock);

    const newest = tagOf('s5');
    const { digest } = JSON.parse(readFileSync(join(root, 'sets', `${newest}.json`), 'utf8')) as { digest: string };
    const docPath = join(root, 'blobs', 'sha256', digest.slice(7));
    const original = readFileSync(docPath);
    writeFileSync(docPath, Buffer.concat([original, Buffer.from(' ')]));
    try {
      const [damaged] = await prune([parseDestination(dirLocation)], parseRetentionPolicy('last=1')!, false, {}, { log: quietLog, env, now: () => NOW });
      expect(damaged.damaged.map((d) => d.tag)).toEqual([newest]);
      expect(damaged.kept).toEqual([]);
      expect(damaged.swept?.skipped).toMatch(new RegExp(`snapshot ${newest} cannot be read`));
      expect(existsSync(join(root, 'sets', `${newest}.json`))).toBe(true);
      expect(blobFiles()).toEqual(before);
    } finally {
      writeFileSync(docPath, original);
    }
    // The lock gone and the set whole again: the blobs of s6 go now.
    const [swept] = await prune([parseDestination(dirLocation)], parseRetentionPolicy('last=1')!, false, {}, { log: quietLog, env, now: () => NOW });
    expect(swept.swept?.blobs).toBeGreaterThan(0);
    await verify(parseDestination(dirLocation), newest, {}, { log: quietLog, env });
  });
});

describe('prune racing a backup to dir: loses nothing', () => {
  const res = new Resources(inject('runPrefix'), 'prune-race');
  const first = res.name('a');
  const second = res.name('b');
  let root = '';
  let location = '';
  const blobCount = () => readdirSync(join(root, 'blobs', 'sha256')).length;
  const opts = (tag: string, extra: Record<string, string> = {}) =>
    // One container after the other: the race below needs the first one's blobs stored while the second's pre-command sleeps.
    parseBackupInputs(
      inputs({ containers: `${first},${second}`, destination: location, tag, 'pre-command': 'sleep 2; date +%s%N > /stamp', parallelism: '1', ...extra }),
    );
  const locks = () => readdirSync(join(root, 'locks'));

  beforeAll(async () => {
    root = join(res.tempDir(), 'store');
    location = `dir:${root}`;
    for (const n of [first, second]) await runContainer({ name: n, Image: inject('fixtureImage'), Cmd: ['sh', '-c', 'exec sleep 100000'] }, 'running');
    for (const [tag, created] of [
      ['old', '2026-11-01T00:00:00.000Z'],
      ['new', '2026-11-02T00:00:00.000Z'],
    ]) {
      expect((await backup(opts(`${res.prefix}-${tag}`), { log: quietLog, env, now: () => new Date(created) })).failed).toBe(0);
    }
  });
  afterAll(() => res.cleanup());

  it('a prune while a backup has stored blobs no set names yet removes sets but sweeps nothing; the new set is whole', async () => {
    const baseline = blobCount();
    const tag = `${res.prefix}-during`;
    const running = backup(opts(tag), { log: quietLog, env, now: () => new Date('2026-11-03T00:00:00.000Z') });
    // The first container's blobs are stored; the second container's pre-command is still sleeping.
    const deadline = Date.now() + 60_000;
    while (blobCount() <= baseline && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(blobCount()).toBeGreaterThan(baseline);
    const policy = parseRetentionPolicy('last=1')!;
    const [plan] = await prune([parseDestination(location)], policy, true, {}, { log: quietLog, env });
    // Without the backup's lock these would go: blobs of the set being written that no set names yet.
    expect(plan.swept?.blobs).toBeGreaterThan(0);
    const [result] = await prune([parseDestination(location)], policy, false, {}, { log: quietLog, env });
    const r = await running;
    expect(r.failed).toBe(0);
    await verify(parseDestination(location), tag, {}, { log: quietLog, env });
    expect(result.removed.map((x) => x.tag)).toEqual([`${res.prefix}-old`]);
    expect(result.swept?.skipped).toMatch(/a backup is writing to .*locks\/backup-/);
    expect(locks()).toEqual([]);
    // The backup over: the next prune sweeps the removed set's blobs, and the new set still verifies.
    const [after] = await prune([parseDestination(location)], policy, false, {}, { log: quietLog, env });
    expect(after.removed.map((x) => x.tag)).toEqual([`${res.prefix}-new`]);
    expect(after.swept?.blobs).toBeGreaterThan(0);
    await verify(parseDestination(location), tag, {}, { log: quietLog, env });
  });

  it('a backup that finds a prune sweeping waits for it, then writes its set', async () => {
    const lock = join(root, 'locks', `prune-${hostname()}-${process.pid}-test.json`);
    writeFileSync(lock, JSON.stringify({ host: hostname(), pid: process.pid, started: processStart(process.pid) }));
    let done = false;
    const running = backup(opts(`${res.prefix}-waited`, { 'pre-command': '' }), { log: quietLog, env }).finally(() => {
      done = true;
    });
    await new Promise((r) => setTimeout(r, 1500));
    expect(done).toBe(false);
    expect(locks().some((n) => n.startsWith('backup-'))).toBe(true);
    rmSync(lock);
    expect((await running).failed).toBe(0);
    await verify(parseDestination(location), `${res.prefix}-waited`, {}, { log: quietLog, env });
  });
});

describe("keep counts each container's sets on its own", () => {
  const res = new Resources(inject('runPrefix'), 'keep-each');
  const db = res.name('db');
  const web = res.name('web');
  let location = '';

  beforeAll(async () => {
    location = `dir:${join(res.tempDir(), 'store')}`;
    for (const n of [db, web])
      await runContainer({ name: n, Image: inject('fixtureImage'), Cmd: ['sh', '-c', `echo ${n} > /who && exec sleep 100000`] }, 'running');
  });
  afterAll(() => res.cleanup());

  it("a container backed up more often, with keep last=1, never removes another container's only set; that set restores", async () => {
    const take = async (containers: string, tag: string, created: string, keep?: string) => {
      const r = await backup(parseBackupInputs(inputs({ containers, destination: location, tag, ...(keep ? { keep } : {}) })), {
        log: quietLog,
        env,
        now: () => new Date(created),
      });
      expect(r.failed).toBe(0);
      res.image(`container-snapshot/${containers}:${tag}`);
      return r;
    };
    await take(db, `${res.prefix}-db1`, '2026-11-01T02:00:00.000Z');
    await take(web, `${res.prefix}-web1`, '2026-11-02T02:00:00.000Z');
    await take(web, `${res.prefix}-web2`, '2026-11-03T02:00:00.000Z', 'last=1');
    const r = await take(web, `${res.prefix}-web3`, '2026-11-04T02:00:00.000Z', 'last=1');
    expect(r.pruned?.[0].kept.map((k) => [k.tag, k.reasons])).toEqual([
      [`${res.prefix}-web3`, ['last snapshot', 'newest set']],
      [`${res.prefix}-db1`, ['last snapshot', 'newest set']],
    ]);
    expect(r.pruned?.[0].removed.map((k) => k.tag)).toEqual([`${res.prefix}-web2`]);
    expect((await list(parseDestination(location), {}, { log: quietLog, env })).map((s) => s.tag).sort()).toEqual([`${res.prefix}-db1`, `${res.prefix}-web3`]);
    await verify(parseDestination(location), `${res.prefix}-db1`, {}, { log: quietLog, env });
    const copy = res.name('db-copy');
    const restored = await restore(parseRestoreInputs(inputs({ source: location, snapshot: `${res.prefix}-db1`, rename: `${db}=${copy}`, start: 'always' })), {
      log: quietLog,
      env,
    });
    expect(restored.failed, JSON.stringify(restored.containers)).toBe(0);
    expect(execFileSync('docker', ['exec', copy, 'cat', '/who'], { encoding: 'utf8' })).toBe(`${db}\n`);
  });
});
