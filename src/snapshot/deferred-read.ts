/**
 * Files of a volume read once their container is back, not while it is held. The walk that
 * archives a volume on this host (volume-tar.ts hostTar) lstats every entry while the container is
 * paused or stopped; a regular file whose ctime is older than the settle margin (file-index.ts
 * racyMarginNs: the kernel's writeback timing) has its data left as zeros in the spool, and is
 * read here once the container runs again, into the spooled archive at its member's offset.
 *
 * Why it holds the same bytes as a read while held: every write to a file changes its ctime, and a
 * file whose ctime is older than the margin has had its pages written back since (a write through
 * a shared mapping changes the times again only after writeback), so a write after the hold changes
 * its ctime. Each file is checked to be the same inode (dev, ino) with the same size, mtime and
 * ctime (ns) as the held walk saw, both when opened and after its read; any difference (or the file
 * gone) is a DeferredChange, and the caller takes the container again with nothing left for later.
 * The same trust as the file index's (unchanged files left unread), on the same file systems only.
 *
 * A large file that has not settled (written just before the backup: a database's file, say) is
 * not trusted so, and must be taken while held; but it need not go through this process then: it
 * is copied by the kernel into a file of the run's spool (GNU cp: a clone where the file
 * system shares blocks, else copy_file_range, page cache to page cache — a 106 MB file in ~35 ms
 * here, where reading it into the spool through this process took 300–450 ms of the hold with
 * the collections its buffers caused), and that **held copy** is read once the container is back
 * and removed. Not when the spool encrypts (the copy would be the file in clear on the disk).
 */
import { execFile } from 'node:child_process';
import { chmodSync, closeSync, constants, fstatSync, lstatSync, openSync, readSync, rmSync, statfsSync, type BigIntStats } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { SPOOL_RESERVE, type SpoolPatch } from './spool.js';
import { O_PATH, closeQuietly } from '../util/open-flags.js';

/** Bytes read into one buffer at a time; the event loop turns after each (a cancel is seen). */
const PIECE = 1 << 20;
/** Linux's PATH_MAX (limits.h), with its NUL: a longer path is read while held (the walk opens below directory descriptors). */
const PATH_MAX = 4096;
/** Files one walk may leave for later (~180 bytes of memory each): the rest are read while held. */
export const MAX_DEFERRED = 200_000;
/** Files read between two turns of the event loop. */
const YIELD_EVERY = 64;

/**
 * Least size of a file copied while held (bytes, 16 MiB): a smaller one is read while held, at less
 * cost than a child process and a file for it (cp of 8 MiB took ~20 ms here, most of it starting
 * the child; reading 8 MiB into the spool 10–30 ms).
 */
export const HELD_COPY_MIN = 16 << 20;

/** Held copies under way at once beside a walk (each a cp process and three descriptors); the walk waits for one to end past it. */
export const COPIES_AT_ONCE = 4;

/**
 * A file whose data the walk left as zeros: where its data starts in the archive (bytes), and what
 * the walk's lstat saw — or, for a held copy, the copy's own stat (its data read from `copy`).
 */
export interface DeferredRead {
  /** Its path below the volume's top (bytes as latin1). */
  rel: string;
  /** Byte offset of its data in the archive. */
  at: number;
  dev: bigint;
  ino: bigint;
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  /** The held copy's path on this host (a file of the spool's), read in its place and removed after. */
  copy?: string;
}

/** A held copy made: its path and its lstat. */
export interface HeldCopy {
  path: string;
  st: BigIntStats;
}

/** The files one walk left for later (hostTar's `defer`), and which it may leave. */
export class DeferredReads {
  readonly reads: DeferredRead[] = [];
  /** Bytes of data left for later. */
  bytes = 0;

  /** Held copies among `reads`, and their bytes. */
  copied = 0;
  copiedBytes = 0;

  /**
   * `cutoffNs`: only files whose ctime is before it (ns since the epoch) are left for later;
   * `root`: the directory walked (its path on this host and its device): only files on that
   * device (whose file system the caller trusts) and whose path fits PATH_MAX are. `held`: a
   * directory of the spool's (0700) where files not settled may be copied while held; none when
   * the spool encrypts.
   */
  constructor(
    readonly cutoffNs: bigint,
    private readonly root: { path: string; dev: bigint },
    private readonly held?: string,
  ) {}

  /**
   * Whether a regular file of lstat `st` (not sparse), at `rel` below the top (latin1), may be read
   * later: it has data, its ctime is before the cutoff, it is on the top's device (not on a file
   * system mounted below it, tmpfs or NFS say, whose times a write may leave alone), its path fits,
   * and fewer than MAX_DEFERRED are left already.
   */
  takes(st: BigIntStats, rel: string): boolean {
    return (
      st.size > 0n &&
      st.ctimeNs < this.cutoffNs &&
      st.dev === this.root.dev &&
      Buffer.byteLength(this.root.path) + 1 + rel.length < PATH_MAX &&
      this.reads.length + this.running.size < MAX_DEFERRED
    );
  }

  /** Records a file left as zeros: `rel` below the top (latin1), its data at byte `at` of the archive. */
  add(rel: string, at: number, st: BigIntStats): void {
    this.reads.push({ rel, at, dev: st.dev, ino: st.ino, size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs });
    this.bytes += Number(st.size);
  }

  /**
   * Whether a regular file of lstat `st` (not sparse) that `takes` refused may be copied while held
   * (`copy`): there is a held directory, it has HELD_COPY_MIN bytes or more, it is on the top's
   * device, fewer than MAX_DEFERRED are left already, and no copy was refused a file (copyBeside)
   * nor the walk abandoned.
   */
  copies(st: BigIntStats): boolean {
    // None once one was not made: the volume is walked again without copies.
    return (
      this.held !== undefined &&
      !this.stop.signal.aborted &&
      st.size >= BigInt(HELD_COPY_MIN) &&
      st.dev === this.root.dev &&
      this.reads.length + this.running.size < MAX_DEFERRED
    );
  }

  /** Copies started beside the walk (copyBeside) and not ended (each settles, never rejects), and their bytes. */
  private readonly running = new Set<Promise<void>>();
  private runningBytes = 0;
  /** The first file (its path below the top, latin1) whose copy beside the walk was not made. */
  private uncopied?: string;
  private discarded = false;
  /** Aborted once no copy under way can serve any more (one was not made, or the walk failed): their cp killed, the hold not kept for them. */
  private readonly stop = new AbortController();

  /**
   * Whether a held copy of a file of lstat `st` (which `copies`) may be started now: the spool's
   * file system would keep SPOOL_RESERVE free with it and the copies under way, and later their
   * data written into the spooled archive (twice their sizes; what the copies under way wrote
   * already is counted twice over, erring on the side of a read while held).
   */
  roomForCopy(st: BigIntStats): boolean {
    if (!this.copies(st)) return false;
    try {
      const fs = statfsSync(this.held!);
      return fs.bavail * fs.bsize - 2 * (Number(st.size) + this.runningBytes) >= SPOOL_RESERVE;
    } catch {
      return false;
    }
  }

  /** Waits until fewer than COPIES_AT_ONCE copies are under way (the walk waits here before it starts one). */
  async copySlot(): Promise<void> {
    while (this.running.size >= COPIES_AT_ONCE) await Promise.race(this.running);
  }

  /**
   * Starts the held copy (`copy`) of the file open at `fd` (the walk's lstat `st`; at `rel` below
   * the top, latin1; its data at byte `at` of the archive) beside the walk, which writes zeros for
   * its data meanwhile instead of waiting (a copy of 72 MiB took ~40–55 ms of the hold, the walk
   * stopped). Takes `fd`: closed once the copy ends. The copy is recorded (addCopy) once made; the
   * caller awaits `copiesDone` before the container is back, and reads the volume again without
   * copies when one was not made (its data is nowhere then): the first not made stops the others
   * (their copies would be dropped with it). At most COPIES_AT_ONCE at once (`copySlot`).
   */
  copyBeside(rel: string, at: number, fd: number, st: BigIntStats, signal?: AbortSignal): void {
    const size = Number(st.size);
    this.runningBytes += size;
    const made = (copy: HeldCopy | undefined) => {
      try {
        if (!copy) this.uncopied ??= rel;
        else if (this.discarded) rmSync(copy.path, { force: true });
        else this.addCopy(rel, at, copy);
      } catch {
        this.uncopied ??= rel;
      }
      if (this.uncopied !== undefined) this.stop.abort(new Error('a held copy was not made'));
    };
    const stopped = signal ? AbortSignal.any([signal, this.stop.signal]) : this.stop.signal;
    const copying: Promise<void> = this.copy(fd, st, stopped)
      .then(made, () => made(undefined))
      .finally(() => {
        closeQuietly(fd);
        this.runningBytes -= size;
        this.running.delete(copying);
      });
    this.running.add(copying);
  }

  /**
   * Waits for every copy started beside the walk to end; the path (below the top, latin1) of the
   * first that was not made (cp failed, the file changed, the run was cancelled), if one was not.
   * Never rejects.
   */
  async copiesDone(): Promise<string | undefined> {
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
    return this.uncopied;
  }

  /**
   * After a walk that failed (its archive dropped): stops the copies under way (their cp killed)
   * instead of waiting for them with the container held, waits for them to end, and removes every
   * held copy (discard). Never rejects.
   */
  async abandon(): Promise<void> {
    this.stop.abort(new Error('the walk failed'));
    await this.copiesDone();
    this.discard();
  }

  /**
   * Copies the file open at `fd` (the walk's lstat `st`) into a new file of the held directory, in
   * the kernel, or undefined when it is not (copyBeside: the volume is then read again, such files
   * while held): the spool's file system would keep less than SPOOL_RESERVE free with the copy and,
   * later, its data written into the spooled archive (twice its size); the copy failed (its part
   * removed); or the file is not as `st` says (size, times) after it. The copy is GNU cp's
   * (`--reflink=auto`: a clone where the file system shares blocks, else copy_file_range) in a child
   * process that opens the very descriptor (/proc/PID/fd/N): it ends at the file's end even if
   * another process truncates it meanwhile (a copy in this process — libuv's copyfile — would loop on
   * a file shorter than it began, with the container held), and is killed once `signal` aborts. The
   * copy is made 0600. Never rejects except with `signal`'s reason.
   */
  async copy(fd: number, st: BigIntStats, signal?: AbortSignal): Promise<HeldCopy | undefined> {
    if (!this.held) return undefined;
    const path = join(this.held, `held-${randomBytes(6).toString('hex')}`);
    try {
      const fs = statfsSync(this.held);
      if (fs.bavail * fs.bsize - 2 * Number(st.size) < SPOOL_RESERVE) return undefined;
      await run('cp', ['--reflink=auto', '--no-preserve=all', '-T', `/proc/${process.pid}/fd/${fd}`, path], signal);
      chmodSync(path, 0o600);
      const now = fstatSync(fd, { bigint: true });
      const copied = lstatSync(path, { bigint: true });
      if (
        copied.isFile() &&
        now.ino === st.ino &&
        now.size === st.size &&
        now.mtimeNs === st.mtimeNs &&
        now.ctimeNs === st.ctimeNs &&
        copied.size === st.size
      ) {
        return { path, st: copied };
      }
    } catch {
      // Not made: the caller reads the file while held.
    }
    rmSync(path, { force: true });
    signal?.throwIfAborted();
    return undefined;
  }

  /** Records a held copy of the file at `rel` below the top (latin1), its data at byte `at` of the archive. */
  addCopy(rel: string, at: number, copy: HeldCopy): void {
    this.add(rel, at, copy.st);
    this.reads[this.reads.length - 1].copy = copy.path;
    this.copied++;
    this.copiedBytes += Number(copy.st.size);
  }

  /** Removes the held copies not read yet (a read stopped by a change, a failure): each is read and removed by readDeferred otherwise. Throws nothing. */
  discard(): void {
    this.discarded = true;
    for (const r of this.reads) if (r.copy) rmSync(r.copy, { force: true });
  }
}

/** A file left for later changed (or went) between the hold and its read: the container must be taken again. */
export class DeferredChange extends Error {
  override name = 'DeferredChange';

  /** `rel`: the file's path below the volume's top (latin1); `why`: what differed (a phrase). */
  constructor(
    readonly rel: string,
    readonly why: string,
  ) {
    super(`${rel} changed after the container was back, before it was read (${why})`);
  }
}

/**
 * Reads each file of `deferred` below `root` (the volume's directory on this host, as the walk
 * read it), or its held copy (removed once read), and writes its data into `patch` at its offset. Opened without following a last
 * symlink nor blocking on a fifo; whatever the path leads to must be the walk's inode, unchanged,
 * so a path swapped for another leads nowhere else. Throws DeferredChange for the first file that
 * changed or could not be read (opened or read failing: taken again, it is read while held, or
 * through the engine), the signal's reason once aborted, or the spool's error.
 */
export async function readDeferred(root: string, deferred: DeferredReads, patch: SpoolPatch, signal?: AbortSignal): Promise<void> {
  const top = Buffer.from(root.endsWith('/') ? root : `${root}/`);
  const buf = Buffer.allocUnsafe(PIECE);
  const turn = () => new Promise((resolve) => setImmediate(resolve));
  for (const [i, r] of deferred.reads.entries()) {
    signal?.throwIfAborted();
    if (i % YIELD_EVERY === YIELD_EVERY - 1) await turn();
    // A held copy is read in its file's place: a file of the spool's, which nothing else writes.
    const fd = openChecked(r.copy ? Buffer.from(r.copy) : Buffer.concat([top, Buffer.from(r.rel, 'latin1')]), r);
    try {
      const size = Number(r.size);
      for (let off = 0; off < size;) {
        if (off > 0) await turn();
        signal?.throwIfAborted();
        const want = Math.min(PIECE, size - off);
        let got = 0;
        while (got < want) {
          const n = readOf(fd, buf, got, want - got, off + got, r);
          if (n === 0) throw new DeferredChange(r.rel, 'shorter than it was');
          got += n;
        }
        patch.write(r.at + off, buf.subarray(0, want));
        off += want;
      }
      unchanged(r, fstatSync(fd, { bigint: true }));
    } finally {
      closeSync(fd);
    }
    if (r.copy) rmSync(r.copy, { force: true });
  }
}

/** readSync, its failure (EIO, a lease's EWOULDBLOCK) a DeferredChange: the container is taken again. */
function readOf(fd: number, buf: Buffer, at: number, n: number, position: number, r: DeferredRead): number {
  try {
    return readSync(fd, buf, at, n, position);
  } catch (err) {
    throw new DeferredChange(r.rel, `not read: ${failure(err)}`);
  }
}

/**
 * `path` opened for reading once it is known to be the walk's inode, unchanged: named first
 * (O_PATH, a last symlink not followed), checked, then opened through /proc/self/fd, which opens
 * that very inode whatever the path names by then. Throws DeferredChange otherwise.
 */
function openChecked(path: Buffer, r: DeferredRead): number {
  let named: number;
  try {
    named = openSync(path, O_PATH | constants.O_NOFOLLOW);
  } catch (err) {
    throw new DeferredChange(r.rel, `not found: ${failure(err)}`);
  }
  try {
    unchanged(r, fstatSync(named, { bigint: true }));
    try {
      return openSync(`/proc/self/fd/${named}`, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (err) {
      throw new DeferredChange(r.rel, `not opened: ${failure(err)}`);
    }
  } finally {
    closeSync(named);
  }
}

/** A failed call's errno code (ENOENT), else its message. */
function failure(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
}

/** Throws DeferredChange unless `now` (an fstat) is the inode `r` describes, with the same size and times. */
function unchanged(r: DeferredRead, now: BigIntStats): void {
  const why =
    !now.isFile() || now.dev !== r.dev || now.ino !== r.ino
      ? 'another file'
      : now.size !== r.size
        ? 'its size'
        : now.mtimeNs !== r.mtimeNs || now.ctimeNs !== r.ctimeNs
          ? 'its times'
          : undefined;
  if (why) throw new DeferredChange(r.rel, why);
}

/** Runs `cmd` with `args` to its end; rejects when it fails, and kills it (rejecting) once `signal` aborts. */
function run(cmd: string, args: string[], signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { signal }, (err) => (err ? reject(err) : resolve()));
  });
}
