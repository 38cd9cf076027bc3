/**
 * A volume archive's file index: for each large regular file read on this host, what identified
 * its content when it was read (inode, size, mtime and ctime to the nanosecond) and which of the
 * archive's chunks hold its data. The next backup of the same mount looks each large file up while
 * the container is held: one whose inode, size, mtime and ctime are all the same is not read again
 * (its data chunks are taken from the set before); the others are read as usual. The same test
 * restic uses for a parent snapshot's files (inode, size, mtime, ctime; restic `archiver`), with a
 * file whose ctime is too close to its read never taken as unchanged (FileTracker.cutoffNs): a write
 * through a shared mapping may leave the times as they were until the kernel writes the page back.
 * Such a file (a database's, written all the time) is in the index for its chunks alone (`racy`,
 * its `ino` empty, so that no backup takes it as unchanged: nor one of an earlier version, which
 * compares the inode): the next backup reads it, and its chunker looks for the same cuts first
 * (chunker.ts chunksOf `hint`), as for any large file changed since.
 */
import { readFileSync } from 'node:fs';
import type { BigIntStats } from 'node:fs';
import { Readable } from 'node:stream';
import type { Destination } from '../destinations/types.js';
import { SET_SCOPE } from '../destinations/types.js';
import { readSmall } from '../util/streams.js';
import { openContent, storeBlob, type StoreTarget } from './blobs.js';
import type { BlobDescriptor, Compression } from './manifest.js';
import { paddedSize } from '../util/tar-header.js';
import type { FileTracker, LaterFile } from './volume-tar.js';

/** Media type of a file index (JSON, FileIndex, compressed as the set's blobs). */
export function fileIndexMediaType(compression: Compression): string {
  return `application/vnd.container-snapshot.file-index.v1+json+${compression}`;
}

/** One file of the index: its identity when read (integers in decimal text: nanoseconds overflow a double) and its data's chunks. */
export interface FileIndexEntry {
  /** Its inode number; empty when `racy`. */
  ino: string;
  /** Data size in bytes. */
  size: number;
  mtimeNs: string;
  ctimeNs: string;
  /** Its data chunks: `count` chunks of the archive's chunk list from index `first`. */
  first: number;
  count: number;
  /** Not settled when read (its ctime not before the cutoff, or on another device than the volume's top): never taken as unchanged, its chunks only hints for the next chunking. */
  racy?: true;
}

/** A run of small files of the index (file-runs.ts): what its bytes follow from, and its chunks. */
export interface RunIndexEntry {
  /** runKey of its files (sha256 hex). */
  key: string;
  /** How many files it holds. */
  files: number;
  /** Its length in the archive (bytes: headers, data and padding), which its chunks' contents add up to. */
  bytes: number;
  /** Its chunks: `count` chunks of the archive's chunk list from index `first`. */
  first: number;
  count: number;
}

/**
 * A volume archive's file index: entries by path below the volume's top (its bytes as latin1
 * text); `runs`, runs of small files by their first file's path (absent in indexes written before
 * runs were: then no run is taken unread).
 */
export interface FileIndex {
  files: Record<string, FileIndexEntry>;
  runs?: Record<string, RunIndexEntry>;
}

/** Largest index read back (bytes, uncompressed): ~120 bytes a file, so about half a million files. */
const INDEX_MAX = 64 << 20;

/**
 * How long before a read a file's ctime must be for the next backup to trust its stat (leave it unread when unchanged), in ns: the kernel's
 * dirty page expiry and writeback interval (/proc/sys/vm/dirty_expire_centisecs and
 * dirty_writeback_centisecs: 30 s and 5 s by default) and 5 s more. A page written through a shared
 * mapping updates the file's times only at the first write after it was last written back; a
 * file whose ctime is older than that was written back since, so a later write changes its ctime.
 * Undefined when periodic writeback is off (dirty_writeback_centisecs 0): then no wait is enough.
 */
export function racyMarginNs(readProc: (path: string) => string = (p) => readFileSync(p, 'utf8')): bigint | undefined {
  const centis = (name: string, fallback: number) => {
    try {
      const n = Number(readProc(`/proc/sys/vm/${name}`).trim());
      return Number.isFinite(n) && n >= 0 ? n : fallback;
    } catch {
      return fallback;
    }
  };
  const writeback = centis('dirty_writeback_centisecs', 500);
  if (writeback === 0) return undefined;
  return BigInt(centis('dirty_expire_centisecs', 3000) + writeback + 500) * 10_000_000n;
}

/**
 * File systems (statfs f_type, linux/magic.h) whose ctime a write always changes once its pages
 * were written back: ext2/3/4, XFS, Btrfs. Not tmpfs (its pages are never written back: a write
 * through a mapping never changes the times again), not NFS, CIFS or FUSE (times cached, or set by
 * a server's clock, or ctime = mtime).
 */
const TRUSTED_FS: ReadonlyMap<number, string> = new Map([
  [0xef53, 'ext4'],
  [0x58465342, 'xfs'],
  [0x9123683e, 'btrfs'],
]);

/** Why files of a file system of statfs type `type` may not be left unread (a phrase), or undefined when they may. */
export function untrustedFs(type: number): string | undefined {
  return TRUSTED_FS.has(type) ? undefined : `its file system (type 0x${type.toString(16)}) is not ext4, XFS or Btrfs`;
}

/** What identified a large file's content when the walk met it (decimal text: nanoseconds overflow a double). */
interface Seen {
  rel: string;
  /** Empty when racy. */
  ino: string;
  size: number;
  mtimeNs: string;
  ctimeNs: string;
  racy?: true;
}

/** A run of small files the walk wrote: what runStarts was told, where runEnds said it lies, and the earlier index's entry when it was left unread. */
export interface SeenRun {
  rel: string;
  key: string;
  files: number;
  /** Data bytes (padded). */
  bytes: number;
  start: number;
  end: number;
  /** Every file of it settled: it goes in the index (else it is only cut apart). */
  settled: boolean;
  earlier?: RunIndexEntry;
  /** Left unread as a hole: its files, whose headers writeRunHeaders (volume-tar.ts) writes once the container is back. */
  later?: readonly LaterFile[];
}

/** What the walk of one volume saw of its large files and runs of small ones, and which it left unread (FileTracker for hostTar). */
export class FileWalk implements FileTracker {
  /** Large files with one link, by member number (chunker.ts numbers members alike); those whose ctime is not before the cutoff `racy`. */
  readonly seen = new Map<number, Seen>();
  /** Members left unread, with the earlier index's entry of each. */
  readonly unread = new Map<number, FileIndexEntry>();
  /** Members read (changed since, or not settled) that the earlier index holds at the same path, with its entry: their earlier chunks are the chunker's hints (chunker.ts chunksOf `hint`). */
  readonly changed = new Map<number, FileIndexEntry>();
  /** Bytes of data left unread. */
  unreadBytes = 0;
  /** Runs of small files written (file-runs.ts), in the archive's order. */
  readonly runs: SeenRun[] = [];
  /** Files of runs left unread, and their data bytes (padded). */
  runFilesUnread = 0;
  runBytesUnread = 0;
  private run?: Omit<SeenRun, 'start' | 'end'>;
  /** Set (a phrase) when nothing may be left unread nor indexed: every file is read, and the next backup too. */
  off?: string;
  /** The device of the directory walked, once known: files of another (a file system mounted below it, whose times the checks here may not trust) are never left unread (indexed racy: for their chunks alone). */
  dev?: bigint;

  /**
   * `min`: the chunker's large-member size (bytes); `cutoffNs`: files with a later ctime are
   * never left unread, and indexed racy (undefined: nothing is indexed); `earlier`: the index of the set before,
   * whose chunks every destination was seen to hold (undefined: every file is read).
   */
  constructor(
    readonly min: number,
    private readonly cutoffNs: bigint | undefined,
    private readonly earlier?: FileIndex,
  ) {
    if (cutoffNs === undefined) this.off = 'the kernel writes dirty pages back only when asked (vm.dirty_writeback_centisecs is 0)';
  }

  settled(st: BigIntStats): boolean {
    return this.off === undefined && this.cutoffNs !== undefined && st.ctimeNs < this.cutoffNs && (this.dev === undefined || st.dev === this.dev);
  }

  runStarts(first: string, key: string, files: number, bytes: number, settled: boolean): number | undefined {
    const runs = this.earlier?.runs;
    const e = settled && this.off === undefined && runs && Object.hasOwn(runs, first) ? runs[first] : undefined;
    const earlier = e && e.key === key && e.files === files ? e : undefined;
    this.run = { rel: first, key, files, bytes, settled: settled && this.off === undefined, ...(earlier ? { earlier } : {}) };
    if (earlier) {
      this.runFilesUnread += files;
      this.runBytesUnread += bytes;
    }
    return earlier?.bytes;
  }

  /** Throws an Error when a run left unread does not take the length its earlier chunks hold (hostTar checks its headers' length against it while held: the walk then fails, and the engine reads the volume). */
  runEnds(start: number, end: number, later?: readonly LaterFile[]): void {
    const run = this.run!;
    this.run = undefined;
    if (run.earlier && run.earlier.bytes !== end - start)
      throw new Error(`${run.rel}: a run of files left unread takes ${end - start} bytes, not the ${run.earlier.bytes} its chunks hold`);
    this.runs.push({ ...run, start, end, ...(later ? { later } : {}) });
  }

  file(member: number, rel: string, st: BigIntStats): boolean {
    const e = this.earlier && Object.hasOwn(this.earlier.files, rel) ? this.earlier.files[rel] : undefined;
    const racy = !this.settled(st);
    const seen: Seen = { rel, ino: racy ? '' : String(st.ino), size: Number(st.size), mtimeNs: String(st.mtimeNs), ctimeNs: String(st.ctimeNs) };
    if (racy) seen.racy = true;
    this.seen.set(member, seen);
    if (racy || !e || e.racy || e.ino !== seen.ino || e.size !== seen.size || e.mtimeNs !== seen.mtimeNs || e.ctimeNs !== seen.ctimeNs) {
      if (e) this.changed.set(member, e);
      return false;
    }
    this.unread.set(member, e);
    this.unreadBytes += e.size;
    return true;
  }
}

/**
 * The new archive's index: each large file `walk` saw, with the chunks its data got in `chunks`
 * (`runs`: member number → first chunk and count, from storeChunked), and each run of small files
 * with its chunks (`ranges`: the run's index in walk.runs → first chunk and count). Empty when the
 * walk is off.
 */
export function buildFileIndex(
  walk: FileWalk,
  runs: ReadonlyMap<number, { first: number; count: number }>,
  ranges: ReadonlyMap<number, { first: number; count: number }> = new Map(),
): FileIndex {
  const files: Record<string, FileIndexEntry> = Object.create(null) as Record<string, FileIndexEntry>;
  const smalls: Record<string, RunIndexEntry> = Object.create(null) as Record<string, RunIndexEntry>;
  if (walk.off !== undefined) return { files };
  for (const [member, { rel, ino, size, mtimeNs, ctimeNs, racy }] of walk.seen) {
    const run = runs.get(member);
    if (!run || run.count === 0) continue;
    files[rel] = { ino, size, mtimeNs, ctimeNs, ...run, ...(racy ? { racy } : {}) };
  }
  for (const [i, { rel, key, files: n, start, end, settled }] of walk.runs.entries()) {
    const chunks = ranges.get(i);
    if (settled && chunks && chunks.count > 0) smalls[rel] = { key, files: n, bytes: end - start, ...chunks };
  }
  return Object.keys(smalls).length > 0 ? { files, runs: smalls } : { files };
}

/**
 * Stores the index as a set-scope blob (JSON, compressed; encrypted when the set is); undefined,
 * nothing stored, when its JSON would be larger than the next backup reads back (INDEX_MAX).
 */
export async function storeFileIndex(index: FileIndex, targets: StoreTarget[], compression: Compression): Promise<BlobDescriptor | undefined> {
  const json = Buffer.from(JSON.stringify(index));
  if (json.length > INDEX_MAX) return undefined;
  return storeBlob(Readable.from([json]), targets, fileIndexMediaType(compression));
}

export class FileIndexError extends Error {
  override name = 'FileIndexError';
}

/**
 * Reads a stored index back (its digests checked). Entries whose run of `chunks` (the archive's
 * chunk list) does not exist or does not hold their data (its size padded to a 512-byte block),
 * and runs of small files whose chunks do not add up to their length, are left out. Throws
 * FileIndexError when it is not such an index, or what reading the blob throws.
 */
export async function readFileIndex(dest: Destination, blob: BlobDescriptor, chunks: readonly BlobDescriptor[]): Promise<FileIndex> {
  const text = (await readSmall(await openContent(dest, SET_SCOPE, blob, 'file index'), INDEX_MAX)).toString('utf8');
  const index = JSON.parse(text) as FileIndex;
  if (!index || typeof index.files !== 'object' || index.files === null) throw new FileIndexError('the file index has no files');
  const files: Record<string, FileIndexEntry> = Object.create(null) as Record<string, FileIndexEntry>;
  const bytesOf = (e: { first: number; count: number }) => {
    const sane = Number.isInteger(e.first) && Number.isInteger(e.count) && e.first >= 0 && e.count > 0 && e.first + e.count <= chunks.length;
    return sane ? chunks.slice(e.first, e.first + e.count).reduce((n, c) => n + c.contentSize, 0) : -1;
  };
  for (const [rel, e] of Object.entries(index.files)) if (Number.isInteger(e.size) && bytesOf(e) === paddedSize(e.size)) files[rel] = e;
  if (!index.runs || typeof index.runs !== 'object') return { files };
  const runs: Record<string, RunIndexEntry> = Object.create(null) as Record<string, RunIndexEntry>;
  for (const [rel, e] of Object.entries(index.runs))
    if (typeof e.key === 'string' && Number.isInteger(e.files) && Number.isInteger(e.bytes) && bytesOf(e) === e.bytes) runs[rel] = e;
  return { files, runs };
}

/**
 * The chunks an index names (its files' and its runs'), each once, as indexes into the archive's
 * chunk list (in the order met): those that may stand for a file left unread, so racy entries'
 * are not named (they are only the chunker's hints; a chunk of theirs the destination lacks is
 * stored again as any other). Collected into a set as it goes: entries that overlap (a damaged
 * index whose every entry names the whole list) cost no more than the list itself.
 */
export function indexedChunks(index: FileIndex): number[] {
  const named = new Set<number>();
  const files = Object.values(index.files).filter((e) => !e.racy);
  for (const e of [...files, ...Object.values(index.runs ?? {})]) for (let i = 0; i < e.count; i++) named.add(e.first + i);
  return [...named];
}
