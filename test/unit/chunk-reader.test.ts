import { describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { SET_SCOPE, type BlobScope } from '../../src/destinations/types.js';
import { openContent, storeBlob } from '../../src/snapshot/blobs.js';
import { storeChunked } from '../../src/snapshot/chunked.js';
import { chunkContents, READ_AHEAD_CHUNKS } from '../../src/snapshot/chunk-reader.js';
import { CHUNKED_VOLUME_MEDIA_TYPE, chunkMediaType, type BlobDescriptor, type ChunkedBlob } from '../../src/snapshot/manifest.js';
import { drain } from '../../src/util/streams.js';
import { MemoryDestination } from '../support/memory-destination.js';

/** A memory destination that counts the reads of each blob. */
class CountingDestination extends MemoryDestination {
  readonly reads = new Map<string, number>();
  override async readBlob(scope: BlobScope, digest: string): Promise<Readable> {
    this.reads.set(digest, (this.reads.get(digest) ?? 0) + 1);
    return super.readBlob(scope, digest);
  }
}

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of stream) parts.push(p as Buffer);
  return Buffer.concat(parts);
}

/** A volume-like content: random data around 12 MiB of zeros (six 2 MiB zero chunks of one digest). */
function sparseLike(): Buffer {
  return Buffer.concat([randomBytes(1 << 20), Buffer.alloc(12 << 20), randomBytes(3 << 20), Buffer.alloc(4 << 20), randomBytes(100_000)]);
}

describe('reading a chunked blob (chunk-reader)', () => {
  it('gives back the whole content, in order, reading a recurring chunk (zeros) once and every other chunk once', async () => {
    const dest = new CountingDestination();
    const data = sparseLike();
    const { blob } = await storeChunked(Readable.from([data]), [{ dest, scope: SET_SCOPE }], 'zstd', new Map());
    const recurring = blob.chunks.filter((c, i) => blob.chunks.findIndex((d) => d.digest === c.digest) !== i);
    expect(recurring.length).toBeGreaterThanOrEqual(5);
    const back = await readAll(await openContent(dest, SET_SCOPE, blob, 'v'));
    expect(back.equals(data)).toBe(true);
    for (const c of blob.chunks) expect(dest.reads.get(c.digest)).toBe(1);
  });

  it('fails with the first damaged chunk in order, having passed on nothing of it or after it', async () => {
    const dest = new MemoryDestination();
    const data = randomBytes(6 << 20);
    const { blob } = await storeChunked(Readable.from([data]), [{ dest, scope: SET_SCOPE }], 'zstd', new Map());
    expect(blob.chunks.length).toBeGreaterThan(4);
    for (const i of [2, 4]) {
      const body = Buffer.from(dest.blobs.get(blob.chunks[i].digest)!);
      body[10] ^= 1;
      dest.blobs.set(blob.chunks[i].digest, body);
    }
    const passed: Buffer[] = [];
    const stream = await openContent(dest, SET_SCOPE, blob, 'v');
    await expect(
      (async () => {
        for await (const p of stream) passed.push(p as Buffer);
      })(),
    ).rejects.toThrow(/v chunk 2/);
    const before = blob.chunks.slice(0, 2).reduce((n, c) => n + c.contentSize, 0);
    const got = Buffer.concat(passed);
    expect(got.length).toBeLessThanOrEqual(before);
    expect(got.equals(data.subarray(0, got.length))).toBe(true);
  });

  it(`reads at most ${READ_AHEAD_CHUNKS} chunks at once, and stops reading once the stream is destroyed`, async () => {
    const chunks: BlobDescriptor[] = Array.from({ length: 40 }, (_v, i) => ({
      mediaType: 'x',
      digest: `sha256:${i}`,
      size: 10,
      contentDigest: `sha256:${i}`,
      contentSize: 10,
    }));
    let open = 0;
    let most = 0;
    let opened = 0;
    const whole = async (i: number) => {
      opened++;
      most = Math.max(most, ++open);
      await new Promise((r) => setTimeout(r, 2));
      open--;
      return Buffer.from(`${i}`.padStart(10, '.'));
    };
    const stream = chunkContents(chunks, { whole, stream: async () => Readable.from([]) });
    let got = 0;
    for await (const _p of stream) if (++got === 10) break;
    await new Promise((r) => setTimeout(r, 30));
    const after = opened;
    await new Promise((r) => setTimeout(r, 30));
    expect(most).toBeLessThanOrEqual(READ_AHEAD_CHUNKS);
    expect(most).toBeGreaterThan(1);
    expect(opened).toBe(after);
    expect(opened).toBeLessThan(40);
  });

  it('streams a chunk larger than it reads whole, checked, between recurring small ones', async () => {
    const dest = new CountingDestination();
    const [small, large] = [randomBytes(1 << 20), randomBytes(9 << 20)];
    const targets = [{ dest, scope: SET_SCOPE }];
    const a = await storeBlob(Readable.from([small]), targets, chunkMediaType('zstd'));
    const b = await storeBlob(Readable.from([large]), targets, chunkMediaType('zstd'));
    const data = Buffer.concat([small, large, small]);
    const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
    const blob: ChunkedBlob = { mediaType: CHUNKED_VOLUME_MEDIA_TYPE, digest, size: 0, contentDigest: digest, contentSize: data.length, chunks: [a, b, a] };
    expect((await readAll(await openContent(dest, SET_SCOPE, blob, 'v'))).equals(data)).toBe(true);
    expect(dest.reads.get(a.digest)).toBe(1);
    const body = Buffer.from(dest.blobs.get(b.digest)!);
    body[body.length - 20] ^= 1;
    dest.blobs.set(b.digest, body);
    await expect(drain(await openContent(dest, SET_SCOPE, blob, 'v'))).rejects.toThrow(/v chunk 1/);
  });
});
