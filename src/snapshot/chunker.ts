import { createHash } from 'node:crypto';

/**
 * Chunk sizes in bytes. An average of 1 MiB keeps a 1 MB change to one or two chunks and a 200 MB
 * volume to ~200 blobs (one stat or HEAD each to reuse); the minimum skips hashing the first
 * quarter of each chunk; the maximum bounds memory (a chunk is held whole while it is stored).
 * restic uses 512 KiB–8 MiB (avg 1 MiB); ours is narrower so that a chunk stays small in memory.
 */
export interface ChunkSizes {
  min: number;
  avg: number;
  max: number;
}

export const CHUNK_SIZES: ChunkSizes = { min: 256 << 10, avg: 1 << 20, max: 4 << 20 };

/**
 * The gear table of FastCDC (Xia et al., USENIX ATC 2016): 256 pseudo-random 32-bit values, derived
 * from a fixed seed. Changing it moves every boundary (nothing breaks, but nothing dedupes against
 * chunks cut before), so it never changes.
 */
const GEAR = Uint32Array.from({ length: 256 }, (_v, i) => createHash('sha256').update(`container-snapshot gear ${i}`).digest().readUInt32BE(0));

/** A mask of the top `bits` bits: the gear hash's top bits depend on the last 32 bytes, the bottom ones on fewer. */
function topBits(bits: number): number {
  return (0xffffffff << (32 - bits)) >>> 0;
}

/**
 * Where the chunk that starts at `start` ends: FastCDC with normalized chunking (level 2): a
 * harder mask before the average size, an easier one after it. `end` is where the data available
 * ends; the caller gives at least `max` bytes unless the stream has ended. Returns an offset in `buf`.
 */
export function cutPoint(buf: Uint8Array, start: number, end: number, sizes: ChunkSizes = CHUNK_SIZES): number {
  const n = Math.min(end - start, sizes.max);
  if (n <= sizes.min) return start + n;
  const bits = Math.round(Math.log2(sizes.avg));
  const hard = topBits(bits + 2);
  const easy = topBits(bits - 2);
  const normal = start + Math.min(sizes.avg, n);
  const last = start + n;
  let h = 0;
  let i = start + sizes.min;
  for (; i < normal; i++) {
    h = ((h << 1) + GEAR[buf[i]]) | 0;
    if ((h & hard) === 0) return i + 1;
  }
  for (; i < last; i++) {
    h = ((h << 1) + GEAR[buf[i]]) | 0;
    if ((h & easy) === 0) return i + 1;
  }
  return last;
}

const zeroCuts = new Map<ChunkSizes, { zeros: Buffer; cut: number }>();

/** A run of `max` zero bytes, and where cutPoint ends a chunk that starts with one (computed once). */
function zeroRun(sizes: ChunkSizes): { zeros: Buffer; cut: number } {
  let z = zeroCuts.get(sizes);
  if (!z) {
    const zeros = Buffer.alloc(sizes.max);
    z = { zeros, cut: cutPoint(zeros, 0, zeros.length, sizes) };
    zeroCuts.set(sizes, z);
  }
  return z;
}

/**
 * Cuts a byte stream into content-defined chunks (cutPoint), each yielded as its own Buffer, in
 * order; together they are the stream. A chunk that starts a run of `max` zero bytes (a sparse
 * file's hole) is cut without hashing, where cutPoint would cut it.
 */
export async function* chunksOf(source: AsyncIterable<Buffer>, sizes: ChunkSizes = CHUNK_SIZES): AsyncGenerator<Buffer> {
  const zero = zeroRun(sizes);
  // Never full after cutFrom: it leaves less than `max` bytes.
  const win = Buffer.allocUnsafe(sizes.max * 2);
  let len = 0;
  const cutFrom = (ended: boolean): Buffer[] => {
    const out: Buffer[] = [];
    let start = 0;
    while (len - start >= sizes.max || (ended && len > start)) {
      const zeros = len - start >= sizes.max && win.subarray(start, start + sizes.max).equals(zero.zeros);
      const cut = zeros ? start + zero.cut : cutPoint(win, start, len, sizes);
      out.push(Buffer.from(win.subarray(start, cut)));
      start = cut;
    }
    if (start > 0) {
      win.copyWithin(0, start, len);
      len -= start;
    }
    return out;
  };
  for await (const data of source) {
    let at = 0;
    while (at < data.length) {
      const n = data.copy(win, len, at);
      len += n;
      at += n;
      yield* cutFrom(false);
    }
  }
  yield* cutFrom(true);
}
