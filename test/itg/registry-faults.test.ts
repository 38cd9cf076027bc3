import { afterAll, describe, expect, inject, it } from 'vitest';
import { backup, restore, verify } from '../../src/commands.js';
import { parseBackupInputs, parseRestoreInputs } from '../../src/core/inputs.js';
import { parseDestination } from '../../src/core/destination-input.js';
import { startFaultyProxy } from '../support/faulty-proxy.js';
import { Resources, docker, quietLog, runContainer, treeDigest, waitFor } from '../support/fixtures.js';

const env = { ...process.env, DOCKER_CONFIG: '/nonexistent' };
const inputs = (values: Record<string, string>) => (name: string) => values[name] ?? '';

describe('a registry that fails now and then', () => {
  const res = new Resources(inject('runPrefix'), 'flaky');
  const reg = inject('registry');
  const creds = { 'registry-username': reg.username, 'registry-password': reg.password };
  afterAll(() => res.cleanup());

  it('backs up and restores through 503s and dropped connections (retried; streamed uploads are not faulted)', async () => {
    // Every third request that is not a streamed upload fails: a 503, or a dropped connection.
    const proxy = await startFaultyProxy(reg.host, (req, n) => (req.method !== 'PATCH' && n % 3 === 1 ? (n % 2 ? 503 : 'reset') : 'pass'));
    try {
      const name = res.name('app');
      await runContainer(
        {
          name,
          Image: inject('fixtureImage'),
          Cmd: ['sh', '-c', 'test -f /v/f || seq 1 9999 > /v/f; exec sleep 100000'],
          HostConfig: { Binds: [`${res.volume('v')}:/v`] },
        },
        'running',
      );
      await waitFor(
        async () =>
          await treeDigest(name, '/v/f').then(
            () => true,
            () => false,
          ),
      );
      const before = await treeDigest(name, '/v');
      const location = `registry:${proxy.host}/${res.prefix}`;
      const r = await backup(parseBackupInputs(inputs({ containers: name, destination: location, tag: 'flaky', ...creds })), { log: quietLog, env });
      expect(r.failed, JSON.stringify(r.containers)).toBe(0);
      const v = await verify(parseDestination(location), 'flaky', { username: reg.username, password: reg.password }, { log: quietLog, env });
      expect(v.blobs).toBeGreaterThanOrEqual(3);
      await docker.getContainer(name).remove({ force: true });
      await docker.getVolume(res.volume('v')).remove();
      const restored = await restore(parseRestoreInputs(inputs({ source: location, snapshot: 'flaky', ...creds })), { log: quietLog, env });
      expect(restored.failed, JSON.stringify(restored.containers)).toBe(0);
      res.image((await docker.getContainer(name).inspect()).Config.Image);
      expect(await treeDigest(name, '/v')).toEqual(before);
      expect(proxy.faults()).toBeGreaterThan(5);
    } finally {
      await proxy.close();
    }
  });

  it('does not retry a registry that refuses the credentials', async () => {
    let requests = 0;
    const proxy = await startFaultyProxy(reg.host, () => (requests++, 403));
    try {
      const r = backup(parseBackupInputs(inputs({ containers: res.name('app'), destination: `registry:${proxy.host}/${res.prefix}`, ...creds })), {
        log: quietLog,
        env,
      });
      await expect(r).rejects.toThrow(/403/);
      expect(requests).toBe(1);
    } finally {
      await proxy.close();
    }
  });
});
