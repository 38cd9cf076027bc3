import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { renameSync } from 'node:fs';
import { join } from 'node:path';
import { DirDestination } from '../../src/destinations/dir/index.js';
import { Engine } from '../../src/engine/engine.js';
import { loadContainerImage } from '../../src/snapshot/held-layers.js';
import { localImageName } from '../../src/snapshot/container-restore.js';
import type { SnapshotSet } from '../../src/snapshot/manifest.js';
import { backUp, restoreFrom } from '../support/commands.js';
import { buildFixtureImage } from '../support/engine.js';
import { Resources, docker, quietLog, runContainer, treeDigest, waitFor } from '../support/fixtures.js';

/**
 * A restore leaves out of the image it loads the leading layers the engine already holds (the
 * container's base image is there): their blobs are not read, not even opened. Without the base
 * image they are read like any other; a blob missing then fails the restore cleanly.
 */
describe('a restore onto an engine that has the base image', () => {
  const res = new Resources(inject('runPrefix'), 'base');
  const name = res.name('app');
  const vol = res.volume('data');
  const base = res.image(`${res.prefix}-base:1`);
  const store = join(res.tempDir(), 'store');
  let set: SnapshotSet;
  let content: string[];
  afterAll(() => res.cleanup());

  const blobFile = (digest: string) => join(store, 'blobs', 'sha256', digest.slice('sha256:'.length));
  const baseBlob = () => set.containers[0].image.layers[0].digest;
  const restoredImage = () => `${localImageName(name)}:b1`;
  const own = async () => [(await treeDigest(name, '/own')).digest, (await treeDigest(name, '/data')).digest];

  /** The test's containers, volumes and images on the engine, and whether the set's image is there. */
  async function engineState(): Promise<string> {
    const containers = (await docker.listContainers({ all: true })).filter((c) => c.Names.some((n) => n.includes(res.prefix)));
    const volumes = ((await docker.listVolumes()).Volumes ?? []).filter((v) => v.Name.includes(res.prefix));
    const images = (await docker.listImages()).filter((i) => (i.RepoTags ?? []).some((t) => t.includes(res.prefix)));
    const snapshotImage = await docker
      .getImage(set.containers[0].image.id)
      .inspect()
      .then(
        () => true,
        () => false,
      );
    return JSON.stringify([containers.map((c) => c.Names).sort(), volumes.map((v) => v.Name).sort(), images.map((i) => i.RepoTags), snapshotImage]);
  }

  async function removeRestored(): Promise<void> {
    await docker.getContainer(name).remove({ force: true, v: true });
    await docker.getVolume(vol).remove();
    await docker.getImage(restoredImage()).remove();
  }

  beforeAll(async () => {
    // A base image of its own (one layer no other image has), so that removing it removes its layer.
    await buildFixtureImage(base, res.prefix);
    const script =
      'test -f /own/f || { mkdir -p /own && echo own > /own/f && dd if=/dev/urandom of=/own/r bs=1k count=64 2>/dev/null && echo vol > /data/f; }; touch /tmp/ready; exec sleep 100000';
    await runContainer({ name, Image: base, StopTimeout: 1, Cmd: ['sh', '-c', script], HostConfig: { Binds: [`${vol}:/data`] } }, 'running');
    await waitFor(async () =>
      treeDigest(name, '/tmp/ready').then(
        () => true,
        () => false,
      ),
    );
    content = await own();
    await backUp({ containers: name, destination: `dir:${store}`, tag: 'b1' });
    set = (await new DirDestination('dir:store', store).readSet('b1'))!;
    const baseLayers = (await docker.getImage(base).inspect()).RootFS.Layers ?? [];
    expect(set.containers[0].image.layers.map((l) => l.contentDigest).slice(0, baseLayers.length)).toEqual(baseLayers);
    expect(set.containers[0].image.layers.length).toBe(baseLayers.length + 1);
    await docker.getContainer(name).remove({ force: true, v: true });
    await docker.getVolume(vol).remove();
  });

  it('reads no blob of a base layer: the restore succeeds with that blob gone from the store', async () => {
    renameSync(blobFile(baseBlob()), `${blobFile(baseBlob())}.aside`);
    const from = quietLog.lines.length;
    const r = await restoreFrom({ source: `dir:${store}`, snapshot: 'b1' });
    expect(r.containers.map((c) => [c.status, c.error])).toEqual([['ok', undefined]]);
    expect(quietLog.lines.slice(from).join('\n')).toContain('(2 layer(s), the first 1 on the engine already, not read)');
    expect(await own()).toEqual(content);
    expect((await docker.getImage(restoredImage()).inspect()).Id).toBe(set.containers[0].image.id);
  });

  it('without the base image, reads every layer: a base blob missing fails the restore cleanly, naming it, and leaves nothing', async () => {
    await removeRestored();
    await docker.getImage(base).remove();
    const before = await engineState();
    const r = await restoreFrom({ source: `dir:${store}`, snapshot: 'b1' });
    expect(r.containers.map((c) => c.status)).toEqual(['failed']);
    expect(r.containers[0].error).toContain(baseBlob().slice('sha256:'.length));
    expect(await engineState()).toBe(before);
  });

  it('when the held layers go before the load, loads again with every layer', async () => {
    renameSync(`${blobFile(baseBlob())}.aside`, blobFile(baseBlob()));
    const c = set.containers[0];
    // The base went between the check and the load: the engine is said to hold it, and does not.
    const engine = new Engine();
    engine.imageDiffIds = async () => c.image.layers.slice(0, 1).map((l) => l.contentDigest);
    const from = quietLog.lines.length;
    await loadContainerImage(engine, new DirDestination('dir:store', store), c, localImageName(name), restoredImage(), quietLog);
    const log = quietLog.lines.slice(from).join('\n');
    expect(log).toContain('the first 1 on the engine already');
    expect(log).toMatch(/layer\.tar: no such file or directory.*loading every layer/);
    expect((await docker.getImage(restoredImage()).inspect()).Id).toBe(c.image.id);
    await docker.getImage(restoredImage()).remove();
  });

  it('reads every layer without the base image, and the container is right', async () => {
    const r = await restoreFrom({ source: `dir:${store}`, snapshot: 'b1' });
    expect(r.containers.map((c) => [c.status, c.error])).toEqual([['ok', undefined]]);
    expect(await own()).toEqual(content);
    res.image(restoredImage());
  });
});
