import { afterAll, describe, expect, inject, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DirDestination } from '../../src/destinations/dir/index.js';
import { isChunked, storedBlobs } from '../../src/snapshot/manifest.js';
import { backUp, restoreFrom } from '../support/commands.js';
import { Resources, docker, quietLog, runContainer, sh } from '../support/fixtures.js';

/** The ID of image `ref`, or undefined when the engine has none. */
async function imageId(ref: string): Promise<string | undefined> {
  return (
    await docker
      .getImage(ref)
      .inspect()
      .catch(() => undefined)
  )?.Id;
}

async function tagsOf(id: string): Promise<string[] | undefined> {
  const info = await docker
    .getImage(id)
    .inspect()
    .catch(() => undefined);
  return info ? (info.RepoTags ?? []).filter((t) => t !== '<none>:<none>') : undefined;
}

/**
 * A restore tags its image `container-snapshot/<name>:<set tag>`. When a set tag is used again,
 * the tag moves to the new image: the image it moved off goes once the restore commits and nothing
 * uses it, stays while a container does, and keeps its tag when the restore is put back.
 */
describe('the image a reused set tag moves off', () => {
  const res = new Resources(inject('runPrefix'), 'disp');
  const image = inject('fixtureImage');
  const TAG = 'weekly';
  afterAll(() => res.cleanup());

  /**
   * Container `suffix` backed up under TAG into store 1 and restored from it in place (its image
   * then named `ref`), changed, and backed up under TAG again into store 2: a second image.
   */
  async function twoSets(suffix: string, volume = false) {
    const name = res.name(suffix);
    const ref = res.image(`container-snapshot/${name}:${TAG}`);
    const binds = volume ? [`${res.volume(suffix)}:/data`] : [];
    await runContainer({ name, Image: image, Cmd: ['sleep', '100000'], HostConfig: { Binds: binds } }, 'running');
    await sh(name, 'echo one > /own; echo one > /data/f');
    const [store1, store2] = [`dir:${join(res.tempDir(), 's1')}`, `dir:${join(res.tempDir(), 's2')}`];
    await backUp({ containers: name, destination: store1, tag: TAG });
    const first = await restoreFrom({ source: store1, snapshot: TAG, replace: 'true' });
    expect(first.failed, JSON.stringify(first.containers)).toBe(0);
    const oldImage = res.imageId((await imageId(ref))!);
    expect((await docker.getContainer(name).inspect()).Image).toBe(oldImage);
    // Random bytes: a flipped byte passes the decompressor, and only the blob's digest finds it.
    await sh(name, 'echo two > /own; dd if=/dev/urandom of=/data/f bs=1k count=256 2>/dev/null');
    await backUp({ containers: name, destination: store2, tag: TAG });
    const set = (await new DirDestination('dir:s2', store2.slice('dir:'.length)).readSet(TAG))!;
    const newImage = res.imageId(set.containers[0].image.id);
    expect(newImage).not.toBe(oldImage);
    return { name, ref, oldImage, newImage, store2, set };
  }

  it('is removed once the restore that moved it commits, when nothing uses it', async () => {
    const { name, ref, oldImage, store2 } = await twoSets('gone');
    quietLog.lines.length = 0;
    const r = await restoreFrom({ source: store2, snapshot: TAG, replace: 'true' });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    const now = await imageId(ref);
    expect(now).not.toBe(oldImage);
    expect((await docker.getContainer(name).inspect()).Image).toBe(now);
    expect(await tagsOf(oldImage)).toBeUndefined();
    expect(quietLog.lines.filter((l) => l.startsWith('Removed image'))).toEqual([
      `Removed image ${oldImage.slice(7, 19)}: tag ${ref} moved to the restored image, and nothing used it`,
    ]);
  });

  it('stays, untagged, while a container uses it', async () => {
    const { name, ref, oldImage, store2 } = await twoSets('kept');
    const beside = res.name('kept2');
    const r = await restoreFrom({ source: store2, snapshot: TAG, rename: `${name}=${beside}` });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    expect(await imageId(ref)).toBe((await docker.getContainer(beside).inspect()).Image);
    expect((await docker.getContainer(name).inspect()).Image).toBe(oldImage);
    expect(await tagsOf(oldImage)).toEqual([]);
  });

  it('keeps its tag when the restore that moved it is put back', async () => {
    const { name, ref, oldImage, newImage, store2, set } = await twoSets('back', true);
    // The volume's last blob damaged: found at its end, once the image was loaded and tagged (the
    // container exists, so the image is loaded before anything else changes).
    const blob = set.containers[0].volumes.find((v) => v.destination === '/data')!.blob;
    const digest = (isChunked(blob) ? blob.chunks : storedBlobs(blob)).at(-1)!.digest;
    const file = join(store2.slice('dir:'.length), 'blobs', 'sha256', digest.slice('sha256:'.length));
    const original = readFileSync(file);
    const changed = Buffer.from(original);
    changed[Math.floor(changed.length / 2)] ^= 0xff;
    writeFileSync(file, changed);
    try {
      const r = await restoreFrom({ source: store2, snapshot: TAG, replace: 'true' });
      expect(r.containers.map((c) => [c.status, c.error])).toEqual([['failed', expect.stringMatching(/checksum mismatch/)]]);
    } finally {
      writeFileSync(file, original);
    }
    expect(quietLog.lines.some((l) => l.includes(`${name}: loading image`))).toBe(true);
    // The old container is back (made again from its committed layer: the volume it used was emptied).
    expect((await docker.getContainer(name).inspect()).State.Running).toBe(true);
    expect(await imageId(ref)).toBe(oldImage);
    expect(await tagsOf(oldImage)).toEqual([ref]);
    expect(await tagsOf(newImage)).toBeUndefined();

    // Restored again, whole: the image the rollback made the old container from goes with it.
    const madeByRollback = res.imageId((await docker.getContainer(name).inspect()).Image);
    expect(await tagsOf(madeByRollback)).toEqual([]);
    const again = await restoreFrom({ source: store2, snapshot: TAG, replace: 'true' });
    expect(again.failed, JSON.stringify(again.containers)).toBe(0);
    expect((await docker.getContainer(name).inspect()).Image).toBe(newImage);
    expect(await tagsOf(madeByRollback)).toBeUndefined();
    expect(await tagsOf(oldImage)).toBeUndefined();
  });
});
