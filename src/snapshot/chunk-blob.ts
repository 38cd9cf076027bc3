import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { constants, createGzip, createZstdCompress, type Gzip, type ZlibReset, type ZstdCompress } from 'node:zlib';
import type { BlobWriter } from '../destinations/types.js';
import { GZIP_LEVEL, ZSTD_LEVEL, storeBlob, type StoreTarget } from './blobs.js';
import { CHUNK_SIZES } from './chunker.js';
import { chunkMediaType, type BlobDescriptor, type Compression } from './manifest.js';

/**
 * Room for a chunk's compressed frame, in bytes: zstd's ZSTD_COMPRESSBOUND (n + n/256 + a margin)
 * and deflate's bound (n + n/1000 + a few bytes per 16 KiB block) both fit under n + n/128 + 1 KiB.
 * A compressor's output buffer (node:zlib's chunkSize) this large takes any chunk's frame in one
 * pass of the thread pool, and several smaller frames before a new one is allocated.
 */
function outputRoom(n: number): number {
  return n + (n >> 7) + 1024;
}

/** Ends a frame: the chunk's bytes go in with the stream's default flush, then this (as node:zlib's one-shot zstdCompress and gzip do). */
const FRAME_END: Record<Compression, number> = { zstd: constants.ZSTD_e_end, gzip: constants.Z_FINISH };

/**
 * One node:zlib stream kept for many chunks, each compressed into a frame of its own: one zstd or
 * gzip context and one output buffer (of outputRoom(CHUNK_SIZES.max) bytes, shared by the frames
 * that fit in it) for hundreds of chunks, where a one-shot zstdCompress allocates both per chunk
 * (a full backup's volume is ~500 chunks: GC and RSS went to them). A frame is byte for byte the
 * one-shot's (zstd: ZSTD_e_continue then ZSTD_e_end on a reused context starts each frame afresh
 * with the same parameters; gzip: deflateReset before each), so a chunk's stored digest does not
 * depend on which compressor took it. One chunk at a time.
 */
class FrameCompressor {
  private readonly stream: Gzip | ZstdCompress;
  private parts: Buffer[] = [];
  private failed: Error | undefined;

  constructor(private readonly compression: Compression) {
    const chunkSize = outputRoom(CHUNK_SIZES.max);
    this.stream =
      compression === 'zstd'
        ? createZstdCompress({ chunkSize, params: { [constants.ZSTD_c_compressionLevel]: ZSTD_LEVEL } })
        : createGzip({ chunkSize, level: GZIP_LEVEL });
    this.stream.on('data', (part: Buffer) => this.parts.push(part));
    this.stream.on('error', (err: Error) => (this.failed ??= err));
  }

  /** The chunk as one frame. Rejects with the stream's error (and for every later chunk: the stream is done). */
  compress(chunk: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      if (this.failed) return reject(this.failed);
      const onError = (err: Error) => reject(err);
      this.stream.once('error', onError);
      // deflateReset (node:zlib's reset(), which @types/node lists for Deflate but not for Gzip, its subclass at run time).
      if (this.compression === 'gzip') (this.stream as Gzip & ZlibReset).reset();
      this.stream.write(chunk);
      this.stream.flush(FRAME_END[this.compression], () => {
        this.stream.off('error', onError);
        const parts = this.parts;
        this.parts = [];
        if (this.failed) return reject(this.failed);
        resolve(joined(parts));
      });
    });
  }

  close(): void {
    this.stream.destroy();
  }
}

/**
 * The frame's pieces as one Buffer: a view spanning them when they lie one after the other in one
 * output buffer (node:zlib pushes each pass's output as the next slice of it), else a copy.
 */
function joined(parts: Buffer[]): Buffer {
  const first = parts[0];
  if (!first) return Buffer.alloc(0);
  let end = first.byteOffset + first.length;
  for (const p of parts.slice(1)) {
    if (p.buffer !== first.buffer || p.byteOffset !== end) return Buffer.concat(parts);
    end += p.length;
  }
  return Buffer.from(first.buffer, first.byteOffset, end - first.byteOffset);
}

/**
 * Compressors for the chunks of one run of storeChunked: at most `count` frames compressed at once
 * (each on node:zlib's thread pool), the others wait for a compressor; close() frees their contexts.
 */
export class ChunkCompressors {
  private readonly idle: FrameCompressor[] = [];
  private made = 0;
  private readonly waiting: Array<(c: FrameCompressor) => void> = [];

  constructor(
    readonly compression: Compression,
    private readonly count: number,
  ) {}

  /** `chunk` as one zstd or gzip frame (the levels of every other blob, blobs.ts), the bytes node:zlib's one-shot call gives. */
  async compress(chunk: Buffer): Promise<Buffer> {
    const c = await this.take();
    try {
      return await c.compress(chunk);
    } finally {
      this.give(c);
    }
  }

  /** Frees every compressor; compress must not be called after. */
  close(): void {
    for (const c of this.idle.splice(0)) c.close();
  }

  private take(): Promise<FrameCompressor> {
    const c = this.idle.pop();
    if (c) return Promise.resolve(c);
    if (this.made < this.count) {
      this.made++;
      return Promise.resolve(new FrameCompressor(this.compression));
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private give(c: FrameCompressor): void {
    const next = this.waiting.shift();
    if (next) next(c);
    else this.idle.push(c);
  }
}

/** Writes `bytes` through one writer and keeps them under `digest`; the writer is aborted on failure. */
async function writeWhole(writer: BlobWriter, bytes: Buffer, digest: string): Promise<void> {
  try {
    await new Promise<void>((resolve, reject) => {
      writer.stream.once('error', reject);
      writer.stream.end(bytes, () => {
        writer.stream.off('error', reject);
        resolve();
      });
    });
    await writer.commit(digest, bytes.length);
  } catch (err) {
    await writer.abort().catch(() => undefined);
    throw err;
  }
}

/**
 * Stores one volume chunk (a Buffer held whole, of at most CHUNK_SIZES.max bytes) whose sha256 is
 * `contentDigest` in every target: compressed by one of `compressors` (its compression says which)
 * in one frame, hashed once, written in one piece. A keyring that encrypts takes the streaming path
 * (storeBlob) instead. The blob is the one storeBlob would store (the same media type, a zstd or
 * gzip frame of the same level); its stored bytes may differ (the frame is compressed from the
 * whole chunk at once), so its digest may too. Throws the destination's error with its label in
 * front, or the compressor's error.
 */
export async function storeChunk(chunk: Buffer, contentDigest: string, targets: StoreTarget[], compressors: ChunkCompressors): Promise<BlobDescriptor> {
  const mediaType = chunkMediaType(compressors.compression);
  if (targets.some((t) => t.dest.keyring?.encrypting)) return storeBlob(Readable.from([chunk]), targets, mediaType);
  const stored = await compressors.compress(chunk);
  const digest = `sha256:${createHash('sha256').update(stored).digest('hex')}`;
  await Promise.all(
    targets.map(async (t) => {
      try {
        await writeWhole(await t.dest.writeBlob(t.scope), stored, digest);
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        if (message.startsWith(t.dest.label)) throw err;
        throw new Error(`${t.dest.label}: ${message}`, { cause: err });
      }
    }),
  );
  return { mediaType, digest, size: stored.length, contentDigest, contentSize: chunk.length };
}
