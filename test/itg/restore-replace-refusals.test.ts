import { afterAll, describe, expect, inject, it } from 'vitest';
import { join } from 'node:path';
import { backup, restore } from '../../src/commands.js';
import { parseBackupInputs, parseRestoreInputs } from '../../src/core/inputs.js';
import { Resources, docker, quietLog, runContainer } from '../support/fixtures.js';
import { inputs, testEnv } from '../support/commands.js';

const env = testEnv;

/** A replace that a failed restore could not undo, or that would leave another container tied to the old one, is refused before any change. */
describe('restore with replace: refused where it could not be undone', () => {
  const res = new Resources(inject('runPrefix'), 'replref');
  const image = inject('fixtureImage');
  afterAll(() => res.cleanup());

  async function backUp(name: string, tag: string): Promise<string> {
    const store = `dir:${join(res.tempDir(), 'store')}`;
    const b = await backup(parseBackupInputs(inputs({ containers: name, destination: store, tag })), { log: quietLog, env });
    expect(b.failed, JSON.stringify(b.containers)).toBe(0);
    res.image(`container-snapshot/${name}:${tag}`);
    return store;
  }

  const replace = (store: string, tag: string) =>
    restore(parseRestoreInputs(inputs({ source: store, snapshot: tag, replace: 'true' })), { log: quietLog, env });

  it('refuses to replace a container started with --rm (its stop would remove it and its anonymous volumes), and leaves it running', async () => {
    const name = res.name('autorm');
    await runContainer({ name, Image: image, Volumes: { '/anon': {} }, Cmd: ['sleep', '100000'], HostConfig: { AutoRemove: true } }, 'running');
    const store = await backUp(name, 'autorm');
    const before = await docker.getContainer(name).inspect();
    const r = await replace(store, 'autorm');
    expect(r.failed).toBe(1);
    expect(r.containers[0].error).toMatch(
      new RegExp(`container '${name}' was started with --rm \\(auto-remove\\): stopping it to replace it would have the engine remove it`),
    );
    const after = await docker.getContainer(name).inspect();
    expect([after.Id, after.State.Running]).toEqual([before.Id, true]);
  });

  it('refuses to replace a container another one outside the restore shares a namespace or volumes with, and changes neither', async () => {
    const owner = res.name('owner');
    await runContainer({ name: owner, Image: image, Volumes: { '/anon': {} }, Cmd: ['sleep', '100000'], HostConfig: { IpcMode: 'shareable' } }, 'running');
    const ownerId = (await docker.getContainer(owner).inspect()).Id;
    const store = await backUp(owner, 'shared');
    const net = res.name('netpeer');
    const vols = res.name('volpeer');
    await runContainer(
      { name: net, Image: image, Cmd: ['sleep', '100000'], HostConfig: { NetworkMode: `container:${owner}`, IpcMode: `container:${owner}` } },
      'running',
    );
    await runContainer({ name: vols, Image: image, Cmd: ['sleep', '100000'], HostConfig: { VolumesFrom: [owner] } }, 'running');
    const r = await replace(store, 'shared');
    expect(r.failed).toBe(1);
    for (const peer of [net, vols]) expect(r.containers[0].error).toContain(`container '${peer}' shares a namespace or volumes with '${owner}'`);
    for (const c of [owner, net, vols]) expect((await docker.getContainer(c).inspect()).State.Running, c).toBe(true);
    expect((await docker.getContainer(owner).inspect()).Id).toBe(ownerId);
    expect((await docker.getContainer(net).inspect()).HostConfig.NetworkMode).toBe(`container:${ownerId}`);
  });
});
