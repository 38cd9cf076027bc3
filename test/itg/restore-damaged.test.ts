import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DirDestination } from '../../src/destinations/dir/index.js';
import { isChunked, storedBlobs, type SnapshotSet } from '../../src/snapshot/manifest.js';
import { backUp, restoreFrom } from '../support/commands.js';
import { Resources, docker, quietLog, runContainer, sh, treeDigest, waitFor } from '../support/fixtures.js';

/**
 * A restore reads each blob once, checked as it streams into the engine: a stored blob with one
 * byte flipped is found wrong only at its end, once the engine has most of it. The container it
 * belongs to fails, and nothing the user sees is changed: no image, container or volume of the
 * restore is left, and a container the restore was replacing is back, running, with its data.
 */
describe('a restore of a set with a damaged blob', () => {
  const res = new Resources(inject('runPrefix'), 'dmg');
  const image = inject('fixtureImage');
  const name = res.name('app');
  const vol = res.volume('data');
  const store = join(res.tempDir(), 'store');
  let set: SnapshotSet;
  afterAll(() => res.cleanup());

  /** Containers, volumes and images of this test (by name), and whether the snapshot's image is on the engine. */
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
    return JSON.stringify([containers.map((c) => [c.Names, c.State]).sort(), volumes.map((v) => v.Name).sort(), images.map((i) => i.Id), snapshotImage]);
  }

  /** Runs `fn` with one byte in the middle of the stored blob `digest` flipped; the blob is put back after. */
  async function withDamaged<T>(digest: string, fn: () => Promise<T>): Promise<T> {
    const file = join(store, 'blobs', 'sha256', digest.slice('sha256:'.length));
    const original = readFileSync(file);
    const changed = Buffer.from(original);
    changed[Math.floor(changed.length / 2)] ^= 0xff;
    writeFileSync(file, changed);
    try {
      return await fn();
    } finally {
      writeFileSync(file, original);
    }
  }

  /** The container's own layer and its volume, as their tree digests. */
  const content = async () => [(await treeDigest(name, '/own')).digest, (await treeDigest(name, '/data')).digest];

  /** The container, from the fixture image, with its own data in its layer and its volume. */
  async function startApp(): Promise<void> {
    // Random bytes: stored as zstd raw blocks, so a flipped byte passes the decompressor and only
    // the digest, at the blob's end, finds it.
    const script =
      'test -f /own/r || { mkdir -p /own && dd if=/dev/urandom of=/own/r bs=1M count=3 2>/dev/null && dd if=/dev/urandom of=/data/r bs=1M count=3 2>/dev/null; }; touch /tmp/ready; exec sleep 100000';
    await runContainer({ name, Image: image, StopTimeout: 1, Cmd: ['sh', '-c', script], HostConfig: { Binds: [`${vol}:/data`] } }, 'running');
    await waitFor(
      async () =>
        treeDigest(name, '/tmp/ready').then(
          () => true,
          () => false,
        ),
      60_000,
    );
  }

  beforeAll(async () => {
    await startApp();
    await backUp({ containers: name, destination: `dir:${store}`, tag: 'd1' });
    set = (await new DirDestination('dir:store', store).readSet('d1'))!;
    // The backup leaves no image behind: the restore loads it, streaming every layer.
    expect(
      await docker
        .getImage(set.containers[0].image.id)
        .inspect()
        .then(
          () => true,
          () => false,
        ),
    ).toBe(false);
  });

  const layerDigest = () => set.containers[0].image.layers.at(-1)!.digest;
  // The volume's last chunk (a chunked volume's file index, stored after its chunks, is not read by a restore).
  const volumeDigest = () => {
    const blob = set.containers[0].volumes.find((v) => v.destination === '/data')!.blob;
    return (isChunked(blob) ? blob.chunks : storedBlobs(blob)).at(-1)!.digest;
  };

  for (const [what, digest] of [
    ['its own image layer', layerDigest],
    ['its volume', volumeDigest],
  ] as const) {
    it(`with ${what} damaged, replacing a running container: fails, and the old container is back with its data`, async () => {
      await sh(name, 'echo live > /own/live; echo live > /data/live');
      const live = await content();
      const before = await engineState();
      const r = await withDamaged(digest(), () => restoreFrom({ source: `dir:${store}`, snapshot: 'd1', replace: 'true' }));
      expect(r.containers.map((c) => [c.status, c.error])).toEqual([['failed', expect.stringMatching(/checksum mismatch/)]]);
      expect(await engineState()).toBe(before);
      expect((await docker.getContainer(name).inspect()).State.Running).toBe(true);
      expect(await content()).toEqual(live);
    });

    it(`with ${what} damaged, onto an engine without the container: fails and leaves no container, volume or image`, async () => {
      await res.removeContainer(name);
      await docker.getVolume(vol).remove();
      try {
        const before = await engineState();
        const r = await withDamaged(digest(), () => restoreFrom({ source: `dir:${store}`, snapshot: 'd1' }));
        expect(r.containers.map((c) => [c.status, c.error])).toEqual([['failed', expect.stringMatching(/checksum mismatch/)]]);
        expect(await engineState()).toBe(before);
      } finally {
        await startApp();
      }
      expect(quietLog.lines.join('\n')).not.toContain('could not put everything back');
    });
  }

  it('with its own image layer damaged, loaded while its new volume is filled: the volume was filled, and nothing is left', async () => {
    await res.removeContainer(name);
    await docker.getVolume(vol).remove();
    try {
      const before = await engineState();
      const from = quietLog.lines.length;
      const r = await withDamaged(layerDigest(), () => restoreFrom({ source: `dir:${store}`, snapshot: 'd1' }));
      expect(r.containers.map((c) => [c.status, c.error])).toEqual([['failed', expect.stringMatching(/checksum mismatch/)]]);
      // Nothing existed to change: the image loaded while the volume was created and filled, then all of it went.
      const log = quietLog.lines.slice(from);
      expect(log.some((l) => l.includes(`filling volume '${vol}'`))).toBe(true);
      expect(await engineState()).toBe(before);
      expect(log.join('\n')).not.toContain('could not put everything back');
    } finally {
      await startApp();
    }
  });
});
