import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { mkdirSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { backup } from '../../src/commands.js';
import { parseBackupInputs } from '../../src/core/inputs.js';
import { stateDir } from '../../src/core/state-dir.js';
import { Resources, docker, quietLog, runBigVolumeContainer } from '../support/fixtures.js';

const inputs = (values: Record<string, string>) => (name: string) => values[name] ?? '';

describe('two backups of one container at once', () => {
  const res = new Resources(inject('runPrefix'), 'lock');
  let name: string;
  let id: string;
  let store: string;

  beforeAll(async () => {
    store = join(res.tempDir(), 'store');
    ({ name, id } = await runBigVolumeContainer(res, 'busy', inject('fixtureImage'), 60));
  });

  afterAll(() => res.cleanup());

  const run = (tag: string, env: NodeJS.ProcessEnv = process.env) =>
    backup(parseBackupInputs(inputs({ containers: name, destination: `dir:${store}`, tag }), undefined, env), {
      log: quietLog,
      env: { ...env, DOCKER_CONFIG: '/nonexistent' },
    });

  it('take turns: both record the container as running, and it ends running', async () => {
    const [a, b] = await Promise.all([run('turn-a'), run('turn-b')]);
    expect([a.failed, b.failed]).toEqual([0, 0]);
    // Without the lock, the second would see the first one's pause and record "paused".
    expect([a.containers[0].state, b.containers[0].state]).toEqual(['running', 'running']);
    const info = await docker.getContainer(id).inspect();
    expect([info.State.Running, info.State.Paused]).toEqual([true, false]);
  });

  it('with no time to wait, the second fails clearly and the first is stored', async () => {
    const env = { ...process.env, CONTAINER_SNAPSHOT_LOCK_TIMEOUT: '0' };
    const results = await Promise.all([run('now-a', env), run('now-b', env)]);
    const failed = results.flatMap((r) => r.containers).filter((c) => c.status === 'failed');
    expect(failed).toHaveLength(1);
    expect(failed[0].error).toMatch(/another backup \(pid \d+\) is taking this container; waited 0 s/);
    expect(results.flatMap((r) => r.containers).filter((c) => c.status === 'ok')).toHaveLength(1);
    expect((await docker.getContainer(id).inspect()).State.Paused).toBe(false);
  });

  it('takes over a lock left by a process that is gone', async () => {
    const dir = join(stateDir(process.env), 'locks');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `${id}.lock`), JSON.stringify({ pid: 2 ** 22 + 12345, started: '1', host: hostname() }));
    const r = await run('after-stale', { ...process.env, CONTAINER_SNAPSHOT_LOCK_TIMEOUT: '0' });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
  });
});
