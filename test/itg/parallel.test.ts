import { afterAll, describe, expect, inject, it } from 'vitest';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { backup, verify } from '../../src/commands.js';
import { parseBackupInputs } from '../../src/core/inputs.js';
import { parseDestination } from '../../src/core/destination-input.js';
import { inputs, testEnv } from '../support/commands.js';
import { Resources, commitsOf, docker, quietLog, runBigVolumeContainer, runContainer, treeDigest, waitFor } from '../support/fixtures.js';

describe('containers backed up in parallel', () => {
  const res = new Resources(inject('runPrefix'), 'par');
  afterAll(() => res.cleanup());

  /** A running container with its own data in a volume at /v; `pre` as its pre-command label. */
  async function withData(suffix: string, pre?: string): Promise<string> {
    const name = res.name(suffix);
    const Labels: Record<string, string> = pre ? { 'container-snapshot.pre': pre } : {};
    await runContainer(
      {
        name,
        Image: inject('fixtureImage'),
        Labels,
        Cmd: ['sh', '-c', `echo ${suffix} > /v/f; exec sleep 100000`],
        HostConfig: { Binds: [`${res.volume(suffix)}:/v`] },
      },
      'running',
    );
    await waitFor(() =>
      treeDigest(name, '/v/f').then(
        () => true,
        () => false,
      ),
    );
    return name;
  }

  it('one failing container leaves the others stored, each held on its own, in selection order', async () => {
    const names = [await withData('a'), await withData('b', 'echo refusing; exit 3'), await withData('c')];
    const store = join(res.tempDir(), 'store');
    const r = await backup(parseBackupInputs(inputs({ containers: names.join(','), destination: `dir:${store}`, tag: 'par', parallelism: '3' })), {
      log: quietLog,
      env: testEnv,
    });
    expect(r.containers.map((c) => [c.name, c.status])).toEqual([
      [names[0], 'ok'],
      [names[1], 'failed'],
      [names[2], 'ok'],
    ]);
    expect(r.containers[1].error).toMatch(/pre-command exited with 3/);
    for (const i of [0, 2]) expect(r.containers[i].pausedMs, names[i]).toBeGreaterThan(0);
    expect(r.written).toBe(true);
    const v = await verify(parseDestination(`dir:${store}`), 'par', {}, { log: quietLog, env: testEnv });
    expect(v.blobs).toBeGreaterThanOrEqual(4);
    for (const n of names) expect((await docker.getContainer(n).inspect()).State, n).toMatchObject({ Running: true, Paused: false });
  });

  it('on-error abort: the first failure stops the others, each put back, and no set is written', async () => {
    const big = await runBigVolumeContainer(res, 'x1-big', inject('fixtureImage'), 48);
    const failing = await withData('x2-fail', 'exit 4');
    const store = join(res.tempDir(), 'store');
    const values = { containers: `${big.name},${failing}`, destination: `dir:${store}`, tag: 'abort', parallelism: '2', 'on-error': 'abort' };
    await expect(backup(parseBackupInputs(inputs(values)), { log: quietLog, env: testEnv })).rejects.toThrow(
      new RegExp(`Aborted at ${failing}; no snapshot set was written: .*exited with 4`),
    );
    for (const n of [big.name, failing]) expect((await docker.getContainer(n).inspect()).State, n).toMatchObject({ Running: true, Paused: false });
    expect(readdirSync(join(store, 'sets'))).toEqual([]);
    expect(readdirSync(join(store, '.tmp'))).toEqual([]);
    expect(await commitsOf([big.id, (await docker.getContainer(failing).inspect()).Id])).toEqual([]);
  });
});
