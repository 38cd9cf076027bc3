import { describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { storeBlob } from '../../src/snapshot/blobs.js';
import { layerMediaType } from '../../src/snapshot/manifest.js';
import { LAYER_PIECE_BYTES, openLayerContent } from '../../src/snapshot/restore-content.js';
import { VERIFIER_HOLD_BYTES } from '../../src/oci/digest.js';
import { MemoryDestination } from '../support/memory-destination.js';

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const scope = { container: 'web' };

// 3 MiB that compress (repeated random blocks), so the content is many decompressor pieces.
const content = Buffer.concat(Array.from({ length: 48 }, (_v, i) => Buffer.concat([randomBytes(4096), Buffer.alloc(60 * 1024, i)])));

async function pieces(stream: Readable): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const chunk of stream) out.push(chunk as Buffer);
  return out;
}

describe("an image layer's content for the load (restore-content)", () => {
  it.each(['zstd', 'gzip'] as const)('is the checked content of a %s layer, in pieces larger than zlib’s 16 KiB', async (compression) => {
    const dest = new MemoryDestination();
    const blob = await storeBlob(Readable.from([content]), [{ dest, scope }], layerMediaType(compression));
    const got = await pieces(await openLayerContent(dest, scope, blob, 'image layer 0'));
    expect(Buffer.concat(got).equals(content)).toBe(true);
    expect(Math.max(...got.map((p) => p.length))).toBeGreaterThan(16 * 1024);
    expect(Math.max(...got.map((p) => p.length))).toBeLessThanOrEqual(Math.max(LAYER_PIECE_BYTES, VERIFIER_HOLD_BYTES) * 2);
  });

  it('fails on stored bytes that are not the recorded ones', async () => {
    const dest = new MemoryDestination();
    const blob = await storeBlob(Readable.from([content]), [{ dest, scope }], layerMediaType('zstd'));
    const stored = dest.blobs.get(blob.digest)!;
    const bad = Buffer.from(stored);
    bad[bad.length - 10] ^= 0xff;
    dest.blobs.set(blob.digest, bad);
    await expect(pieces(await openLayerContent(dest, scope, blob, 'image layer 0'))).rejects.toThrow(/image layer 0 \(.*checksum mismatch/);
  });

  it('never hands on the whole content when its digest is not the recorded one', async () => {
    const dest = new MemoryDestination();
    const blob = await storeBlob(Readable.from([content]), [{ dest, scope }], layerMediaType('zstd'));
    const wrong = { ...blob, contentDigest: sha(Buffer.from('another layer')) };
    const seen: Buffer[] = [];
    const stream = await openLayerContent(dest, scope, wrong, 'image layer 1');
    await expect(
      (async () => {
        for await (const chunk of stream) seen.push(chunk as Buffer);
      })(),
    ).rejects.toThrow(/image layer 1 content/);
    expect(Buffer.concat(seen).length).toBeLessThanOrEqual(content.length - VERIFIER_HOLD_BYTES);
  });

  it('reads an uncompressed layer as openContent does', async () => {
    const dest = new MemoryDestination();
    const blob = await storeBlob(Readable.from([content]), [{ dest, scope }], 'application/vnd.oci.image.layer.v1.tar');
    const got = Buffer.concat(await pieces(await openLayerContent(dest, scope, blob, 'image layer 0')));
    expect(got.equals(content)).toBe(true);
  });
});
