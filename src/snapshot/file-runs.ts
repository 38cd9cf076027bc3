/**
 * Runs of small files: consecutive regular files of one directory in a volume's archive
 * (volume-tar.ts), each smaller than the chunker's large-member size, with one link, not sparse,
 * and settled (FileTracker.settled: its ctime older than the writeback margin, on the walked
 * device). A run that holds RUN_MIN bytes of data or more is cut apart in the chunk list (a chunk
 * ends where it starts and where it ends: chunker.ts StreamRange), so its chunks depend on its
 * bytes alone, and the file index keeps them under its first file's path with its key (runKey). The
 * next backup that meets the same run (the same files, each with the same header and the same
 * inode, size, mtime and ctime) takes those chunks again and reads none of its files: what the
 * file index does for a large file, for files too small to be cut apart one by one (restic keeps a
 * content list per file instead; here a chunk of 64 KiB or more holds many).
 *
 * Where runs end is content-defined, as chunk boundaries are (runEndsAfter): after a file whose name
 * hashes to one of RUN_SPREAD values (FNV-1a) once the run holds RUN_MIN bytes — FastCDC's least
 * chunk size, so that a directory of files of a few KiB is not cut into runs too short to be
 * indexed — after RUN_MAX_FILES files or RUN_MAX_BYTES bytes, and before any other entry (a
 * directory, a link, a large file); so a file added, removed or changed moves the ends of its own
 * run, and of the next ones only until an end falls where it fell before.
 */
import { createHash } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { paddedSize } from '../util/tar-header.js';
import type { TarHeader } from '../util/tar-writer.js';

/** Bytes of data (padded to 512-byte blocks) a run must hold to be cut apart: the chunker's minimum chunk. Shorter runs are written as they are. */
export const RUN_MIN = 64 << 10;
/** Files a run holds at most. */
export const RUN_MAX_FILES = 512;
/** Bytes of data a run holds at most (padded): a few average chunks. */
export const RUN_MAX_BYTES = 4 << 20;
/** One name in RUN_SPREAD ends a run once it holds RUN_MIN bytes: runs of about RUN_MIN / size + 32 files (~39 files, ~390 KiB, of 10 KB files; ~96 of 1 KB files). */
const RUN_SPREAD = 32;

/** One file of a run: its tar header as the walk wrote it and its lstat. */
export interface RunFile {
  h: TarHeader;
  st: BigIntStats;
}

/** Whether the file named `name` (its bytes) is one a run may end after (runEndsAfter): FNV-1a (32-bit) of the name, one in RUN_SPREAD. */
export function endsRun(name: Buffer): boolean {
  let h = 0x811c9dc5;
  for (const b of name) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h % RUN_SPREAD === 0;
}

/**
 * Whether a run ends after the file named `name` (its bytes), its `files`-th, with which the run
 * holds `bytes` bytes of data (padded, runDataBytes): endsRun picks the name and the run holds
 * RUN_MIN bytes or more, or the run is full (RUN_MAX_FILES files, RUN_MAX_BYTES bytes).
 */
export function runEndsAfter(name: Buffer, files: number, bytes: number): boolean {
  return (bytes >= RUN_MIN && endsRun(name)) || files >= RUN_MAX_FILES || bytes >= RUN_MAX_BYTES;
}

/** Bytes of data a run's files take in the archive (each padded to a 512-byte block). */
export function runDataBytes(files: readonly RunFile[]): number {
  return files.reduce((n, f) => n + paddedSize(Number(f.st.size)), 0);
}

/**
 * What a run's bytes in the archive follow from, as sha256 hex: for each file, the header fields
 * the tar writer writes (name, mode, owner, mtime to the second, PAX records, size) and what
 * identifies its data (inode, size, mtime and ctime to the nanosecond). Two runs with the same
 * key have the same bytes: the same headers, and data the file index's test (restic's) says is
 * the same. "v1" names the tar writer's encoding: a change to it changes every key.
 */
export function runKey(files: readonly RunFile[]): string {
  const hash = createHash('sha256').update('container-snapshot file run v1\n');
  for (const { h, st } of files) {
    hash.update(
      JSON.stringify([
        h.name,
        h.mode ?? 0,
        h.uid ?? 0,
        h.gid ?? 0,
        h.mtime?.getTime() ?? 0,
        h.pax ?? null,
        String(st.size),
        String(st.ino),
        String(st.mtimeNs),
        String(st.ctimeNs),
      ]),
    );
    hash.update('\n');
  }
  return hash.digest('hex');
}
