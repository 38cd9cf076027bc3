/**
 * A volume archive's file index: for each large regular file read on this host, what identified
 * its content when it was read (inode, size, mtime and ctime to the nanosecond) and which of the
 * archive's chunks hold its data. The next backup of the same mount looks each large file up while
 * the container is held: one whose inode, size, mtime and ctime are all the same is not read again
 * (its data chunks are taken from the set before); the others are read as usual. The same test
 * restic uses for a parent snapshot's files (inode, size, mtime, ctime; restic `archiver`), with a
 * file whose ctime is too close to its read left out of the index (FileTracker.cutoffNs): a write
 * through a shared mapping may leave the times as they were until the kernel writes the page back.
 */
import { readFileSync } from 'node:fs';
import type { BigIntStats } from 'node:fs';
import { Readable } from 'node:stream';
import type { Destination } from '../destinations/types.js';
import { SET_SCOPE } from '../destinations/types.js';
import { readSmall } from '../util/streams.js';
import { openContent, storeBlob, type StoreTarget } from './blobs.js';
import type { BlobDescriptor, Compression } from './manifest.js';
import type { FileTracker } from './volume-tar.js';

/** Media type of a file index (JSON, FileIndex, compressed as the set's blobs). */
export function fileIndexMediaType(compression: Compression): string {
  return `application/vnd.container-snapshot.file-index.v1+json+${compression}`;
}

/** One file of the index: its identity when read (integers in decimal text: nanoseconds overflow a double) and its data's chunks. */
export interface FileIndexEntry {
  ino: string;
  /** Data size in bytes. */
  size: number;
  mtimeNs: string;
  ctimeNs: string;
  /** Its data chunks: `count` chunks of the archive's chunk list from index `first`. */
  first: number;
  count: number;
}

/** A volume archive's file index: entries by path below the volume's top (its bytes as latin1 text). */
export interface FileIndex {
  files: Record<string, FileIndexEntry>;
}

/** Largest index read back (bytes, uncompressed): ~120 bytes a file, so about half a million files. */
const INDEX_MAX = 64 << 20;

/**
 * How long before a read a file's ctime must be for it to go in the index, in ns: the kernel's
 * dirty page expiry and writeback interval (/proc/sys/vm/dirty_expire_centisecs and
 * dirty_writeback_centisecs: 30 s and 5 s by default) and 5 s more. A page written through a shared
 * mapping updates the file's times only at the first write after it was last written back; a
 * file whose ctime is older than that was written back since, so a later write changes its ctime.
 */
export function racyMarginNs(readProc: (path: string) => string = (p) => readFileSync(p, 'utf8')): bigint {
  const centis = (name: string, fallback: number) => {
    try {
      const n = Number(readProc(`/proc/sys/vm/${name}`).trim());
      return Number.isFinite(n) && n >= 0 ? n : fallback;
    } catch {
      return fallback;
    }
  };
  return BigInt(centis('dirty_expire_centisecs', 3000) + centis('dirty_writeback_centisecs', 500) + 500) * 10_000_000n;
}

/** What the walk of one volume saw of its large files, and which it left unread (FileTracker for hostTar). */
export class FileWalk implements FileTracker {
  /** Large files with one link whose ctime is before the cutoff, by member number (chunker.ts numbers members alike). */
  readonly seen = new Map<number, { rel: string; st: BigIntStats }>();
  /** Members left unread, with the earlier index's entry of each. */
  readonly unread = new Map<number, FileIndexEntry>();
  /** Bytes of data left unread. */
  unreadBytes = 0;

  /**
   * `min`: the chunker's large-member size (bytes); `cutoffNs`: files with a later ctime are
   * neither indexed nor left unread; `earlier`: the index of the set before, whose chunks every
   * destination was seen to hold (undefined: every file is read).
   */
  constructor(
    readonly min: number,
    private readonly cutoffNs: bigint,
    private readonly earlier?: FileIndex,
  ) {}

  file(member: number, rel: string, st: BigIntStats): boolean {
    if (st.ctimeNs >= this.cutoffNs) return false;
    this.seen.set(member, { rel, st });
    const e = this.earlier?.files[rel];
    if (!e || e.ino !== String(st.ino) || e.size !== Number(st.size) || e.mtimeNs !== String(st.mtimeNs) || e.ctimeNs !== String(st.ctimeNs)) return false;
    this.unread.set(member, e);
    this.unreadBytes += e.size;
    return true;
  }
}

/**
 * The new archive's index: each file `walk` saw, with the chunks its data got in `chunks`
 * (`runs`: member number → first chunk and count, from storeChunked).
 */
export function buildFileIndex(walk: FileWalk, runs: ReadonlyMap<number, { first: number; count: number }>): FileIndex {
  const files: Record<string, FileIndexEntry> = {};
  for (const [member, { rel, st }] of walk.seen) {
    const run = runs.get(member);
    if (!run || run.count === 0) continue;
    files[rel] = { ino: String(st.ino), size: Number(st.size), mtimeNs: String(st.mtimeNs), ctimeNs: String(st.ctimeNs), ...run };
  }
  return { files };
}

/** Stores the index as a set-scope blob (JSON, compressed; encrypted when the set is). */
export function storeFileIndex(index: FileIndex, targets: StoreTarget[], compression: Compression): Promise<BlobDescriptor> {
  return storeBlob(Readable.from([Buffer.from(JSON.stringify(index))]), targets, fileIndexMediaType(compression));
}

export class FileIndexError extends Error {
  override name = 'FileIndexError';
}

/**
 * Reads a stored index back (its digests checked), and checks each entry names chunks that
 * `chunkCount` (the archive's chunk list's length) holds. Throws FileIndexError when it is not such
 * an index, or what reading the blob throws.
 */
export async function readFileIndex(dest: Destination, blob: BlobDescriptor, chunkCount: number): Promise<FileIndex> {
  const text = (await readSmall(await openContent(dest, SET_SCOPE, blob, 'file index'), INDEX_MAX)).toString('utf8');
  const index = JSON.parse(text) as FileIndex;
  if (!index || typeof index.files !== 'object' || index.files === null) throw new FileIndexError('the file index has no files');
  for (const e of Object.values(index.files)) {
    const ok =
      Number.isInteger(e.first) && Number.isInteger(e.count) && e.first >= 0 && e.count > 0 && e.first + e.count <= chunkCount && Number.isInteger(e.size) && e.size >= 0;
    if (!ok) throw new FileIndexError('the file index names chunks its archive does not have');
  }
  return index;
}
