import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { join } from 'node:path';
import { backup, list, restore, verify } from '../../src/commands.js';
import { parseBackupInputs, parseRestoreInputs } from '../../src/core/inputs.js';
import { parseDestination } from '../../src/core/destination-input.js';
import { DirDestination } from '../../src/destinations/dir/index.js';
import { Resources, docker, quietLog, runContainer, treeDigest, waitFor } from '../support/fixtures.js';
import { recordingLog } from '../support/log.js';
import { settle, settledEnv } from '../support/commands.js';

const env = { ...process.env, DOCKER_CONFIG: '/nonexistent' };
const inputs = (values: Record<string, string>) => (name: string) => values[name] ?? '';

describe('backup and restore options', () => {
  const res = new Resources(inject('runPrefix'), 'opt');
  const reg = inject('registry');
  const creds = { 'registry-username': reg.username, 'registry-password': reg.password };
  const vol = res.volume('data');
  let dir: string;
  let registry: string;
  let app: string;

  beforeAll(async () => {
    dir = `dir:${join(res.tempDir(), 'store')}`;
    registry = `registry:${reg.host}/${res.prefix}`;
    app = res.name('app');
    await runContainer(
      {
        name: app,
        Image: inject('fixtureImage'),
        Cmd: ['sh', '-c', 'test -f /data/f || { seq 1 20000 > /data/f; echo l > /layer; }; exec sleep 100000'],
        HostConfig: { Binds: [`${vol}:/data`] },
      },
      'running',
    );
    await waitFor(
      async () =>
        await treeDigest(app, '/layer').then(
          () => true,
          () => false,
        ),
    );
    // Its files settled before the first set (a 2 s margin, settledEnv): else the set after takes them again as racy (LayerEntry.racy).
    await settle();
  });

  afterAll(() => res.cleanup());

  it('stores one set in several destinations, each complete and verifiable', async () => {
    const r = await backup(parseBackupInputs(inputs({ containers: app, destination: `${dir}\n${registry}`, tag: 'multi', ...creds }), undefined, settledEnv), {
      log: quietLog,
      env: settledEnv,
    });
    expect(r.failed).toBe(0);
    expect(r.containers[0].destinations.map((d) => d.destination)).toEqual([dir, registry]);
    for (const location of [dir, registry]) {
      const sets = await list(parseDestination(location), creds['registry-username'] ? { username: reg.username, password: reg.password } : {}, {
        log: quietLog,
        env,
      });
      expect(sets.map((s) => s.tag)).toContain('multi');
      const v = await verify(parseDestination(location), 'multi', { username: reg.username, password: reg.password }, { log: quietLog, env });
      expect(v.blobs).toBeGreaterThanOrEqual(3);
    }
  });

  it('a set held by one destination is copied into one that lacks it, whole (volume chunks and side records too): it verifies and restores from there', async () => {
    const first = `dir:${join(res.tempDir(), 'first')}`;
    const second = `dir:${join(res.tempDir(), 'second')}`;
    const r = await backup(parseBackupInputs(inputs({ containers: app, destination: first, tag: 'copied' })), { log: quietLog, env });
    expect(r.failed).toBe(0);
    const done = await backup(parseBackupInputs(inputs({ containers: app, destination: `${first}\n${second}`, tag: 'copied' })), { log: quietLog, env });
    expect(done.failed).toBe(0);
    const set = await new DirDestination(second, second.slice(4)).readSet('copied');
    // The volume's side record (sub-second times at least) is among what had to be copied.
    expect(set?.containers[0].volumes[0].metadata?.record).toBeDefined();
    const v = await verify(parseDestination(second), 'copied', {}, { log: quietLog, env });
    expect(v.blobs).toBeGreaterThanOrEqual(3);
    const copy = res.name('copied');
    const restored = await restore(
      parseRestoreInputs(inputs({ source: second, snapshot: 'copied', rename: `${app}=${copy}\n${vol}=${res.volume('copiedvol')}` })),
      { log: quietLog, env },
    );
    res.image(`container-snapshot/${app}:copied`);
    expect(restored.failed, JSON.stringify(restored.containers)).toBe(0);
    expect((await treeDigest(copy, '/data')).digest).toBe((await treeDigest(app, '/data')).digest);
  });

  it('an unchanged container uploads no layer or volume to the registry the second time', async () => {
    // Its log in the failure message: what was stored again, and why.
    const log = recordingLog();
    const r = await backup(parseBackupInputs(inputs({ containers: app, destination: registry, tag: 'again', ...creds }), undefined, settledEnv), {
      log,
      env: settledEnv,
    });
    expect(r.failed).toBe(0);
    expect(r.containers[0].blobs, log.lines.join('\n')).toEqual({ written: 0, reused: expect.any(Number) });
    expect(r.containers[0].blobs.reused).toBeGreaterThanOrEqual(3);
  });

  it('pause: false never pauses the container', async () => {
    let sawPaused = false;
    const poll = setInterval(() => {
      docker
        .getContainer(app)
        .inspect()
        .then(
          (i) => (sawPaused ||= i.State.Paused),
          () => undefined,
        );
    }, 5);
    const r = await backup(parseBackupInputs(inputs({ containers: app, destination: dir, tag: 'nopause', pause: 'false' })), { log: quietLog, env }).finally(
      () => clearInterval(poll),
    );
    expect(r.failed).toBe(0);
    expect(r.containers[0].pausedMs).toBe(0);
    expect(sawPaused).toBe(false);
  });

  it('include-volumes: false leaves volumes out of the backup, and out of a restore', async () => {
    const r = await backup(parseBackupInputs(inputs({ containers: app, destination: dir, tag: 'novol', 'include-volumes': 'false' })), { log: quietLog, env });
    expect(r.containers[0].volumes).toEqual([]);
    const restored = await restore(
      parseRestoreInputs(inputs({ source: dir, snapshot: 'multi', rename: `${app}=${res.name('novol')}`, 'include-volumes': 'false', start: 'never' })),
      { log: quietLog, env },
    );
    expect(restored.failed, JSON.stringify(restored.containers)).toBe(0);
    const info = await docker.getContainer(res.name('novol')).inspect();
    res.image(info.Config.Image);
    // The container still mounts the (live) volume by name; nothing was written into it.
    expect(info.Mounts.map((m) => m.Name)).toEqual([vol]);
    expect(info.State.Status).toBe('created');
  });

  it('start: always starts a container recorded as not running; auto leaves it created', async () => {
    const job = res.name('job');
    await runContainer({ name: job, Image: inject('fixtureImage'), Cmd: ['sh', '-c', 'echo ran >> /runs; exec sleep 100000'] }, 'running');
    await docker.getContainer(job).stop({ t: 0 });
    const r = await backup(parseBackupInputs(inputs({ containers: job, destination: dir, tag: 'stopped' })), { log: quietLog, env });
    expect(r.containers[0].state).toBe('exited');
    const always = await restore(
      parseRestoreInputs(inputs({ source: dir, snapshot: 'stopped', rename: `${job}=${res.name('job-always')}`, start: 'always' })),
      { log: quietLog, env },
    );
    expect(always.containers[0]).toMatchObject({ status: 'ok', state: 'running' });
    const auto = await restore(parseRestoreInputs(inputs({ source: dir, snapshot: 'stopped', rename: `${job}=${res.name('job-auto')}` })), {
      log: quietLog,
      env,
    });
    expect(auto.containers[0]).toMatchObject({ status: 'ok', state: 'created' });
    res.image((await docker.getContainer(res.name('job-auto')).inspect()).Config.Image);
  });
});

describe('containers of one set that share a base image', () => {
  const res = new Resources(inject('runPrefix'), 'share');
  const reg = inject('registry');
  afterAll(() => res.cleanup());

  it.each(['dir', 'registry'] as const)('store the base layer once (%s)', async (kind) => {
    const location = kind === 'dir' ? `dir:${join(res.tempDir(), 'store')}` : `registry:${reg.host}/${res.prefix}-${kind}`;
    const names = [res.name(`${kind}-a`), res.name(`${kind}-b`)];
    // Each writes a file of its own, so each image is the shared base plus a layer of its own.
    for (const name of names) await runContainer({ name, Image: inject('fixtureImage'), Cmd: ['sh', '-c', 'hostname > /me'] }, 'exited');
    const r = await backup(
      parseBackupInputs(
        inputs({ containers: names.join(','), destination: location, tag: 'shared', 'registry-username': reg.username, 'registry-password': reg.password }),
      ),
      { log: quietLog, env },
    );
    expect(r.failed).toBe(0);
    const [first, second] = r.containers;
    expect(first.blobs).toEqual({ written: 2, reused: 0 });
    // The base layer is stored with the first container; the second writes only its own top layer.
    expect(second.blobs).toEqual({ written: 1, reused: 1 });
    const v = await verify(parseDestination(location), 'shared', { username: reg.username, password: reg.password }, { log: quietLog, env });
    expect(v.blobs).toBe(6);
  });
});
