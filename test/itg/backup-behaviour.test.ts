import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { existsSync, readFileSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { backup, list, restore } from '../../src/commands.js';
import { parseBackupInputs, parseRestoreInputs } from '../../src/core/inputs.js';
import { parseDestination } from '../../src/core/destination-input.js';
import { Resources, commitsOf, docker, mountpointOf, quietLog, runContainer, treeDigest, waitFor } from '../support/fixtures.js';
import { recordingLog } from '../support/log.js';
import { execFileSync } from 'node:child_process';

const env = { ...process.env, DOCKER_CONFIG: '/nonexistent' };
const inputs = (values: Record<string, string>) => (name: string) => values[name] ?? '';

function blobCount(store: string): number {
  const dir = join(store, 'blobs', 'sha256');
  return existsSync(dir) ? readdirSync(dir).length : 0;
}

describe('selection, failures and reuse', () => {
  const res = new Resources(inject('runPrefix'), 'beh');
  let store: string;
  const vol = res.volume('v');

  beforeAll(async () => {
    store = join(res.tempDir(), 'store');
    const image = inject('fixtureImage');
    await runContainer(
      {
        name: res.name('web-1'),
        Image: image,
        Labels: { backup: 'yes', tier: 'web' },
        Cmd: ['sh', '-c', 'echo x > /v/x; exec sleep 100000'],
        HostConfig: { Binds: [`${vol}:/v`] },
      },
      'running',
    );
    await waitFor(async () => (await treeDigest(res.name('web-1'), '/v')).entries > 1);
    await runContainer({ name: res.name('web-2'), Image: image, Labels: { tier: 'web' }, Cmd: ['sleep', '100000'] }, 'running');
    await runContainer({ name: res.name('db-10'), Image: image, Labels: { backup: 'yes' }, Cmd: ['true'] }, 'exited');
  });

  afterAll(() => res.cleanup());

  const names = (r: { containers: Array<{ name: string; status: string }> }, status = 'ok') =>
    r.containers.filter((c) => c.status === status).map((c) => c.name.slice(res.prefix.length + 1));

  it('selects by glob, regex, label and exclusion', async () => {
    const p = res.prefix;
    const dry = (v: Record<string, string>) =>
      backup(parseBackupInputs(inputs({ destination: `dir:${store}`, 'dry-run': 'true', ...v })), { log: quietLog, env });
    expect(names(await dry({ containers: `${p}-web-*` }), 'planned')).toEqual(['web-1', 'web-2']);
    expect(names(await dry({ containers: `/^${p}-db-[0-9]+$/` }), 'planned')).toEqual(['db-10']);
    expect(names(await dry({ containers: `${p}-*`, labels: 'backup=yes' }), 'planned')).toEqual(['db-10', 'web-1']);
    expect(names(await dry({ containers: `${p}-*`, exclude: `${p}-web-2` }), 'planned')).toEqual(['db-10', 'web-1']);
    expect(blobCount(store)).toBe(0);
  });

  it('dry run plans with volumes and changes nothing', async () => {
    const r = await backup(parseBackupInputs(inputs({ containers: res.name('web-1'), destination: `dir:${store}`, 'dry-run': 'true' })), {
      log: quietLog,
      env,
    });
    expect(r.containers[0]).toMatchObject({ status: 'planned', volumes: [vol] });
    expect(r.written).toBe(false);
    expect(existsSync(store)).toBe(false);
    expect(await commitsOf([r.containers[0].id])).toEqual([]);
  });

  it('a missing container is an error for it alone; the others are stored and the set says so', async () => {
    const r = await backup(
      parseBackupInputs(inputs({ containers: `${res.name('web-1')}, ${res.name('ghost')}`, destination: `dir:${store}`, tag: 'partial' })),
      { log: quietLog, env },
    );
    expect(r.failed).toBe(1);
    expect(r.containers.find((c) => c.status === 'failed')?.error).toContain(`no such container: ${res.name('ghost')}`);
    expect(names(r)).toEqual(['web-1']);
    const sets = await list(parseDestination(`dir:${store}`), {}, { log: quietLog, env });
    expect(sets.find((s) => s.tag === 'partial')?.containers).toEqual([res.name('web-1')]);
    const { digest } = JSON.parse(readFileSync(join(store, 'sets', 'partial.json'), 'utf8')) as { digest: string };
    const doc = JSON.parse(readFileSync(join(store, 'blobs', 'sha256', digest.slice('sha256:'.length)), 'utf8')) as {
      failures: Array<{ name: string; error: string }>;
    };
    expect(doc.failures).toEqual([{ name: res.name('ghost'), error: `no such container: ${res.name('ghost')}` }]);
  });

  it('on-error abort stops before anything is written', async () => {
    const before = blobCount(store);
    await expect(
      backup(
        parseBackupInputs(
          inputs({ containers: `${res.name('web-1')}, ${res.name('ghost')}`, destination: `dir:${store}`, tag: 'aborted', 'on-error': 'abort' }),
        ),
        { log: quietLog, env },
      ),
    ).rejects.toThrow(/Aborted before any change: .*no such container/);
    expect(existsSync(join(store, 'sets', 'aborted.json'))).toBe(false);
    expect(blobCount(store)).toBe(before);
  });

  it('if-no-match warns, errs or stays quiet', async () => {
    const run = (mode: string) =>
      backup(parseBackupInputs(inputs({ containers: `${res.prefix}-nothing-*`, destination: `dir:${store}`, 'if-no-match': mode })), { log: quietLog, env });
    quietLog.lines.length = 0;
    expect((await run('warn')).containers).toEqual([]);
    expect(quietLog.lines.some((l) => l.startsWith('warning: No container matched'))).toBe(true);
    quietLog.lines.length = 0;
    await run('ignore');
    expect(quietLog.lines.some((l) => l.includes('No container matched'))).toBe(false);
    await expect(run('error')).rejects.toThrow(/No container matched/);
  });

  it('refuses a tag that already exists, before any change', async () => {
    await expect(
      backup(parseBackupInputs(inputs({ containers: res.name('web-2'), destination: `dir:${store}`, tag: 'partial' })), { log: quietLog, env }),
    ).rejects.toThrow(/Snapshot partial already exists/);
  });

  it('an unchanged container stores nothing new the second time, and the temporary images are gone', async () => {
    const first = await backup(parseBackupInputs(inputs({ containers: res.name('db-10'), destination: `dir:${store}`, tag: 'reuse-1' })), {
      log: quietLog,
      env,
    });
    const blobsAfterFirst = blobCount(store);
    const second = await backup(parseBackupInputs(inputs({ containers: res.name('db-10'), destination: `dir:${store}`, tag: 'reuse-2' })), {
      log: quietLog,
      env,
    });
    expect(first.failed + second.failed).toBe(0);
    expect(second.containers[0].blobs.written).toBe(0);
    expect(second.containers[0].blobs.reused).toBeGreaterThan(0);
    // Only the image config (new creation time, so a new digest) and the set document are new.
    expect(blobCount(store) - blobsAfterFirst).toBeLessThanOrEqual(2);
    expect(await commitsOf([first.containers[0].id])).toEqual([]);
  });

  it('restore never clobbers an existing container or non-empty volume without replace, and replaces with it', async () => {
    const r = await restore(parseRestoreInputs(inputs({ source: `dir:${store}`, snapshot: 'partial' })), { log: quietLog, env });
    expect(r.failed).toBe(1);
    expect(r.containers[0].error).toMatch(/container '.*web-1' exists/);
    const id = (await docker.getContainer(res.name('web-1')).inspect()).Id;
    const renamed = await restore(
      parseRestoreInputs(inputs({ source: `dir:${store}`, snapshot: 'partial', rename: `${res.name('web-1')}=${res.name('web-copy')}` })),
      { log: quietLog, env },
    );
    expect(renamed.failed).toBe(1);
    expect(renamed.containers[0].error).toContain(`volume '${vol}' is in use by ${res.name('web-1')}`);
    const both = await restore(
      parseRestoreInputs(
        inputs({ source: `dir:${store}`, snapshot: 'partial', rename: `${res.name('web-1')}=${res.name('web-copy')}\n${vol}=${res.volume('v-copy')}` }),
      ),
      { log: quietLog, env },
    );
    expect(both.failed, JSON.stringify(both.containers)).toBe(0);
    expect((await docker.getContainer(res.name('web-copy')).inspect()).Mounts.map((m) => m.Name)).toEqual([res.volume('v-copy')]);
    res.image((await docker.getContainer(res.name('web-copy')).inspect()).Config.Image);
    await docker.getContainer(res.name('web-copy')).remove({ force: true });
    const replaced = await restore(
      parseRestoreInputs(inputs({ source: `dir:${store}`, snapshot: 'partial', containers: res.name('web-1'), replace: 'true' })),
      { log: quietLog, env },
    );
    expect(replaced.failed, JSON.stringify(replaced.containers)).toBe(0);
    expect(replaced.containers[0].id).not.toBe(id);
    expect(replaced.containers[0].state).toBe('running');
  });

  it('restore names what it cannot find', async () => {
    await expect(restore(parseRestoreInputs(inputs({ source: `dir:${store}`, snapshot: 'nope' })), { log: quietLog, env })).rejects.toThrow(
      /Snapshot 'nope' not found .* Expected one of: /,
    );
    await expect(
      restore(parseRestoreInputs(inputs({ source: `dir:${store}`, snapshot: 'partial', containers: 'zzz' })), { log: quietLog, env }),
    ).rejects.toThrow(/has no container zzz/);
  });

  it("a volume holding a path longer than 4096 bytes: the backup says in a warning and the container's note that it is not in the set", async () => {
    const volume = res.volume('deep');
    const m = await mountpointOf(volume);
    // Made one level at a time, each from the one above: no path handed to the kernel is longer than PATH_MAX.
    execFileSync('bash', [
      '-c',
      `cd "$1" && echo top > top && for i in $(seq 40); do mkdir ${'D'.repeat(120)} && cd ${'D'.repeat(120)}; done && echo x > leaf`,
      'deep',
      m,
    ]);
    const name = res.name('deep');
    await runContainer({ name, Image: inject('fixtureImage'), Cmd: ['sleep', '100000'], HostConfig: { Binds: [`${volume}:/v`] } }, 'running');
    const log = recordingLog();
    const r = await backup(parseBackupInputs(inputs({ containers: name, destination: `dir:${join(res.tempDir(), 'store')}`, tag: 'deep' })), { log, env });
    expect(r.failed).toBe(0);
    const said = `${volume} holds paths longer than 4096 bytes (PATH_MAX), which are not in the set`;
    expect(log.lines).toContainEqual(expect.stringContaining(`warning: ${name}: ${said}`));
    expect(r.containers[0].note).toContain(said);
  });

  it('a container that takes volumes from one outside the set: a warning and its note say the set restores only beside that one', async () => {
    const image = inject('fixtureImage');
    const owner = res.name('vf-owner');
    const taker = res.name('vf-taker');
    await runContainer({ name: owner, Image: image, Cmd: ['sleep', '100000'], HostConfig: { Binds: [`${res.volume('vf')}:/shared`] } }, 'running');
    await runContainer({ name: taker, Image: image, Cmd: ['sleep', '100000'], HostConfig: { VolumesFrom: [owner] } }, 'running');
    const take = async (containers: string) => {
      const log = recordingLog();
      const r = await backup(parseBackupInputs(inputs({ containers, destination: `dir:${join(res.tempDir(), 'store')}`, tag: 'vf' })), { log, env });
      expect(r.failed).toBe(0);
      return { log, note: r.containers.find((c) => c.name === taker)?.note };
    };
    const alone = await take(taker);
    const said = `takes volumes from ${owner} (--volumes-from), which this set does not hold`;
    expect(alone.note).toContain(said);
    expect(alone.log.lines).toContainEqual(expect.stringContaining(`warning: ${taker}: ${said}`));
    expect((await take(`${owner},${taker}`)).note).toBeUndefined();
  });

  it('a volume holding a file modified before 1970: a warning says a restore gives it 1970-01-01 (the engine sets no earlier time)', async () => {
    const volume = res.volume('old');
    const m = await mountpointOf(volume);
    writeFileSync(join(m, 'old'), 'old\n');
    utimesSync(join(m, 'old'), new Date('1960-01-01T00:00:00Z'), new Date('1960-01-01T00:00:00Z'));
    const name = res.name('old');
    await runContainer({ name, Image: inject('fixtureImage'), Cmd: ['sleep', '100000'], HostConfig: { Binds: [`${volume}:/v`] } }, 'running');
    const log = recordingLog();
    const r = await backup(parseBackupInputs(inputs({ containers: name, destination: `dir:${join(res.tempDir(), 'store')}`, tag: 'old' })), { log, env });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    expect(log.lines.filter((l) => l.startsWith('warning:') && l.includes('modified before 1970')).join('\n')).toContain(
      'the modification times of 1 file(s) modified before 1970 (a restore through the engine gives them 1970-01-01)',
    );
  });
});
