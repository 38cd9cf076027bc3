import { closeSync, openSync, readSync, statfsSync, writeSync, writevSync } from 'node:fs';
import { chmod, mkdir, open, rm, rmdir, statfs, type FileHandle } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { Transform, Writable, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { spoolRoot } from '../core/state-dir.js';
import { runName } from '../core/run-names.js';
import { formatBytes } from '../util/format.js';
import { allZero } from '../util/zeros.js';
import { giveBackMiB, mibFileStream } from '../util/mib-buffers.js';
import { directStream } from '../util/direct-read.js';
import { BLOCK, BlockCtr, ZeroKeepingCtr, type FileKey } from './spool-cipher.js';

/** Free space the spool leaves on its filesystem: it fails rather than fill the disk. */
export const SPOOL_RESERVE = 256 << 20;
/** How many bytes are written between two looks at the free space. */
const CHECK_EVERY = 32 << 20;
const ZEROS = Buffer.alloc(BLOCK);
/** Bytes a spooled file buffers while a write is in flight (written together, one write per run of data). */
const SPOOL_BUFFER = 1 << 20;

/** Buffers in one writev: Linux's IOV_MAX (limits.h, UIO_MAXIOV). */
const IOV_MAX = 1024;
/**
 * A run of data this long or shorter (bytes) is written synchronously: between two holes there is
 * often only a tar header (a file left unread or read later), and one write each through the thread
 * pool, awaited in turn, cost a held walk of 14,600 files ~350 ms of its ~830 (a write of 512 bytes
 * into the page cache takes a few µs; its round trip through the pool and the promise, ~70 µs).
 */
const SYNC_WRITE_MAX = 64 << 10;

/** An archive read while its container was held, waiting on local disk: its path and length in bytes. */
export interface Spooled {
  path: string;
  bytes: number;
}

export class SpoolError extends Error {
  override name = 'SpoolError';
}

/** Fails the write when the spool's filesystem has less than SPOOL_RESERVE free, looked at every CHECK_EVERY bytes. */
class RoomCheck extends Transform {
  private sinceCheck = CHECK_EVERY;

  constructor(private readonly dir: string) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.sinceCheck += chunk.length;
    if (this.sinceCheck < CHECK_EVERY) return done(null, chunk);
    this.sinceCheck = 0;
    statfs(this.dir).then((fs) => {
      try {
        roomError(this.dir, fs);
        done(null, chunk);
      } catch (err) {
        done(err as Error);
      }
    }, done);
  }
}

/**
 * Writes into a spooled file after it was taken, at given offsets (Spool.patch): the data of tar
 * members the walk left as zeros, read once the container is back (deferred-read.ts), and the
 * headers of runs of files it left as holes (volume-tar.ts writeRunHeaders). Synchronous,
 * as the walk's reads are: one write per piece, no turn of the thread pool. In an encrypting spool
 * each BLOCK a piece touches is read, decrypted, changed and encrypted again whole, in a generation
 * of the file's key stream not used before (FileKey), so that a block stays zero exactly when its
 * clear bytes are all zero (ZeroKeepingCtr's rule) and no key stream covers two clear texts.
 */
export class SpoolPatch {
  private sinceCheck = 0;

  /** @internal Spool.patch makes it. */
  constructor(
    private readonly fd: number,
    private readonly spooled: Spooled,
    private readonly dir: string,
    private readonly fileKey?: FileKey,
  ) {
    this.ctr = fileKey && new BlockCtr(fileKey);
  }

  private readonly ctr?: BlockCtr;

  /**
   * Writes `data` (clear bytes; encrypted here when the spool encrypts) at byte `at` of the spooled
   * file, a range within it (else RangeError). Throws SpoolError when the disk runs short (as
   * `take` does), or the file system's error.
   */
  write(at: number, data: Buffer): void {
    if (at < 0 || at + data.length > this.spooled.bytes)
      throw new RangeError(`a patch of ${data.length} bytes at ${at} is outside the spooled ${this.spooled.bytes} bytes`);
    this.sinceCheck += data.length;
    if (this.sinceCheck >= CHECK_EVERY) {
      this.sinceCheck = 0;
      roomError(this.dir, statfsSync(this.dir));
    }
    if (!this.ctr) return writeAll(this.fd, data, at);
    const start = at - (at % BLOCK);
    const end = Math.min(this.spooled.bytes, Math.ceil((at + data.length) / BLOCK) * BLOCK);
    const blocks = Buffer.alloc(end - start);
    readAll(this.fd, blocks, start);
    // Decrypted (zero blocks stay zero), the clear data put over it, encrypted again in a generation of its own.
    const clear = Buffer.from(this.ctr.apply(blocks, start));
    data.copy(clear, at - start);
    const gen = ++this.fileKey!.lastGen;
    for (let b = start / BLOCK; b * BLOCK < end; b++) this.fileKey!.gens.set(b, gen);
    writeAll(this.fd, this.ctr.apply(clear, start), start);
  }

  /** Closes the file. */
  close(): void {
    closeSync(this.fd);
  }
}

/** Writes all of `data` at `at`, going on after a short write. */
function writeAll(fd: number, data: Buffer, at: number): void {
  let done = 0;
  while (done < data.length) {
    const n = writeSync(fd, data, done, data.length - done, at + done);
    if (n === 0) throw new Error('the spool file took no bytes');
    done += n;
  }
}

/** Fills `buf` from byte `at` of the file (holes read as zeros); fails if the file ends first. */
function readAll(fd: number, buf: Buffer, at: number): void {
  let done = 0;
  while (done < buf.length) {
    const n = readSync(fd, buf, done, buf.length - done, at + done);
    if (n === 0) throw new Error('the spool file ended before its patched block');
    done += n;
  }
}

/** Throws SpoolError when `fs` (the spool's statfs) has less than SPOOL_RESERVE free. */
function roomError(dir: string, fs: { bavail: number; bsize: number }): void {
  const free = fs.bavail * fs.bsize;
  if (free < SPOOL_RESERVE)
    throw new SpoolError(
      `the spool at ${dir} has ${formatBytes(free)} free, less than the ${formatBytes(SPOOL_RESERVE)} it leaves free: make room there (see the README on the spool's disk)`,
    );
}

/** Bytes in `pieces`. */
function runBytes(pieces: Buffer[]): number {
  let n = 0;
  for (const p of pieces) n += p.length;
  return n;
}

/**
 * Writes a stream to a new 0600 file, leaving aligned all-zero blocks as holes: a volume's sparse
 * files (read from the engine as zeros) take no room in the spool, and read back the same.
 */
class SparseFile extends Writable {
  private handle?: FileHandle;
  bytes = 0;
  /** Chunks taken but not written yet (fewer than SPOOL_BUFFER bytes), and their length. */
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  /**
   * `giveBack`: the file is the only reader of what it is given (no cipher before it), so the
   * buffers of mib-buffers.ts among them go back there once written.
   */
  constructor(
    private readonly path: string,
    private readonly giveBack: boolean,
  ) {
    // Chunks that arrive while a write is in flight are gathered (_writev) into the next one: fewer
    // round trips to the file system while the container is held, and the engine's stream keeps flowing.
    super({ highWaterMark: SPOOL_BUFFER });
  }

  override _construct(done: (err?: Error | null) => void): void {
    open(this.path, 'wx', 0o600).then((h) => {
      this.handle = h;
      done();
    }, done);
  }

  /**
   * Chunks are held until SPOOL_BUFFER bytes are, then written together: a tar of many small files
   * comes as three small chunks a file (header, data, padding), and one write each (a round trip
   * through the thread pool) made a walk of 12,500 files spend most of its time waiting on them.
   * The chunks are kept as they are, not copied: every writer hands over buffers it does not reuse;
   * those of mib-buffers.ts (a host walk's batches) go back there once written, unless a cipher
   * stands before this file (then it is given the cipher's output, not them).
   */
  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.hold([chunk], done);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, done: (err?: Error | null) => void): void {
    this.hold(
      chunks.map((c) => c.chunk),
      done,
    );
  }

  private hold(chunks: Buffer[], done: (err?: Error | null) => void): void {
    for (const c of chunks) {
      this.pending.push(c);
      this.pendingBytes += c.length;
    }
    if (this.pendingBytes < SPOOL_BUFFER) return done();
    this.flushPending().then(() => done(), done);
  }

  private flushPending(): Promise<void> {
    const chunks = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    if (chunks.length === 0) return Promise.resolve();
    return this.writeData(chunks).then(() => {
      if (this.giveBack) giveBackMiB(chunks);
    });
  }

  /**
   * Writes the runs of `chunks` (consecutive in the file) that are not whole zero blocks, at their
   * offsets: runs that follow each other in the file go in one writev, without copying them together.
   */
  private async writeData(chunks: Buffer[]): Promise<void> {
    let run: Buffer[] = [];
    let runAt = 0;
    let runEnd = -1;
    const flush = async () => {
      let rest = run;
      let at = runAt;
      run = [];
      runEnd = -1;
      // A short write (a file system nearly full) goes on from where it stopped.
      while (rest.length > 0) {
        const bytesWritten = runBytes(rest) <= SYNC_WRITE_MAX ? writevSync(this.handle!.fd, rest, at) : (await this.handle!.writev(rest, at)).bytesWritten;
        at += bytesWritten;
        let skip = bytesWritten;
        while (rest.length > 0 && skip >= rest[0].length) skip -= rest.shift()!.length;
        if (rest.length > 0 && skip > 0) rest = [rest[0].subarray(skip), ...rest.slice(1)];
        if (bytesWritten === 0 && rest.length > 0) throw new Error('the spool file took no bytes');
      }
    };
    const add = async (piece: Buffer, at: number) => {
      if (at !== runEnd) {
        await flush();
        runAt = at;
      }
      run.push(piece);
      runEnd = at + piece.length;
      if (run.length >= IOV_MAX) await flush();
    };
    for (const chunk of chunks) {
      // Zeros shorter than a block right after data (a tar member's padding, its end blocks) are
      // written with it: a hole is made of whole blocks, and a run of data is not cut into one write
      // per member. Zeros read back the same whether written or left out.
      if (allZero(chunk) && !(chunk.length < BLOCK && this.bytes === runEnd)) {
        this.bytes += chunk.length;
        continue;
      }
      let start = -1;
      let i = 0;
      while (i < chunk.length) {
        const end = Math.min(chunk.length, i + BLOCK - ((this.bytes + i) % BLOCK));
        const short = end - i < BLOCK && (start >= 0 || this.bytes + i === runEnd);
        // Compared in place, without a view per block (76,800 blocks took 212–332 ms with two views
        // each, 6–115 ms so), and only when its first and last bytes are zero: data almost never has
        // both, and the compare's call costs ~5 µs a block (125 ms of a 106 MB file's read while held).
        const zero = !short && chunk[i] === 0 && chunk[end - 1] === 0 && chunk.compare(ZEROS, 0, end - i, i, end) === 0;
        if (!zero && start < 0) start = i;
        if (zero && start >= 0) {
          await add(chunk.subarray(start, i), this.bytes + start);
          start = -1;
        }
        i = end;
      }
      if (start >= 0) await add(chunk.subarray(start), this.bytes + start);
      this.bytes += chunk.length;
    }
    await flush();
  }

  override _final(done: (err?: Error | null) => void): void {
    this.flushPending()
      .then(() => this.handle!.truncate(this.bytes))
      .then(() => done(), done);
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    const handle = this.handle;
    this.handle = undefined;
    if (!handle) return done(err);
    handle.close().then(
      () => done(err),
      () => done(err),
    );
  }
}

/**
 * What a backup reads while a container is paused or stopped goes here first, as the engine sends
 * it, so that the hold lasts only as long as the engine takes to send it and never waits on a
 * destination (nor on compression): it is checked, digested, compressed and stored once the
 * container is back. Each run spools in a directory of its own under `spoolRoot` (0700, files
 * 0600), removed when the run ends; a later run's recovery removes one left by a killed run.
 * When the run encrypts, each file is encrypted (ZeroKeepingCtr) with a random key of its own, held
 * in this object only: what encryption protects is never on the runner's disk in clear.
 */
export class Spool {
  private readonly files = new Set<string>();
  /** Each file's key (32 bytes) when the spool encrypts; never written anywhere. */
  private readonly keys = new Map<string, FileKey>();
  private made = false;

  private constructor(
    readonly dir: string,
    readonly encrypting: boolean,
  ) {}

  /** The run's spool under `spoolRoot(env)`; `encrypting`: whether its files are encrypted (when the run's sets are). */
  static for(env: NodeJS.ProcessEnv, encrypting = false): Spool {
    return new Spool(join(spoolRoot(env), runName()), encrypting);
  }

  /** Makes the spool's directory (once). Called before an engine stream is opened, so that `take` reads it at once. */
  async ready(): Promise<void> {
    if (this.made) return;
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await chmod(this.dir, 0o700);
    this.made = true;
  }

  /**
   * Copies `source` into a file of the spool (after `ready`), through `meter` when given. On a
   * failure the file is gone and `source` destroyed. Throws SpoolError when the disk runs short.
   */
  async take(source: Readable, meter?: Transform): Promise<Spooled> {
    const path = join(this.dir, `archive-${randomBytes(6).toString('hex')}`);
    this.files.add(path);
    const key: FileKey | undefined = this.encrypting ? { key: randomBytes(32), gens: new Map(), lastGen: 0 } : undefined;
    const file = new SparseFile(path, !key);
    if (key) this.keys.set(path, key);
    try {
      await pipeline([source, ...(meter ? [meter] : []), ...(key ? [new ZeroKeepingCtr(key)] : []), new RoomCheck(this.dir), file]);
      return { path, bytes: file.bytes };
    } catch (err) {
      source.destroy();
      await this.release({ path });
      throw err;
    }
  }

  /**
   * The spooled bytes, to be read once the container is back, in pieces of 1 MiB read into
   * buffers of mib-buffers.ts (mibFileStream): the stream's last reader may give them back once
   * done with them. A file that is mostly holes (a sparse file's archive) is read with O_DIRECT in
   * 1 MiB pieces, its holes passed on as shared zeros (direct-read.ts): a buffered read of holes
   * fills the page cache with zeros, slower than the disk. `knownZeros`: bytes of files left
   * unread (directStream's), which do not count as holes for that.
   */
  read(spooled: Spooled, knownZeros = 0): Readable {
    const file = directStream(spooled.path, knownZeros) ?? mibFileStream(spooled.path);
    const key = this.keys.get(spooled.path);
    if (!key) return file;
    const clear = new ZeroKeepingCtr(key);
    file.on('error', (err: Error) => clear.destroy(err));
    clear.on('close', () => file.destroy());
    return file.pipe(clear);
  }

  /**
   * Opens a spooled file (taken, not yet released) to write into it at given offsets (SpoolPatch).
   * The caller closes it before the file is read.
   */
  patch(spooled: Spooled): SpoolPatch {
    const key = this.keys.get(spooled.path);
    return new SpoolPatch(openSync(spooled.path, 'r+'), spooled, this.dir, key);
  }

  /** Removes one spooled file (once stored, or after a failure). */
  async release(spooled: Pick<Spooled, 'path'>): Promise<void> {
    this.files.delete(spooled.path);
    this.keys.delete(spooled.path);
    await rm(spooled.path, { force: true });
  }

  /** Removes every file this spool still holds, its directory, and the spool root if no other run spools there. Safe to call twice. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.files].map((path) => this.release({ path })));
    if (!this.made) return;
    this.made = false;
    await rm(this.dir, { recursive: true, force: true });
    // Fails while another run's directory is there: that run removes the root when it ends.
    await rmdir(dirname(this.dir)).catch(() => undefined);
  }
}
