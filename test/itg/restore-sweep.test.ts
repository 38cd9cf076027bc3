import { afterAll, describe, expect, inject, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hostname } from 'node:os';
import { Engine } from '../../src/engine/engine.js';
import type { ContainerInspect } from '../../src/engine/containers.js';
import { RUN_LABEL } from '../../src/snapshot/fill.js';
import { recoverAbandonedRestores, runIsGone } from '../../src/snapshot/restore-journal.js';
import { Resources, docker, quietLog, runContainer } from '../support/fixtures.js';

/**
 * A run's recovery reads only the journals of its own state directory: the copy aside of a
 * restore whose journal is in another one (another user, another CONTAINER_SNAPSHOT_STATE_DIR)
 * holds the only old content that journal can put back, and must outlive this recovery.
 */
describe('the recovery of interrupted restores', () => {
  const res = new Resources(inject('runPrefix'), 'swp');
  afterAll(() => res.cleanup());

  it('keeps the aside volumes of a gone run whose journal is not in this state directory', async () => {
    const gone = spawnSync('true');
    const run = `${hostname()}/${gone.pid}/1`;
    expect(runIsGone(run)).toBe(true);
    const aside = res.volume('v-aside-000000');
    await docker.createVolume({ Name: aside, Labels: { [RUN_LABEL]: run } });
    const emptyState = res.tempDir();
    const r = await recoverAbandonedRestores(new Engine(), quietLog, { ...process.env, CONTAINER_SNAPSHOT_STATE_DIR: emptyState });
    expect(r.problems).toEqual([]);
    expect((await docker.getVolume(aside).inspect()).Name).toBe(aside);
  });

  it('reports once what nothing can put back (its copy aside or its old container removed by hand), then forgets it', async () => {
    const gone = spawnSync('true');
    const vol = res.volume('kept');
    await docker.createVolume({ Name: vol });
    const state = res.tempDir();
    const dir = join(state, 'restore-journal');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `${hostname()}-${gone.pid}.json`);
    const target = res.name('gone');
    const pending = {
      run: `${hostname()}/${gone.pid}/1`,
      targets: [
        {
          target,
          creating: false,
          createdVolumes: [],
          replaced: [{ name: vol, aside: `${vol}-aside-000000`, kept: true, emptied: true }],
          aside: { id: `${target}-replaced-000000`, asideName: `${target}-replaced-000000`, wasRunning: true, wasPaused: false },
        },
      ],
    };
    writeFileSync(
      file,
      JSON.stringify({ pid: gone.pid, started: '1', host: hostname(), engine: process.env.DOCKER_HOST || 'unix:///var/run/docker.sock', pending }),
    );
    const stateEnv = { ...process.env, CONTAINER_SNAPSHOT_STATE_DIR: state };
    const first = await recoverAbandonedRestores(new Engine(), quietLog, stateEnv);
    expect(first.problems).toEqual([expect.stringContaining('is gone'), expect.stringContaining('is gone')]);
    const second = await recoverAbandonedRestores(new Engine(), quietLog, stateEnv);
    expect(second.problems).toEqual([]);
    expect(existsSync(file)).toBe(false);
    expect((await docker.getVolume(vol).inspect()).Name).toBe(vol);
  });

  it('leaves alone a container made by hand under the name of a restore that was killed while it created its own', async () => {
    const gone = spawnSync('true');
    const target = res.name('byhand');
    const made = await runContainer({ name: target, Image: inject('fixtureImage'), Cmd: ['sleep', '100000'] }, 'running');
    const state = res.tempDir();
    const dir = join(state, 'restore-journal');
    mkdirSync(dir, { recursive: true });
    const pending = {
      run: `${hostname()}/${gone.pid}/1`,
      targets: [{ target, image: `container-snapshot/${target}:t`, creating: true, createdVolumes: [], replaced: [] }],
    };
    writeFileSync(
      join(dir, `${hostname()}-${gone.pid}.json`),
      JSON.stringify({ pid: gone.pid, started: '1', host: hostname(), engine: process.env.DOCKER_HOST || 'unix:///var/run/docker.sock', pending }),
    );
    const r = await recoverAbandonedRestores(new Engine(), quietLog, { ...process.env, CONTAINER_SNAPSHOT_STATE_DIR: state });
    expect(r.problems).toEqual([]);
    expect((await docker.getContainer(target).inspect()).Id).toBe(made.id);
  });

  /**
   * A restore killed outright leaves its last requests with the engine, which may finish them after
   * the next run's recovery looked (seen under load: the restore's volume "in use" by its own new
   * container, so the recovery failed and left the volume). Here the engine is asked for real; the
   * recovery's first look is made to miss what the engine had not finished yet.
   */
  it.each([
    ['its new container, found in the way of its volume', 'container', false],
    ['its new container, found on its network', 'container', true],
    ['a helper it labelled, found in the way of its volume', 'helper', false],
    ['a helper it labelled, found on its network', 'helper', true],
  ] as const)('removes what a killed restore made after the recovery looked: %s; then its volume and network', async (_what, kind, onNetwork) => {
    const gone = spawnSync('true');
    const run = `${hostname()}/${gone.pid}/1`;
    const target = res.name(`late-${kind}-${onNetwork ? 'n' : 'v'}`);
    const vol = res.volume(`late-${kind}-${onNetwork ? 'n' : 'v'}`);
    const net = res.network(`late-${kind}-${onNetwork ? 'n' : 'v'}`);
    await docker.createVolume({ Name: vol });
    const netId = onNetwork ? (await docker.createNetwork({ Name: net })).id : undefined;
    const image = inject('fixtureImage');
    const made = await docker.createContainer({
      name: kind === 'container' ? target : res.name(`helper-of-${onNetwork ? 'n' : 'v'}`),
      Image: image,
      Cmd: ['sleep', '100000'],
      ...(kind === 'helper' ? { Labels: { [RUN_LABEL]: run } } : {}),
      HostConfig: { Binds: [`${vol}:/v`], ...(netId ? { NetworkMode: net } : {}) },
    });
    const state = res.tempDir();
    const dir = join(state, 'restore-journal');
    mkdirSync(dir, { recursive: true });
    const pending = {
      run,
      targets: [
        {
          target,
          image,
          creating: true,
          createdVolumes: [vol],
          ...(netId ? { createdNetworks: [{ name: net, id: netId }] } : {}),
          replaced: [],
        },
      ],
    };
    writeFileSync(
      join(dir, `${hostname()}-${gone.pid}.json`),
      JSON.stringify({ pid: gone.pid, started: '1', host: hostname(), engine: process.env.DOCKER_HOST || 'unix:///var/run/docker.sock', pending }),
    );
    // What the killed restore made "appears" (is seen) only once the recovery turns to the volume or network.
    let appeared = false;
    const engine = new (class extends Engine {
      override async findContainer(name: string): Promise<ContainerInspect | undefined> {
        return kind === 'container' && name === target && !appeared ? undefined : super.findContainer(name);
      }
      override async containersLabelled(key: string): Promise<Array<{ id: string; name: string; value: string }>> {
        return kind === 'helper' && !appeared ? [] : super.containersLabelled(key);
      }
      override async removeVolume(name: string): Promise<void> {
        appeared = true;
        return super.removeVolume(name);
      }
      override async networkUsers(id: string): Promise<Array<{ id: string; name: string }>> {
        appeared = true;
        return super.networkUsers(id);
      }
    })();
    const r = await recoverAbandonedRestores(engine, quietLog, { ...process.env, CONTAINER_SNAPSHOT_STATE_DIR: state });
    expect(r.problems).toEqual([]);
    expect(r.recovered).toBe(1);
    const missing = (p: Promise<unknown>) =>
      p.then(
        () => false,
        (err: { statusCode?: number }) => err.statusCode === 404,
      );
    expect(await missing(docker.getContainer(made.id).inspect())).toBe(true);
    expect(await missing(docker.getVolume(vol).inspect())).toBe(true);
    if (netId) expect(await missing(docker.getNetwork(netId).inspect())).toBe(true);
  });

  /** Writes a gone run's restore journal holding `targets` into a new state directory; returns its env and journal file. */
  const journalOfGoneRun = (targets: unknown[]) => {
    const gone = spawnSync('true');
    const state = res.tempDir();
    const dir = join(state, 'restore-journal');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `${hostname()}-${gone.pid}.json`);
    const pending = { run: `${hostname()}/${gone.pid}/1`, targets };
    writeFileSync(
      file,
      JSON.stringify({ pid: gone.pid, started: '1', host: hostname(), engine: process.env.DOCKER_HOST || 'unix:///var/run/docker.sock', pending }),
    );
    return { env: { ...process.env, CONTAINER_SNAPSHOT_STATE_DIR: state }, file };
  };

  it('puts back an old container made from the same image as the new one (a snapshot restored twice), and keeps it, when the new one never came', async () => {
    const target = res.name('twice');
    const asideName = res.name('twice-replaced-000000');
    const image = inject('fixtureImage');
    const old = await docker.createContainer({ name: asideName, Image: image, Cmd: ['sleep', '100000'] });
    const vol = res.volume('twice-v');
    await docker.createVolume({ Name: vol });
    const { env } = journalOfGoneRun([
      { target, image, creating: true, createdVolumes: [vol], replaced: [], aside: { id: old.id, asideName, wasRunning: false, wasPaused: false } },
    ]);
    const r = await recoverAbandonedRestores(new Engine(), quietLog, env);
    expect(r.problems).toEqual([]);
    expect(r.recovered).toBe(1);
    const back = await docker.getContainer(target).inspect();
    expect([back.Id, back.Name]).toEqual([old.id, `/${target}`]);
  });

  it('keeps a target whose new container was not found to be looked for again while its rollback goes on (a rollback killed meanwhile looks again)', async () => {
    const target = res.name('still');
    const vol = res.volume('still-v');
    await docker.createVolume({ Name: vol });
    const { env, file } = journalOfGoneRun([{ target, image: inject('fixtureImage'), creating: true, createdVolumes: [vol], replaced: [] }]);
    const seen: boolean[] = [];
    const engine = new (class extends Engine {
      override async removeVolume(name: string): Promise<void> {
        // The journal as saved when the rollback reaches the volume: the target's create still to look for.
        const saved = JSON.parse(readFileSync(file, 'utf8')) as { pending: { targets: Array<{ creating: boolean }> } };
        seen.push(saved.pending.targets[0].creating);
        return super.removeVolume(name);
      }
    })();
    const r = await recoverAbandonedRestores(engine, quietLog, env);
    expect(r.problems).toEqual([]);
    expect(seen).toEqual([true]);
    expect(existsSync(file)).toBe(false);
  });
});
