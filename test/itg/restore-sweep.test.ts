import { afterAll, describe, expect, inject, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hostname } from 'node:os';
import { Engine } from '../../src/engine/engine.js';
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
});
