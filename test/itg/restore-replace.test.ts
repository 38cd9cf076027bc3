import { afterAll, describe, expect, inject, it } from 'vitest';
import { join } from 'node:path';
import { backup, restore } from '../../src/commands.js';
import { parseBackupInputs, parseRestoreInputs } from '../../src/core/inputs.js';
import { Resources, docker, quietLog, runContainer, treeDigest, waitFor } from '../support/fixtures.js';

const env = { ...process.env, DOCKER_CONFIG: '/nonexistent' };
const inputs = (values: Record<string, string>) => (name: string) => values[name] ?? '';

async function exec(name: string, cmd: string): Promise<void> {
  const e = await docker.getContainer(name).exec({ Cmd: ['sh', '-c', cmd] });
  await (await e.start({})).resume();
  await waitFor(async () => (await e.inspect()).Running === false);
}

/** Replacing a container keeps what the restore was told not to write. */
describe('restore with replace', () => {
  const res = new Resources(inject('runPrefix'), 'repl');
  const image = inject('fixtureImage');
  afterAll(() => res.cleanup());

  it('without volumes, the new container keeps the old one’s anonymous and named volumes as they are', async () => {
    const name = res.name('novol');
    const vol = res.volume('novol');
    await runContainer({ name, Image: image, Volumes: { '/anon': {} }, Cmd: ['sleep', '100000'], HostConfig: { Binds: [`${vol}:/named`] } }, 'running');
    await exec(name, 'echo set > /anon/f; echo set > /named/f');
    const store = `dir:${join(res.tempDir(), 'store')}`;
    const b = await backup(parseBackupInputs(inputs({ containers: name, destination: store, tag: 'novol' })), { log: quietLog, env });
    expect(b.failed).toBe(0);
    res.image(`container-snapshot/${name}:novol`);
    await exec(name, 'echo live > /anon/f; echo live > /named/f');
    const live = [(await treeDigest(name, '/anon')).digest, (await treeDigest(name, '/named')).digest];
    const oldId = (await docker.getContainer(name).inspect()).Id;
    const r = await restore(parseRestoreInputs(inputs({ source: store, snapshot: 'novol', replace: 'true', 'include-volumes': 'false' })), {
      log: quietLog,
      env,
    });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    const info = await docker.getContainer(name).inspect();
    expect(info.Id).not.toBe(oldId);
    expect(info.State.Running).toBe(true);
    expect([(await treeDigest(name, '/anon')).digest, (await treeDigest(name, '/named')).digest]).toEqual(live);
    const anon = (info.Mounts as Array<{ Name?: string; Destination: string }>).find((m) => m.Destination === '/anon')?.Name;
    if (anon) res.trackVolume(anon);
    expect((await docker.listContainers({ all: true, filters: { name: [`${name}-replaced-`] } })).length).toBe(0);
  });
});
