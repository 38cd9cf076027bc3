import { afterAll, describe, expect, inject, it } from 'vitest';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { Resources, docker, runContainer, signalWhen, treeDigest, waitFor, sh } from '../support/fixtures.js';
import { startRegistry } from '../support/registry.js';
import { runCli } from '../support/runner.js';

/** The digests of the writable layer's directory and the volume: a point in time of the container. */
const state = async (container: string) => ({ app: (await treeDigest(container, '/app')).digest, vol: (await treeDigest(container, '/v')).digest });

/** The image record of a set in a dir: store (the descriptor in sets/<tag>.json, then the document it names). */
function imageOf(store: string, tag: string): { layers: Array<{ digest: string }>; deltas?: number } {
  const { digest } = JSON.parse(readFileSync(join(store, 'sets', `${tag}.json`), 'utf8')) as { digest: string };
  const set = JSON.parse(readFileSync(join(store, 'blobs', 'sha256', digest.slice('sha256:'.length)), 'utf8')) as {
    containers: Array<{ image: { layers: Array<{ digest: string }>; deltas?: number } }>;
  };
  return set.containers[0].image;
}

const blobs = (store: string) => readdirSync(join(store, 'blobs', 'sha256'));

/**
 * The moments a third incremental backup is killed at, each an observable state polled for:
 * the container held while its changes and volume are read; the first new blob (the delta layer)
 * stored with no set document yet; the volume's chunks being written (20 of them stored).
 */
const KILL_POINTS: Record<string, (ctx: { id: string; store: string; before: Set<string> }) => () => Promise<boolean>> = {
  'while held and the delta is read':
    ({ id }) =>
    async () =>
      (await docker.getContainer(id).inspect()).State.Paused,
  'after the delta layer is stored, before the set document':
    ({ store, before }) =>
    async () =>
      blobs(store).some((b) => !before.has(b)) && !existsSync(join(store, 'sets', 'cut.json')),
  // The 120 MB volume is stored as ~225 chunks, each a blob: killed once 20 of them are there.
  'while the volume is stored':
    ({ store, before }) =>
    async () =>
      blobs(store).filter((b) => !before.has(b)).length >= 20 && !existsSync(join(store, 'sets', 'cut.json')),
};

describe('an interrupted incremental backup never damages earlier sets', () => {
  const res = new Resources(inject('runPrefix'), 'dki');
  afterAll(() => res.cleanup());

  it.each(Object.keys(KILL_POINTS))(
    'killed (SIGKILL) %s: the container runs again, every earlier set restores to its own point in time, verify passes, the next delta is on the last complete set',
    async (point) => {
      const suffix = `c${Object.keys(KILL_POINTS).indexOf(point)}`;
      const name = res.name(suffix);
      const volume = res.volume(`${suffix}-v`);
      const store = join(res.tempDir(), 'store');
      await runContainer({ name, Image: inject('fixtureImage'), Cmd: ['sleep', '100000'], HostConfig: { Binds: [`${volume}:/v`] } }, 'running');
      const id = (await docker.getContainer(name).inspect()).Id;

      // A full set and two delta sets, each state recorded.
      const changes = [
        'mkdir -p /app/dir && echo alpha > /app/a.txt && echo x > /app/dir/x && echo one > /v/one',
        'echo beta >> /app/a.txt && rm /app/dir/x && echo two > /v/two',
        'mv /app/dir /app/renamed && echo y > /app/renamed/y && dd if=/dev/urandom of=/app/r.bin bs=64k count=4 2>/dev/null',
      ];
      const states: Array<{ app: string; vol: string }> = [];
      for (const [i, change] of changes.entries()) {
        await sh(name, change);
        const r = await runCli(['backup', '--containers', name, '--destination', `dir:${store}`, '--tag', `s${i + 1}`]);
        expect(r.code, r.stderr).toBe(0);
        states.push(await state(name));
      }
      expect([imageOf(store, 's1').deltas ?? 0, imageOf(store, 's2').deltas, imageOf(store, 's3').deltas]).toEqual([0, 1, 2]);

      // The third incremental backup: 4 MB more in the layer, 120 MB of random data in the volume (the volume's store takes a while).
      await sh(name, 'dd if=/dev/urandom of=/app/more.bin bs=1M count=4 2>/dev/null && dd if=/dev/urandom of=/v/big bs=1M count=120 2>/dev/null');
      const before = new Set(blobs(store));
      const sent: { at?: number; pid?: number } = {};
      const killed = await runCli(['backup', '--containers', name, '--destination', `dir:${store}`, '--tag', 'cut'], {
        onSpawn: signalWhen(KILL_POINTS[point]({ id, store, before }), 'SIGKILL', sent),
      });
      expect(sent.at, killed.stderr).toBeDefined();
      expect(killed.code).toBe(128);
      expect(existsSync(join(store, 'sets', 'cut.json'))).toBe(false);
      // Killed while held, nothing could unpause it: the next run's recovery does. Later, the run itself had.
      const held = point === 'while held and the delta is read';
      expect((await docker.getContainer(id).inspect()).State.Paused).toBe(held);

      // The next backup recovers what the killed one left (a paused container unpaused, .tmp/ emptied) and takes a delta on s3.
      const next = await runCli(['backup', '--containers', name, '--destination', `dir:${store}`, '--tag', 'next']);
      expect(next.code, next.stderr).toBe(0);
      if (held) expect(next.stderr).toMatch(/ended without cleaning up \(1 paused container\(s\)/);
      const info = await docker.getContainer(id).inspect();
      expect({ running: info.State.Running, paused: info.State.Paused }).toEqual({ running: true, paused: false });
      expect(readdirSync(join(store, '.tmp'))).toEqual([]);
      expect(readdirSync(join(store, 'sets')).sort()).toEqual(['next.json', 's1.json', 's2.json', 's3.json']);
      const last = imageOf(store, 'next');
      const base = imageOf(store, 's3');
      // On failure, the next run's log says why its layer was not a delta (the tail of a CI log shows it).
      expect(
        last.deltas,
        next.stderr
          .split('\n')
          .filter((l) => /layer/.test(l))
          .join('\n'),
      ).toBe(3);
      expect(last.layers.slice(0, base.layers.length)).toEqual(base.layers);
      states.push(await state(name));

      const verify = await runCli(['verify', '--source', `dir:${store}`, '--all']);
      expect(verify.code, verify.stderr).toBe(0);

      // Every set restores to its own point in time, the one after the kill included.
      for (const [i, tag] of ['s1', 's2', 's3', 'next'].entries()) {
        const copy = res.name(`${suffix}-${tag}`);
        const copyVolume = res.volume(`${suffix}-v-${tag}`);
        const r = await runCli(['restore', '--source', `dir:${store}`, '--snapshot', tag, '--rename', `${name}=${copy},${volume}=${copyVolume}`]);
        // The image the restore tags (localImageName): this test's to remove.
        res.image(`container-snapshot/${name}:${tag}`);
        expect(r.code, r.stderr).toBe(0);
        await waitFor(
          () =>
            docker
              .getContainer(copy)
              .inspect()
              .then(
                () => true,
                () => false,
              ),
          30_000,
        );
        expect(await state(copy), tag).toEqual(states[i]);
      }
    },
  );

  it('to a registry, killed (SIGKILL) while held: every earlier set restores to its own point in time, verify passes, the next delta is on the last complete set', async () => {
    const registry = await startRegistry();
    try {
      const name = res.name('reg');
      const volume = res.volume('reg-v');
      const destination = `registry:${registry.host}/${res.prefix}`;
      const creds = ['--registry-username', registry.username, '--registry-password-stdin'];
      const cli = (args: string[], onSpawn?: (child: ChildProcess) => void) =>
        runCli([...args, ...creds], { input: registry.password, env: { DOCKER_CONFIG: '/nonexistent' }, ...(onSpawn ? { onSpawn } : {}) });
      await runContainer({ name, Image: inject('fixtureImage'), Cmd: ['sleep', '100000'], HostConfig: { Binds: [`${volume}:/v`] } }, 'running');
      const id = (await docker.getContainer(name).inspect()).Id;
      const states: Array<{ app: string; vol: string }> = [];
      for (const [i, change] of [
        'mkdir -p /app && echo alpha > /app/a.txt && echo one > /v/one',
        'echo beta >> /app/a.txt && echo two > /v/two',
        'rm /app/a.txt && echo c > /app/c',
      ].entries()) {
        await sh(name, change);
        const r = await cli(['backup', '--containers', name, '--destination', destination, '--tag', `s${i + 1}`]);
        expect(r.code, r.stderr).toBe(0);
        states.push(await state(name));
      }
      await sh(name, 'dd if=/dev/urandom of=/app/more.bin bs=1M count=4 2>/dev/null && dd if=/dev/urandom of=/v/big bs=1M count=120 2>/dev/null');
      const sent: { at?: number; pid?: number } = {};
      const killed = await cli(
        ['backup', '--containers', name, '--destination', destination, '--tag', 'cut'],
        signalWhen(async () => (await docker.getContainer(id).inspect()).State.Paused, 'SIGKILL', sent),
      );
      expect(sent.at, killed.stderr).toBeDefined();
      expect(registry.storedTags(res.prefix)).not.toContain('cut');
      const next = await cli(['backup', '--containers', name, '--destination', destination, '--tag', 'next']);
      expect(next.code, next.stderr).toBe(0);
      expect(next.stderr).toMatch(/ended without cleaning up \(1 paused container\(s\)/);
      expect((await docker.getContainer(id).inspect()).State.Paused).toBe(false);
      states.push(await state(name));
      const verify = await cli(['verify', '--source', destination, '--all']);
      expect(verify.code, verify.stderr).toBe(0);
      for (const [i, tag] of ['s1', 's2', 's3', 'next'].entries()) {
        const copy = res.name(`reg-${tag}`);
        const copyVolume = res.volume(`reg-v-${tag}`);
        const r = await cli(['restore', '--source', destination, '--snapshot', tag, '--rename', `${name}=${copy},${volume}=${copyVolume}`]);
        res.image(`container-snapshot/${name}:${tag}`);
        expect(r.code, r.stderr).toBe(0);
        expect(await state(copy), tag).toEqual(states[i]);
      }
    } finally {
      await registry.stop();
    }
  });
});
