import { sha256Digest } from '../oci/digest.js';
import type { Readable, Transform } from 'node:stream';
import { allHave, type StoreTarget } from './blobs.js';
import { ChunkCompressors, storeChunk } from './chunk-blob.js';
import { CHUNK_SIZES, chunksOf, hintedDigest, type ChunkHints, type StreamRange } from './chunker.js';
import { paddedSize } from '../util/tar-header.js';
import { CopySlabs } from '../util/copy-slabs.js';
import { giveBackMiB } from '../util/mib-buffers.js';
import { CHUNK_LIST_VOLUME_MEDIA_TYPE, chunkListDigest, type BlobDescriptor, type ChunkedBlob, type Compression } from './manifest.js';

/** Chunks already stored, by content digest: each chunk's descriptor (from recent sets, and from this run as it stores them). */
export type ChunkIndex = Map<string, BlobDescriptor>;

const ZEROS = Buffer.alloc(CHUNK_SIZES.max);
const zeroDigests = new Map<number, string>();

/** The sha256 of a chunk; a sparse file's holes cut into many chunks of zeros, so theirs is computed once per length. */
function contentDigestOf(chunk: Buffer): string {
  const zeros = chunk.length <= ZEROS.length && chunk.equals(ZEROS.subarray(0, chunk.length));
  const known = zeros ? zeroDigests.get(chunk.length) : undefined;
  if (known) return known;
  const digest = sha256Digest(chunk);
  if (zeros) zeroDigests.set(chunk.length, digest);
  return digest;
}

/**
 * What storing a chunked volume did: its descriptor, how many chunks were stored or found already
 * stored (chunks taken unread count as found), and where each large member's data is in the chunk
 * list (`runs`: member number → index of its first chunk and how many; chunker.ts numbers members),
 * and where each range given is (`ranges`: its index among them → its first chunk and how many).
 */
export interface ChunkedResult {
  blob: ChunkedBlob;
  written: number;
  reused: number;
  runs: Map<number, { first: number; count: number }>;
  ranges: Map<number, { first: number; count: number }>;
}

/**
 * The chunks that stand for a large member's data left unread (an earlier archive's, which every
 * target was seen to hold), by member number; each run's contents must add up to the member's data
 * and its padding to a 512-byte block.
 */
export type UnreadRuns = ReadonlyMap<number, readonly BlobDescriptor[]>;

/**
 * Ranges of the archive cut apart (runs of small files, volume-tar.ts), ascending (chunker.ts
 * StreamRange); a reused one's bytes are zeros in the archive, and the chunks given (an earlier
 * archive's, which every target was seen to hold) must add up to its length.
 */
export type ArchiveRanges = readonly StreamRange<readonly BlobDescriptor[]>[];

/** Chunks stored at once: compressing one while the other is written (2 and 4 measured alike here). */
const IN_FLIGHT = 2;

/**
 * Chunks of earlier sets checked at once in the targets (`hasBlob`: a stat in `dir:`, a HEAD
 * request in a registry: ~9 ms each measured here on loopback, under load): each holds its chunk (≤ 2 MiB) until answered.
 */
const CHECKS = 16;
/**
 * …and at most this many bytes held by their copies at once (a check holds a copy of its chunk, in a
 * 2 MiB slab it shares with the next copies: CopySlabs.heldAfter counts whole slabs): about 16 chunks
 * of the 512 KiB average, where 16 of the 2 MiB maximum would hold 32 MiB through a warm backup.
 */
const CHECK_BYTES = 8 << 20;

/**
 * `source`'s pieces, each given back to mib-buffers.ts (when it is one of its buffers) once the
 * reader asks for the next: chunksOf copies a piece into its window before it asks for the next,
 * and keeps no view of it. So the 1 MiB pieces of a spooled archive (spool.ts read) are read into
 * again, not allocated per piece. The stages before (the tar check, the meter) keep nothing.
 */
async function* handedBack(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  for await (const piece of source) {
    yield piece;
    giveBackMiB([piece]);
  }
}

/**
 * Cuts `source` (a volume's archive) into content-defined chunks (chunker.ts) and stores each
 * chunk that `known` does not hold, or that some target lacks, as its own blob through storeChunk
 * (compressed, encrypted when the targets' keyring encrypts), IN_FLIGHT at a time; the others are
 * referenced as they are, once every target is seen to hold them (CHECKS asked at once). Chunks
 * it stores are added to `known`, so a chunk repeated in this run is stored once. `meter` sees
 * the content on its way. A large member in `unread` (its data left unread: zeros in `source`)
 * gets that run of chunks, as they are. The blob's digest is its chunk list's (schema 3). Throws
 * what storeChunk throws (the destination named), or an Error when an unread run does not hold
 * its member's data size or a member of `unread` is not in the archive. `ranges` are cut apart,
 * each reused one's bytes taken as the chunks given (Error when they do not add up to its length).
 * `hints`: the earlier chunks of large members read again (changed since), where the chunker may
 * find the same cuts without the gear hash (chunksOf's `hint`; the chunk list is the same without).
 */
export async function storeChunked(
  source: Readable,
  targets: StoreTarget[],
  compression: Compression,
  known: ChunkIndex,
  meter?: Transform,
  unread: UnreadRuns = new Map(),
  ranges: ArchiveRanges = [],
  hints: ChunkHints = new Map(),
): Promise<ChunkedResult> {
  const input = meter ? source.pipe(meter) : source;
  if (meter) source.on('error', (err) => meter.destroy(err));
  const chunks: Array<Promise<BlobDescriptor>> = [];
  const runs = new Map<number, { first: number; count: number }>();
  const rangeRuns = new Map<number, { first: number; count: number }>();
  const storing = new Map<string, Promise<BlobDescriptor>>();
  const present = new Set<string>();
  const inFlight = new Set<Promise<BlobDescriptor>>();
  const checking = new Set<Promise<BlobDescriptor>>();
  let written = 0;
  let substituted = 0;
  let contentSize = 0;
  const track = (set: Set<Promise<BlobDescriptor>>, p: Promise<BlobDescriptor>) => {
    // Its failure is awaited below (Promise.all); meanwhile it must not count as unhandled.
    p.catch(() => undefined);
    const tracked = p.finally(() => set.delete(tracked));
    tracked.catch(() => undefined);
    set.add(tracked);
  };
  const compressors = new ChunkCompressors(compression, IN_FLIGHT);
  // Copies of the chunks being stored (the chunker's views last until the next chunk), reused: IN_FLIGHT at most at once.
  const spare: Buffer[] = [];
  // Copies of the chunks being checked, out of reused slabs: at most CHECK_BYTES of slabs held by them at once, as many kept free.
  const heldCopies = new CopySlabs(CHUNK_SIZES.max, Math.ceil(CHECK_BYTES / CHUNK_SIZES.max));
  const store = (chunk: Buffer, digest: string) => {
    written++;
    return storeChunk(chunk, digest, targets, compressors).then((blob) => {
      known.set(digest, blob);
      present.add(blob.digest);
      return blob;
    });
  };
  try {
    for await (const chunk of chunksOf(
      handedBack(input),
      CHUNK_SIZES,
      (member) => unread.get(member),
      ranges,
      (member) => hints.get(member),
    )) {
      if (!Buffer.isBuffer(chunk) && 'range' in chunk) {
        if (chunk.at === 'start') rangeRuns.set(chunk.range, { first: chunks.length, count: 0 });
        else rangeRuns.get(chunk.range)!.count = chunks.length - rangeRuns.get(chunk.range)!.first;
        if (chunk.reused) {
          const bytes = chunk.reused.reduce((n, c) => n + c.contentSize, 0);
          checkRange(ranges[chunk.range], bytes);
          for (const c of chunk.reused) chunks.push(Promise.resolve(c));
          contentSize += bytes;
        }
        continue;
      }
      if (!Buffer.isBuffer(chunk)) {
        if (chunk.at === 'data') runs.set(chunk.member, { first: chunks.length, count: 0 });
        else runs.get(chunk.member)!.count = chunks.length - runs.get(chunk.member)!.first;
        if (chunk.reused) {
          substituted++;
          const bytes = chunk.reused.reduce((n, c) => n + c.contentSize, 0);
          checkRun(chunk.size, bytes);
          for (const c of chunk.reused) chunks.push(Promise.resolve(c));
          contentSize += bytes;
        }
        continue;
      }
      contentSize += chunk.length;
      const digest = hintedDigest(chunk) ?? contentDigestOf(chunk);
      const pending = storing.get(digest);
      if (pending) {
        chunks.push(pending);
        continue;
      }
      const stored = known.get(digest);
      if (stored && present.has(stored.digest)) {
        chunks.push(Promise.resolve(stored));
        continue;
      }
      if (stored) {
        // Asked without holding up the cut (a registry answers each in a round trip), CHECKS at once;
        // a chunk some target turns out to lack is stored again.
        while (checking.size >= CHECKS || (checking.size > 0 && heldCopies.heldAfter(chunk.length) > CHECK_BYTES)) await Promise.race(checking);
        const { copy: held, release } = heldCopies.copy(chunk);
        const check = allHave(targets, stored.digest)
          .then((have) => {
            if (!have) return store(held, digest);
            present.add(stored.digest);
            return stored;
          })
          .finally(release);
        track(checking, check);
        storing.set(digest, check);
        chunks.push(check);
        continue;
      }
      if (inFlight.size >= IN_FLIGHT) await Promise.race(inFlight);
      // The chunker's view is valid only until the next chunk: what is stored is a copy, in a buffer
      // taken back once the chunk is stored (a fresh one per chunk was ~200 MB of garbage per 200 MB volume).
      const copy = spare.pop() ?? Buffer.allocUnsafe(CHUNK_SIZES.max);
      chunk.copy(copy);
      const fresh = store(copy.subarray(0, chunk.length), digest).finally(() => spare.push(copy));
      track(inFlight, fresh);
      storing.set(digest, fresh);
      chunks.push(fresh);
    }
  } finally {
    await Promise.allSettled([...inFlight, ...checking]);
    compressors.close();
  }
  const descriptors = await Promise.all(chunks);
  // A file left unread whose data was not replaced would be stored as the zeros in its place.
  checkAllFound(substituted, unread);
  const contentDigest = chunkListDigest(descriptors);
  const size = descriptors.reduce((n, c) => n + c.size, 0);
  const blob: ChunkedBlob = { mediaType: CHUNK_LIST_VOLUME_MEDIA_TYPE, digest: contentDigest, size, contentDigest, contentSize, chunks: descriptors };
  return { blob, written, reused: descriptors.length - written, runs, ranges: rangeRuns };
}

/**
 * The whole archive of `source` (a volume's archive whose `unread` members' data are zeros), each
 * unread member's data read back from its run of chunks (`read`: a chunk's content, checked), in
 * order, and each reused range's bytes alike: what is stored as one blob when the chunks would not
 * fit the set (backup-volumes.ts). Throws as storeChunked does when a run does not fit its member
 * or its range, or a member is missing.
 */
export async function* splicedArchive(
  source: AsyncIterable<Buffer>,
  unread: UnreadRuns,
  read: (chunk: BlobDescriptor) => Promise<Readable>,
  ranges: ArchiveRanges = [],
): AsyncGenerator<Buffer> {
  let substituted = 0;
  for await (const item of chunksOf(source, CHUNK_SIZES, (member) => unread.get(member), ranges)) {
    if (Buffer.isBuffer(item)) {
      // The chunker's view is valid only until the next item.
      yield Buffer.from(item);
      continue;
    }
    if ('range' in item) {
      if (!item.reused) continue;
      let bytes = 0;
      for (const chunk of item.reused) {
        for await (const part of await read(chunk)) {
          bytes += (part as Buffer).length;
          yield part as Buffer;
        }
      }
      checkRange(ranges[item.range], bytes);
      continue;
    }
    if (!item.reused) continue;
    substituted++;
    let bytes = 0;
    for (const chunk of item.reused) {
      for await (const part of await read(chunk)) {
        bytes += (part as Buffer).length;
        yield part as Buffer;
      }
    }
    checkRun(item.size, bytes);
  }
  checkAllFound(substituted, unread);
}

/** Throws unless a run of chunks of `bytes` content bytes holds a member's data of `size` bytes and its padding. */
function checkRun(size: number, bytes: number): void {
  if (bytes !== paddedSize(size)) throw new Error(`a file left unread has ${size} bytes, not what its chunks hold (${bytes})`);
}

/** Throws unless a run of chunks of `bytes` content bytes holds a range of the archive whole. */
function checkRange(range: StreamRange<unknown>, bytes: number): void {
  if (bytes !== range.end - range.start)
    throw new Error(`a run of files left unread takes ${range.end - range.start} bytes, not what its chunks hold (${bytes})`);
}

/** Throws unless every member of `unread` was met in the archive (`substituted` of them). */
function checkAllFound(substituted: number, unread: UnreadRuns): void {
  if (substituted !== unread.size) throw new Error(`${unread.size - substituted} file(s) left unread were not found in the archive`);
}
