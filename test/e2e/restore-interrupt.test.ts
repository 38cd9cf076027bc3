import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { processHost } from '../../src/core/process-liveness.js';
import { stateDir } from '../../src/core/state-dir.js';
import { RUN_LABEL } from '../../src/snapshot/fill.js';
import { Resources, docker, runContainer, signalWhen, treeDigest, waitFor } from '../support/fixtures.js';
import { runCli, runStep } from '../support/runner.js';

/**
 * Restore with replace, interrupted at each of its phases, by the CLI and by the action (then its
 * post step): what is left must never block a plain re-run, which must bring the service up with
 * the set's data.
 */
describe('an interrupted restore', () => {
  const res = new Resources(inject('runPrefix'), 'rint');
  const image = inject('fixtureImage');
  afterAll(() => res.cleanup());

  const helpersOf = async (vol: string) => (await docker.listContainers({ all: true, filters: { label: [RUN_LABEL], volume: [vol] } })).map((c) => c.Names);
  const asideVolumes = async (vol: string) =>
    ((await docker.listVolumes({ filters: { label: [RUN_LABEL] } })).Volumes ?? []).filter((v) => v.Name.startsWith(`${vol}-aside-`));
  const replaced = async (name: string) => (await docker.listContainers({ all: true })).filter((c) => c.Names.some((n) => n.startsWith(`/${name}-replaced-`)));

  /** The phases, each a check on the engine that holds while the restore is in it. */
  const phases: Record<string, (s: { id: string; name: string; vol: string }) => () => Promise<boolean>> = {
    'after the old container was set aside': (s) => async () => (await docker.getContainer(s.id).inspect()).Name.includes('-replaced-'),
    'while the old content is copied aside': (s) => async () => (await asideVolumes(s.vol)).length > 0,
    'while the volume is filled': (s) => async () =>
      !(await docker
        .getContainer(s.id)
        .inspect()
        .then(
          () => true,
          () => false,
        )),
  };

  interface Service {
    name: string;
    vol: string;
    id: string;
    store: string;
    /** The volume's digest in the set, and after the service wrote on. */
    inSet: string;
    live: string;
  }

  let seq = 0;
  async function service(): Promise<Service> {
    const suffix = `svc${seq++}`;
    const name = res.name(suffix);
    const vol = res.volume(suffix);
    const store = join(res.tempDir(), 'store');
    const script = 'test -f /v/ready || { dd if=/dev/urandom of=/v/big bs=1M count=120 2>/dev/null; touch /v/ready; }; exec sleep 100000';
    await runContainer({ name, Image: image, StopTimeout: 1, Cmd: ['sh', '-c', script], HostConfig: { Binds: [`${vol}:/v`] } }, 'running');
    await waitFor(
      async () =>
        treeDigest(name, '/v/ready').then(
          () => true,
          () => false,
        ),
      60_000,
    );
    const backup = await runCli(['backup', '--containers', name, '--destination', `dir:${store}`, '--tag', 'good']);
    expect(backup.code, backup.stderr).toBe(0);
    res.image(`container-snapshot/${name}:good`);
    const inSet = (await treeDigest(name, '/v')).digest;
    // The service goes on writing: the live volume now differs from the set.
    const exec = await docker.getContainer(name).exec({ Cmd: ['sh', '-c', 'echo later > /v/later'] });
    await (await exec.start({})).resume();
    await waitFor(async () =>
      treeDigest(name, '/v/later').then(
        () => true,
        () => false,
      ),
    );
    const live = (await treeDigest(name, '/v')).digest;
    return { name, vol, id: (await docker.getContainer(name).inspect()).Id, store, inSet, live };
  }

  /** Nothing of the restore is left: the old container is back as it was, with its data, and nothing blocks a re-run. */
  async function expectPutBack(s: Service) {
    const info = await docker.getContainer(s.name).inspect();
    expect(info.State.Running).toBe(true);
    expect((await treeDigest(s.name, '/v')).digest).toBe(s.live);
    expect(await replaced(s.name)).toEqual([]);
    expect(await asideVolumes(s.vol)).toEqual([]);
    expect(await helpersOf(s.vol)).toEqual([]);
  }

  async function expectPlainRerunRestores(s: Service) {
    const again = await runCli(['restore', '--source', `dir:${s.store}`, '--snapshot', 'good', '--replace']);
    expect(again.code, again.stderr).toBe(0);
    const info = await docker.getContainer(s.name).inspect();
    expect(info.State.Running).toBe(true);
    expect((await treeDigest(s.name, '/v')).digest).toBe(s.inSet);
    expect(await replaced(s.name)).toEqual([]);
    expect(await asideVolumes(s.vol)).toEqual([]);
  }

  beforeAll(() => {
    // The journals of killed restores are kept in this run's state directory.
    expect(stateDir(process.env)).toContain('csx-test-state');
  });

  for (const [phase, check] of Object.entries(phases)) {
    it(`on SIGTERM ${phase}, puts everything back and exits 143; a plain re-run restores`, async () => {
      const s = await service();
      const sent: { at?: number; pid?: number } = {};
      const r = await runCli(['restore', '--source', `dir:${s.store}`, '--snapshot', 'good', '--replace'], { onSpawn: signalWhen(check(s), 'SIGTERM', sent) });
      expect(sent.at, r.stderr).toBeDefined();
      expect(r.code, r.stderr).toBe(143);
      expect(r.stderr).toContain('Received SIGTERM');
      await expectPutBack(s);
      const journals = join(stateDir(process.env), 'restore-journal');
      expect(existsSync(journals) ? readdirSync(journals).filter((f) => f === `${processHost()}-${sent.pid}.json`) : []).toEqual([]);
      await expectPlainRerunRestores(s);
    });

    it(`killed (SIGKILL) ${phase}: the next run puts back what it left, and a plain re-run restores`, async () => {
      const s = await service();
      const sent: { at?: number; pid?: number } = {};
      const r = await runCli(['restore', '--source', `dir:${s.store}`, '--snapshot', 'good', '--replace'], { onSpawn: signalWhen(check(s), 'SIGKILL', sent) });
      expect(sent.at, r.stderr).toBeDefined();
      expect(r.code).toBe(128);
      const again = await runCli(['restore', '--source', `dir:${s.store}`, '--snapshot', 'good', '--replace']);
      expect(again.code, again.stderr).toBe(0);
      expect(again.stderr).toMatch(/A restore \(pid \d+\) ended before it finished/);
      const info = await docker.getContainer(s.name).inspect();
      expect(info.State.Running).toBe(true);
      expect((await treeDigest(s.name, '/v')).digest).toBe(s.inSet);
      expect(await replaced(s.name)).toEqual([]);
      expect(await asideVolumes(s.vol)).toEqual([]);
      expect(await helpersOf(s.vol)).toEqual([]);
    });
  }

  it.each([
    ['while the volume is filled', 'SIGKILL'],
    ['while the old content is copied aside', 'SIGKILL'],
    ['after the old container was set aside', 'SIGTERM'],
  ] as const)('the action interrupted %s (%s), then its post step: everything is back, and a re-run restores', async (phase, signal) => {
    const s = await service();
    const sent: { at?: number; pid?: number } = {};
    const main = await runStep(
      'restore',
      { source: `dir:${s.store}`, snapshot: 'good', replace: 'true' },
      { onSpawn: signalWhen(phases[phase](s), signal, sent) },
    );
    expect(sent.at, main.stderr).toBeDefined();
    expect(main.code).toBe(signal === 'SIGKILL' ? 128 : 143);
    expect(main.state['restore-pending']).toBeTruthy();
    const post = await runStep('restore', { source: `dir:${s.store}`, snapshot: 'good', replace: 'true' }, { phase: 'post', state: main.state });
    expect(post.code, post.stdout + post.stderr).toBe(0);
    // Killed, the post step puts it back; cancelled, the main step already did.
    expect(post.stdout + main.stdout).toMatch(/the previous container is back and running/);
    await expectPutBack(s);
    const again = await runStep('restore', { source: `dir:${s.store}`, snapshot: 'good', replace: 'true' });
    expect(again.code, again.stdout + again.stderr).toBe(0);
    expect((await treeDigest(s.name, '/v')).digest).toBe(s.inSet);
    expect((await docker.getContainer(s.name).inspect()).State.Running).toBe(true);
  });
});
