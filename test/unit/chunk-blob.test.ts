import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { constants, gzip, zstdCompress, zstdDecompressSync, gunzipSync, type ZlibOptions, type ZstdOptions } from 'node:zlib';
import { ChunkCompressors } from '../../src/snapshot/chunk-blob.js';
import { GZIP_LEVEL, ZSTD_LEVEL } from '../../src/snapshot/blobs.js';

const zstdAsync = promisify<Buffer, ZstdOptions, Buffer>(zstdCompress);
const gzipAsync = promisify<Buffer, ZlibOptions, Buffer>(gzip);

/** What a one-shot call gives (a context of its own per chunk): the frames stored before compressors were kept. */
const oneShot = (chunk: Buffer, compression: 'zstd' | 'gzip') =>
  compression === 'zstd' ? zstdAsync(chunk, { params: { [constants.ZSTD_c_compressionLevel]: ZSTD_LEVEL } }) : gzipAsync(chunk, { level: GZIP_LEVEL });

/** Chunks of the kinds a volume holds: random, repetitive, text-like, zeros, tiny, the largest. */
function chunks(): Buffer[] {
  const text = Buffer.from('the quick brown fox jumps over the lazy dog\n'.repeat(30000));
  return [
    randomBytes(300 << 10),
    Buffer.alloc(1 << 20, 'ab'),
    text.subarray(0, 700 << 10),
    Buffer.alloc(64 << 10),
    Buffer.from('x'),
    Buffer.concat([randomBytes(1 << 20), text.subarray(0, 1 << 20)]),
    randomBytes(70 << 10),
  ];
}

describe('chunk compressors', () => {
  for (const compression of ['zstd', 'gzip'] as const) {
    it(`give each chunk the ${compression} frame a one-shot call gives, chunk after chunk on one context (stored digests, and so dedupe, unchanged)`, async () => {
      const compressors = new ChunkCompressors(compression, 2);
      try {
        const inputs = chunks();
        const got = await Promise.all(inputs.map((c) => compressors.compress(c)));
        for (let i = 0; i < inputs.length; i++) {
          expect(got[i].equals(await oneShot(inputs[i], compression))).toBe(true);
          const back = compression === 'zstd' ? zstdDecompressSync(got[i]) : gunzipSync(got[i]);
          expect(back.equals(inputs[i])).toBe(true);
        }
      } finally {
        compressors.close();
      }
    });
  }

  it('compresses at most `count` chunks at once and serves the others as compressors come free', async () => {
    const compressors = new ChunkCompressors('zstd', 1);
    try {
      const inputs = chunks();
      const got = await Promise.all(inputs.map((c) => compressors.compress(c)));
      expect(got.map((g) => zstdDecompressSync(g).length)).toEqual(inputs.map((c) => c.length));
    } finally {
      compressors.close();
    }
  });
});
