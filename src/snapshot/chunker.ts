import { createHash } from 'node:crypto';
import { checksumOk, EXTENSION_TYPES, memberSize, paddedSize, TAR_BLOCK } from '../util/tar-header.js';
import { sha256Digest } from '../oci/digest.js';

/**
 * Chunk sizes in bytes. Measured on 30 MB of random data with 1 MB of it rewritten (16 trials
 * each): an average of 1 MiB (256 KiB–4 MiB, restic's average) stored 4.0 MB again, 512 KiB 1.8–2.3
 * MB, 256 KiB 1.5–1.7 MB; a chunk is one blob (one stat or HEAD to reuse, one line in a registry
 * manifest), so 512 KiB: ~400 blobs for 200 MB. The minimum (1/8 of the average) lets a changed run
 * resynchronise soon; the maximum bounds memory (a chunk is held whole while it is stored).
 */
export interface ChunkSizes {
  min: number;
  avg: number;
  max: number;
}

export const CHUNK_SIZES: ChunkSizes = { min: 64 << 10, avg: 512 << 10, max: 2 << 20 };

/**
 * The gear table of FastCDC (Xia et al., USENIX ATC 2016): 256 pseudo-random 32-bit values, derived
 * from a fixed seed. Changing it moves every boundary (nothing breaks, but nothing dedupes against
 * chunks cut before), so it never changes.
 */
const GEAR = Int32Array.from({ length: 256 }, (_v, i) => createHash('sha256').update(`container-snapshot gear ${i}`).digest().readInt32BE(0));

/** A mask of the top `bits` bits: the gear hash's top bits depend on the last 32 bytes, the bottom ones on fewer. */
function topBits(bits: number): number {
  return 0xffffffff << (32 - bits);
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

const BLOCK = TAR_BLOCK;

/** Where a large member's data starts or ends in the stream (TarBoundaries.marks). */
interface Mark {
  /** The stream's offset. */
  offset: number;
  /** The member's number: the archive's members counted from 0 in order, extended headers not counted. */
  member: number;
  at: 'data' | 'end';
  /** The member's data size in bytes (before the padding to a 512-byte block). */
  size: number;
  /** Where its data ends, padding included (the 'end' mark's offset). */
  end: number;
}

/**
 * Where a tar archive's large members start, where their data starts and where it ends (after the
 * padding), found as the stream goes by: a chunk is cut at each, so that a member's header (its
 * mtime changes with every write) is a chunk of its own, the member's data chunks start with its
 * data and end with it (a renamed or copied large file dedupes, and an unchanged one is the same
 * run of chunks in every archive: chunksOf's `reuse`). Extended headers (pax `x`/`g`, GNU `L`/`K`)
 * belong to the member they precede. A stream that is not a tar archive (a header with a wrong
 * checksum) gets no such cuts.
 */
class TarBoundaries {
  private next = 0;
  private readonly head = Buffer.alloc(BLOCK);
  private headLen = 0;
  private sequence: number | undefined;
  private done = false;
  private members = 0;
  /** Offsets in the stream, ascending, where a chunk must end. */
  readonly cuts: number[] = [];
  /** Where large members' data starts and ends, ascending. */
  readonly marks: Mark[] = [];

  constructor(private readonly large: number) {}

  /** Below this offset of the stream, every cut is known. */
  get horizon(): number {
    return this.done ? Number.POSITIVE_INFINITY : (this.sequence ?? this.next);
  }

  /** Reads the headers in `data`, the stream's bytes from offset `at`. */
  feed(data: Buffer, at: number): void {
    const end = at + data.length;
    while (!this.done) {
      const want = this.next + this.headLen;
      if (want >= end) return;
      const n = Math.min(BLOCK - this.headLen, end - want);
      data.copy(this.head, this.headLen, want - at, want - at + n);
      this.headLen += n;
      if (this.headLen < BLOCK) return;
      this.headLen = 0;
      this.member(this.next);
    }
  }

  private member(at: number): void {
    if (!checksumOk(this.head)) {
      this.done = true;
      return;
    }
    const size = memberSize(this.head);
    // No size to go by: no more cuts (the archive check, before the chunker, fails such an archive).
    if (!Number.isSafeInteger(size)) {
      this.done = true;
      return;
    }
    this.next = at + BLOCK + paddedSize(size);
    if (EXTENSION_TYPES.includes(String.fromCharCode(this.head[156]))) {
      this.sequence ??= at;
      return;
    }
    const start = this.sequence ?? at;
    this.sequence = undefined;
    const member = this.members++;
    if (size < this.large) return;
    const data = at + BLOCK;
    this.cuts.push(start, data, this.next);
    this.marks.push({ offset: data, member, at: 'data', size, end: this.next }, { offset: this.next, member, at: 'end', size, end: this.next });
  }
}

/**
 * Where a large member's data starts (`at: 'data'`) or ends (`at: 'end'`, after its padding), in
 * chunksOf's output: between the two come the chunks of its data, or nothing when `reused` is
 * set (what `reuse` gave for it: its data was not chunked). `member` numbers the archive's
 * members from 0 in order (extended headers not counted); `size` is its data size in bytes.
 */
export interface MemberMark<R> {
  member: number;
  at: 'data' | 'end';
  size: number;
  reused?: R;
}

/**
 * A range of the stream given to chunksOf (a run of small files the walk read or left unread,
 * volume-tar.ts): a chunk is cut at its start and at its end, so that the run's chunks depend on
 * its bytes alone. `start` and `end` are offsets in the stream (bytes, `end` after the last
 * member's padding); `reused`, when set, stands for the bytes between (an earlier archive's chunks
 * of the same run): they are skipped, not chunked. Ranges are ascending and do not overlap, and
 * none holds a member of chunksOf's `min` bytes or more.
 */
export interface StreamRange<R> {
  start: number;
  end: number;
  reused?: R;
}

/**
 * A chunk an earlier archive cut from a large member's data, in order from its data's start: its
 * length in bytes and its content digest (`sha256:<hex>` of those bytes). chunksOf's `hint`.
 */
export interface ChunkHint {
  contentSize: number;
  contentDigest: string;
}

/** A member's earlier chunks, by member number (chunksOf's `hint`, chunked.ts storeChunked's `hints`). */
export type ChunkHints = ReadonlyMap<number, readonly ChunkHint[]>;

/** Chunks chunksOf yielded at a hinted cut → their content digest, computed for the cut (hintedDigest). */
const hintedDigests = new WeakMap<Buffer, string>();

/** The content digest (`sha256:<hex>`) of a chunk chunksOf cut at a hint, which it computed to cut there; undefined for any other chunk. */
export function hintedDigest(chunk: Buffer): string | undefined {
  return hintedDigests.get(chunk);
}

/** Where a StreamRange starts or ends in chunksOf's output: `range` is its index in the ranges given; `reused` as it was given. */
export interface RangeMark<R> {
  range: number;
  at: 'start' | 'end';
  reused?: R;
}

/** The chunks of `hints` by the stream's offset each starts at, the first at `offset`; undefined without hints. */
function hintsAt(offset: number, hints: readonly ChunkHint[] | undefined): Map<number, { end: number; digest: string; last: boolean }> | undefined {
  if (!hints?.length) return undefined;
  const at = new Map<number, { end: number; digest: string; last: boolean }>();
  let pos = offset;
  for (const [i, h] of hints.entries()) {
    at.set(pos, { end: pos + h.contentSize, digest: h.contentDigest, last: i === hints.length - 1 });
    pos += h.contentSize;
  }
  return at;
}

/**
 * Cuts a byte stream into content-defined chunks (cutPoint), yielded in order; together they are
 * the stream. Each chunk is a view of the chunker's window, valid only until the next one is asked
 * for (copy what is kept longer: no chunk is copied that the caller only hashes), and never to be
 * changed. A tar archive's members of `min` bytes or more are also cut before their header, after
 * it and after their data (TarBoundaries), and their data is framed by MemberMarks. `reuse`, asked
 * at each such member's data with its number and data size, may answer with what stands for its
 * data (an earlier archive's chunks of it): then its data bytes (the padding too) are skipped, not
 * chunked, and the marks carry the answer. `ranges` (StreamRange) are cut at both ends and framed
 * by RangeMarks; a reused one's bytes are skipped as a reused member's data is. A chunk that starts
 * a run of `max` zero bytes (a sparse file's hole) is cut without hashing, where cutPoint would cut
 * it, and is a view of one shared buffer of zeros.
 *
 * `hint`, asked at each large member's data that `reuse` did not answer for, may give the chunks
 * an earlier archive cut from that member (a file changed since: a database's file with a few
 * pages rewritten). Where a chunk starts at one of those chunks' offsets from the data's start
 * and the bytes up to that chunk's end have its digest, the chunk is cut there without rolling
 * the gear hash over it: the same cut cutPoint makes, since a cut depends only on the bytes from
 * the chunk's start (an earlier last chunk counts only where it ends at this member's end too,
 * as it may have been cut there because the member ended). Elsewhere, and past a change, the
 * gear hash runs as without hints, and the cuts fall back onto the earlier ones where the data
 * is the same again. The output is the same with or without hints (given hints cut with the same
 * `sizes`: an earlier archive's); what it saves is the gear hash over unchanged data (sha256 runs
 * about three times as fast here), and the chunk's digest is handed on (hintedDigest). A hint that
 * misses costs the sha256 of up to `max` bytes before the gear hash runs.
 */
export async function* chunksOf<R = never>(
  source: AsyncIterable<Buffer>,
  sizes: ChunkSizes = CHUNK_SIZES,
  reuse?: (member: number, size: number) => R | undefined,
  ranges: readonly StreamRange<R>[] = [],
  hint?: (member: number, size: number) => readonly ChunkHint[] | undefined,
): AsyncGenerator<Buffer | MemberMark<R> | RangeMark<R>> {
  const zero = zeroRun(sizes);
  // The hinted member's earlier chunks, by the stream's offset they start at: where each ended, its digest, and whether it was the last.
  let hinted: Map<number, { end: number; digest: string; last: boolean }> | undefined;
  const tar = new TarBoundaries(sizes.min);
  const win = Buffer.allocUnsafe(sizes.max * 2);
  // The stream's offset of win[0], and how many bytes of the stream have come.
  let base = 0;
  let len = 0;
  let read = 0;
  // Bytes of a reused member's data still to come, to be skipped.
  let skip = 0;
  // The ranges' ends, in order: range i starts at bounds[2i] and ends at bounds[2i + 1]; `bound` is the next one not yet met.
  const bounds = ranges.flatMap((r) => [r.start, r.end]);
  let bound = 0;
  // Yields the marks at the stream's offset `pos` (a member's before a range's at the same offset);
  // true when a reused member's data or a reused range starts there (then `skip` is set from `pos`).
  function* marksAt(pos: number): Generator<MemberMark<R> | RangeMark<R>, boolean> {
    for (;;) {
      if (tar.marks.length > 0 && tar.marks[0].offset <= pos) {
        const m = tar.marks.shift()!;
        const reused = m.at === 'data' ? reuse?.(m.member, m.size) : undefined;
        hinted = m.at === 'data' && reused === undefined ? hintsAt(m.offset, hint?.(m.member, m.size)) : undefined;
        yield { member: m.member, at: m.at, size: m.size, ...(reused !== undefined ? { reused } : {}) };
        if (reused !== undefined) {
          skip = m.end - pos;
          return true;
        }
      } else if (bound < bounds.length && bounds[bound] <= pos) {
        const i = bound >> 1;
        const at = bound++ % 2 === 0 ? 'start' : 'end';
        const reused = at === 'start' ? ranges[i].reused : undefined;
        yield { range: i, at, ...(reused !== undefined ? { reused } : {}) };
        if (reused !== undefined) {
          skip = ranges[i].end - pos;
          return true;
        }
      } else return false;
    }
  }
  // Where the earlier archive's chunk that starts at window offset `start` ended, when this data holds it
  // whole before `end` (and, for its last one, the member ends there too: `forced`); undefined otherwise.
  function hintedCut(start: number, end: number, forced: number): Buffer | undefined {
    const h = hinted?.get(base + start);
    if (!h) return undefined;
    const cut = h.end - base;
    if (cut > end || cut - start > sizes.max || (h.last ? cut !== forced : cut - start <= sizes.min)) return undefined;
    const chunk = win.subarray(start, cut);
    if (sha256Digest(chunk) !== h.digest) return undefined;
    hintedDigests.set(chunk, h.digest);
    return chunk;
  }
  // Yields the chunks the window holds, each before the window moves on.
  function* cutFrom(ended: boolean): Generator<Buffer | MemberMark<R> | RangeMark<R>> {
    let start = 0;
    for (;;) {
      if (skip === 0 && (yield* marksAt(base + start))) {
        const n = Math.min(len - start, skip);
        start += n;
        skip -= n;
        continue;
      }
      if (skip > 0 || len <= start) break;
      while (tar.cuts.length > 0 && tar.cuts[0] <= base + start) tar.cuts.shift();
      const forced = Math.min(
        tar.cuts.length > 0 ? tar.cuts[0] - base : Number.POSITIVE_INFINITY,
        bound < bounds.length ? bounds[bound] - base : Number.POSITIVE_INFINITY,
      );
      const limit = Math.min(start + sizes.max, forced);
      // Wait for the bytes up to the limit and for the headers before it (unless the window is full).
      if (!ended && (len < limit || (base + limit > tar.horizon && len < win.length))) break;
      const zeros = limit - start === sizes.max && len >= limit && win.subarray(start, limit).equals(zero.zeros);
      const hintedChunk = zeros ? undefined : hintedCut(start, Math.min(len, limit), forced);
      const cut = zeros ? start + zero.cut : hintedChunk ? start + hintedChunk.length : cutPoint(win, start, Math.min(len, limit), sizes);
      yield zeros ? zero.zeros.subarray(0, zero.cut) : (hintedChunk ?? win.subarray(start, cut));
      start = cut;
    }
    if (ended && skip > 0) throw new Error('the archive ended inside a member whose data was to be skipped');
    if (ended && bound < bounds.length) throw new Error('the archive ended before a range given for it');
    if (start > 0) {
      win.copyWithin(0, start, len);
      len -= start;
      base += start;
    }
  }
  for await (const data of source) {
    tar.feed(data, read);
    read += data.length;
    let at = 0;
    while (at < data.length) {
      if (skip > 0) {
        // The window is empty while a reused member's data goes by: its bytes never enter it.
        const n = Math.min(skip, data.length - at);
        at += n;
        skip -= n;
        base += n;
      } else {
        const n = data.copy(win, len, at);
        len += n;
        at += n;
      }
      yield* cutFrom(false);
    }
  }
  yield* cutFrom(true);
}
