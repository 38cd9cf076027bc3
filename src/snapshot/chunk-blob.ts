import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { constants, gzip, zstdCompress, type ZlibOptions, type ZstdOptions } from 'node:zlib';
import { promisify } from 'node:util';
import type { BlobWriter } from '../destinations/types.js';
import { GZIP_LEVEL, ZSTD_LEVEL, storeBlob, type StoreTarget } from './blobs.js';
import { chunkMediaType, type BlobDescriptor, type Compression } from './manifest.js';

const zstdAsync = promisify<Buffer, ZstdOptions, Buffer>(zstdCompress);
const gzipAsync = promisify<Buffer, ZlibOptions, Buffer>(gzip);

/**
 * Room for a chunk's compressed frame, in bytes: zstd's ZSTD_COMPRESSBOUND (n + n/256 + a margin)
 * and deflate's bound (n + n/1000 + a few bytes per 16 KiB block) both fit under n + n/128 + 1 KiB.
 * With an output buffer this large, node:zlib compresses a chunk in one pass of its thread pool
 * instead of one pass per 16 KiB of output (its default chunkSize).
 */
function outputRoom(n: number): number {
  return n + (n >> 7) + 1024;
}

/** The chunk compressed as `compression` says, with the levels of every other blob (blobs.ts): one zstd or gzip frame. */
export function compressChunk(chunk: Buffer, compression: Compression): Promise<Buffer> {
  const chunkSize = outputRoom(chunk.length);
  if (compression === 'zstd') return zstdAsync(chunk, { chunkSize, params: { [constants.ZSTD_c_compressionLevel]: ZSTD_LEVEL } });
  return gzipAsync(chunk, { chunkSize, level: GZIP_LEVEL });
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
 * `contentDigest` in every target: compressed in one call, hashed once, written in one piece. A
 * keyring that encrypts takes the streaming path (storeBlob) instead. The blob is the one storeBlob
 * would store (the same media type, a zstd or gzip frame of the same level); its stored bytes may
 * differ (a one-shot zstd frame records the content size), so its digest may too. Throws the
 * destination's error with its label in front.
 */
export async function storeChunk(chunk: Buffer, contentDigest: string, targets: StoreTarget[], compression: Compression): Promise<BlobDescriptor> {
  const mediaType = chunkMediaType(compression);
  if (targets.some((t) => t.dest.keyring?.encrypting)) return storeBlob(Readable.from([chunk]), targets, mediaType);
  const stored = await compressChunk(chunk, compression);
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
