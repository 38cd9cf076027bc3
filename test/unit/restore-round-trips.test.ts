import { describe, expect, it } from 'vitest';
import type { Engine } from '../../src/engine/engine.js';
import { NotFoundError } from '../../src/engine/errors.js';
import { EMPTY_IMAGE, Filler } from '../../src/snapshot/fill.js';
import { heldLayers } from '../../src/snapshot/held-layers.js';
import type { ContainerRecord } from '../../src/snapshot/manifest.js';

const d = (n: number) => `sha256:${String(n).repeat(64)}`;

function container(baseImage: string | undefined, layers: number[]): ContainerRecord {
  return { image: { baseImage, layers: layers.map((n) => ({ contentDigest: d(n) })) } } as unknown as ContainerRecord;
}

describe('heldLayers (its engine questions asked at once)', () => {
  const engine = (images: Record<string, number[]>, tags: string[], containerd = false) =>
    ({
      containerdImageStore: async () => containerd,
      imageTags: async () => tags,
      imageDiffIds: async (ref: string) => images[ref]?.map(d),
    }) as unknown as Engine;

  it('takes the longest leading match among the base image and the local tags', async () => {
    const c = container('base:1', [1, 2, 3, 4]);
    expect(await heldLayers(engine({ 'base:1': [1, 2], 'repo:a': [1, 2, 3], 'repo:b': [9] }, ['repo:a', 'repo:b']), c, 'repo')).toBe(3);
    expect(await heldLayers(engine({ 'base:1': [1, 2, 3, 4, 5] }, []), c, 'repo')).toBe(4);
  });

  it('holds none without a base or tag, with a missing base, or with the containerd image store', async () => {
    expect(await heldLayers(engine({}, []), container(undefined, [1]), 'repo')).toBe(0);
    expect(await heldLayers(engine({}, ['repo:gone']), container('base:gone', [1]), 'repo')).toBe(0);
    expect(await heldLayers(engine({ 'base:1': [1] }, [], true), container('base:1', [1]), 'repo')).toBe(0);
  });

  it('throws what the engine throws', async () => {
    const failing = { ...engine({}, []), imageTags: async () => Promise.reject(new Error('boom')) } as unknown as Engine;
    await expect(heldLayers(failing, container('base:1', [1]), 'repo')).rejects.toThrow('boom');
  });
});

describe("Filler's helpers made from the empty image", () => {
  function fakeEngine(hasEmpty: boolean) {
    const calls: string[] = [];
    let present = hasEmpty;
    const engine = {
      createContainer: async (opts: { Image: string }) => {
        calls.push(`create ${opts.Image}`);
        if (!present) throw new NotFoundError(`create container: No such image: ${opts.Image}`, 404);
        return 'helper-id';
      },
      imageExists: async () => {
        calls.push('exists');
        return present;
      },
      importImage: async () => {
        calls.push('import');
        present = true;
      },
      removeContainer: async (id: string) => void calls.push(`remove ${id}`),
    } as unknown as Engine;
    return { engine, calls };
  }
  const empty = `${EMPTY_IMAGE.repo}:${EMPTY_IMAGE.tag}`;

  it('creates the helper at once when the engine has the empty image', async () => {
    const { engine, calls } = fakeEngine(true);
    expect(await new Filler(engine, 'img', 'run').withHelper([{ volume: 'v', target: '/v' }], async (id) => id)).toBe('helper-id');
    expect(calls).toEqual([`create ${empty}`, 'remove helper-id']);
  });

  it('makes the empty image when the engine lacks it, then creates the helper', async () => {
    const { engine, calls } = fakeEngine(false);
    expect(await new Filler(engine, 'img', 'run').withHelper([{ volume: 'v', target: '/v' }], async (id) => id)).toBe('helper-id');
    expect(calls).toEqual([`create ${empty}`, 'exists', 'import', `create ${empty}`, 'remove helper-id']);
  });

  it('passes on any other failure to create the helper', async () => {
    const engine = {
      createContainer: async () => Promise.reject(new NotFoundError('create container: no such volume', 404)),
    } as unknown as Engine;
    await expect(new Filler(engine, 'img', 'run').withHelper([{ volume: 'v', target: '/v' }], async () => 1)).rejects.toThrow('no such volume');
  });
});
