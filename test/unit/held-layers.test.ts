import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { SET_SCOPE } from '../../src/destinations/types.js';
import { storeBlob } from '../../src/snapshot/blobs.js';
import { leadingMatch } from '../../src/snapshot/held-layers.js';
import { loadArchive } from '../../src/snapshot/image-archive.js';
import { IMAGE_CONFIG_MEDIA_TYPE, layerMediaType } from '../../src/snapshot/manifest.js';
import { readSmall } from '../../src/util/streams.js';
import { MemoryDestination } from '../support/memory-destination.js';

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const layer = (n: number) => ({ contentDigest: `sha256:${String(n).repeat(64)}` });

describe('leadingMatch', () => {
  it('counts the leading layers whose diff IDs the engine lists at the same places', () => {
    const layers = [layer(1), layer(2), layer(3)];
    expect(leadingMatch(layers, [layer(1).contentDigest, layer(2).contentDigest])).toBe(2);
    expect(
      leadingMatch(
        layers,
        layers.map((l) => l.contentDigest),
      ),
    ).toBe(3);
    expect(leadingMatch(layers, [...layers.map((l) => l.contentDigest), layer(4).contentDigest])).toBe(3);
    expect(leadingMatch(layers, [])).toBe(0);
  });

  it('stops at the first difference: a layer is the same only over the same layers', () => {
    const layers = [layer(1), layer(2), layer(3)];
    expect(leadingMatch(layers, [layer(2).contentDigest, layer(1).contentDigest, layer(3).contentDigest])).toBe(0);
    expect(leadingMatch(layers, [layer(1).contentDigest, layer(4).contentDigest, layer(3).contentDigest])).toBe(1);
  });
});

async function entriesOf(stream: Readable): Promise<Map<string, Buffer>> {
  const extract = tar.extract();
  stream.pipe(extract);
  const out = new Map<string, Buffer>();
  for await (const entry of extract) out.set(entry.header.name, await readSmall(entry as unknown as Readable));
  return out;
}

describe('loadArchive with held layers', () => {
  const contents = [Buffer.from('base layer'), Buffer.from('middle layer'), Buffer.from('base layer'), Buffer.from('top layer')];

  async function stored() {
    const dest = new MemoryDestination();
    const targets = [{ dest, scope: { container: 'web' } }];
    const layers = [];
    for (const c of contents) layers.push(await storeBlob(Readable.from([c]), targets, layerMediaType('zstd')));
    const configBytes = Buffer.from(JSON.stringify({ rootfs: { type: 'layers', diff_ids: contents.map(sha) } }));
    const config = await storeBlob(Readable.from([configBytes]), [{ dest, scope: SET_SCOPE }], IMAGE_CONFIG_MEDIA_TYPE);
    return { dest, image: { config, layers } };
  }

  it('lists every layer in manifest.json, leaves out the held ones and does not read their blobs', async () => {
    const { dest, image } = await stored();
    // The held layers' blobs are gone from the destination: reading one would fail.
    dest.blobs.delete(image.layers[1].digest);
    const back = await entriesOf(loadArchive(dest, { container: 'web' }, image, 'snap/web:t1', 2));
    const [manifest] = JSON.parse(back.get('manifest.json')!.toString()) as Array<{ Layers: string[] }>;
    expect(manifest.Layers).toEqual(contents.map((c) => `${sha(c).slice(7)}/layer.tar`));
    expect(back.has(manifest.Layers[1])).toBe(false);
    // Layer 2 has layer 0's content but over other layers: the engine opens it, so it is written.
    expect(back.get(manifest.Layers[2])).toEqual(contents[2]);
    expect(back.get(manifest.Layers[3])).toEqual(contents[3]);
  });

  it('leaves out every layer when the engine holds them all', async () => {
    const { dest, image } = await stored();
    for (const l of image.layers) dest.blobs.delete(l.digest);
    const back = await entriesOf(loadArchive(dest, { container: 'web' }, image, 'snap/web:t1', image.layers.length));
    expect([...back.keys()].filter((k) => k.endsWith('layer.tar'))).toEqual([]);
    expect(back.has('manifest.json')).toBe(true);
  });
});
