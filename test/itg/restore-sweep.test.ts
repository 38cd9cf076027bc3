import { afterAll, describe, expect, inject, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { hostname } from 'node:os';
import { Engine } from '../../src/engine/engine.js';
import { RUN_LABEL } from '../../src/snapshot/fill.js';
import { recoverAbandonedRestores, runIsGone } from '../../src/snapshot/restore-journal.js';
import { Resources, docker, quietLog } from '../support/fixtures.js';

/**
 * A run's recovery reads only the journals of its own state directory: the copy aside of a
 * restore whose journal is in another one (another user, another CONTAINER_SNAPSHOT_STATE_DIR)
 * holds the only old content that journal can put back, and must outlive this recovery.
 */
describe('the recovery of interrupted restores', () => {
  const res = new Resources(inject('runPrefix'), 'swp');
  afterAll(() => res.cleanup());

  it("keeps the aside volumes of a gone run whose journal is not in this state directory", async () => {
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
});
