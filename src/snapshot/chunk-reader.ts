import { Readable } from 'node:stream';
import type { BlobDescriptor } from './manifest.js';

/** Reading ahead of the chunk being passed on stops at this many bytes of content (at least one chunk is always read). */
export const READ_AHEAD_BYTES = 16 << 20;
/** …and at this many chunks being read at once (each is a file, a decompressor and two digests). */
export const READ_AHEAD_CHUNKS = 6;
/** A chunk larger than this is streamed when its turn comes instead of read ahead whole (the chunker cuts at most 2 MiB: chunker.ts). */
export const WHOLE_CHUNK_MAX = 8 << 20;
/** Chunks that occur more than once in a blob (a sparse file's zero chunk) are kept, up to this many bytes, and read once. */
export const RECURRING_KEEP_BYTES = 32 << 20;

/** Where a chunked blob's chunks are read from, each checked (see blobs.ts openChunks). */
export interface ChunkSource {
  /** The checked content of chunk `i`, whole (for chunks up to WHOLE_CHUNK_MAX bytes). */
  whole(i: number): Promise<Buffer>;
  /** The content of chunk `i` as a stream that fails at its end on a mismatch (for larger chunks). */
  stream(i: number): Promise<Readable>;
}

/**
 * The contents of `chunks`, in order, as one stream: while a chunk is passed on, the next ones are
 * read and checked (up to READ_AHEAD_CHUNKS and READ_AHEAD_BYTES ahead), so that opening a chunk
 * and starting its decompressor costs no waiting. A chunk whose stored digest recurs is read once
 * and its checked content passed on again (while RECURRING_KEEP_BYTES allows; beyond, it is read
 * again). Nothing is passed on of a chunk before its whole content is checked, except a chunk larger
 * than WHOLE_CHUNK_MAX, streamed (its own digest check fails the stream at its end). The stream fails
 * with the first chunk's error, in order; destroying it stops every read in flight.
 */
export function chunkContents(chunks: BlobDescriptor[], source: ChunkSource): Readable {
  return Readable.from(contents(chunks, source), { objectMode: false });
}

async function* contents(chunks: BlobDescriptor[], source: ChunkSource): AsyncGenerator<Buffer> {
  const left = new Map<string, number>();
  for (const c of chunks) left.set(c.digest, (left.get(c.digest) ?? 0) + 1);
  // Reads of recurring chunks, by stored digest, kept until their last occurrence is passed on.
  const kept = new Map<string, { read: Promise<Buffer>; bytes: number }>();
  let keptBytes = 0;
  const ahead: Array<{ i: number; read?: Promise<Buffer>; bytes: number }> = [];
  let aheadBytes = 0;
  let reading = 0;
  let next = 0;

  const readAhead = () => {
    while (next < chunks.length) {
      const c = chunks[next];
      const again = kept.get(c.digest);
      const whole = c.contentSize <= WHOLE_CHUNK_MAX;
      if (ahead.length > 0 && (!whole || (!again && (reading >= READ_AHEAD_CHUNKS || aheadBytes + c.contentSize > READ_AHEAD_BYTES)))) return;
      let read = again?.read;
      if (!read && whole) {
        const i = next;
        reading++;
        read = source.whole(i).finally(() => reading--);
        read.catch(() => undefined);
        if ((left.get(c.digest) ?? 0) > 1 && keptBytes + c.contentSize <= RECURRING_KEEP_BYTES) {
          kept.set(c.digest, { read, bytes: c.contentSize });
          keptBytes += c.contentSize;
        }
      }
      ahead.push({ i: next, read, bytes: again ? 0 : c.contentSize });
      aheadBytes += again ? 0 : c.contentSize;
      next++;
      if (!whole) return;
    }
  };

  readAhead();
  while (ahead.length > 0) {
    const { i, read, bytes } = ahead[0];
    const digest = chunks[i].digest;
    if (read) {
      const content = await read;
      ahead.shift();
      aheadBytes -= bytes;
      const n = (left.get(digest) ?? 1) - 1;
      left.set(digest, n);
      const k = kept.get(digest);
      if (k && n === 0) {
        kept.delete(digest);
        keptBytes -= k.bytes;
      }
      readAhead();
      if (content.length > 0) yield content;
    } else {
      ahead.shift();
      left.set(digest, (left.get(digest) ?? 1) - 1);
      yield* (await source.stream(i)) as AsyncIterable<Buffer>;
      readAhead();
    }
  }
}
