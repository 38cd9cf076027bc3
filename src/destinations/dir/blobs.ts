import { createReadStream } from 'node:fs';
import { chmod, open, readdir, rename, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { finished } from 'node:stream/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { checkableHere, isAlive } from '../../core/process-liveness.js';
import { sha256Digest } from '../../oci/digest.js';
import { DestinationError, type BlobWriter } from '../types.js';
import { BlobFile } from './blob-file.js';
import { FILE_MODE, exists, fsyncPath } from './files.js';
import { tmpOwner, type DirLayout } from './layout.js';

/** Blob files synced at once in the background: each holds a thread of libuv's pool (4) while the disk works. */
const SYNCS_AT_ONCE = 2;
/** Bytes per read of a stored blob (Node's default is 64 KiB: a 300 MB layer took ~30 % more CPU to read in those). */
const READ_PIECE = 1 << 20;
/** Written blobs that may wait for their sync, each an open file: past this, a commit waits for room. */
const WAITING_MAX = 64;

/** A written blob on its way to its place: its temp file, still open, synced and renamed by its task. */
interface Accepted {
  tmp: string;
  handle: FileHandle;
  done?: Promise<void>;
}

/**
 * The blob store of a dir: destination: blobs/sha256/<hex>, each written under .tmp/ (mode 0600),
 * fsynced, then renamed into place, so a blob file present is a complete, durable one. `label`
 * names the destination in messages.
 *
 * A commit does not wait for the disk (group commit): it hands the written file to a background
 * queue that fsyncs SYNCS_AT_ONCE files at a time and renames each once synced. Until then the blob
 * counts as held (has, read: from its temp file). flush() waits for every accepted blob to be
 * durable and in place and fsyncs blobs/sha256: a set document is written only after it (sets.ts),
 * so no set names a blob a crash could lose. A sync that failed fails the next commit and flush.
 */
export class BlobStore {
  private readonly accepted = new Map<string, Accepted>();
  private readonly queue: Array<{ digest: string; blob: Accepted }> = [];
  private running = 0;
  private failure?: Error;
  private readonly waiters: Array<() => void> = [];

  constructor(
    private readonly layout: DirLayout,
    private readonly label: string,
  ) {}

  /** Whether the blob is stored, or accepted by this process and on its way. */
  async has(digest: string): Promise<boolean> {
    return this.accepted.has(digest) || exists(this.layout.blobPath(digest));
  }

  /**
   * A writer of one blob: write `stream`, then commit(digest, size) accepts it (or drops it when that
   * blob is held already); commit throws DestinationError when the bytes written are not `size`, or
   * when an earlier blob's sync failed. abort() drops the partial file.
   */
  async writer(): Promise<BlobWriter> {
    const tmp = this.layout.tmpPath('blob', 6);
    const handle = await open(tmp, 'wx', FILE_MODE);
    let owned = true;
    const discard = async () => {
      if (!owned) return;
      owned = false;
      await handle.close().catch(() => undefined);
      await rm(tmp, { force: true });
    };
    try {
      await handle.chmod(FILE_MODE);
    } catch (err) {
      await discard();
      throw err;
    }
    const stream = new BlobFile(handle);
    return {
      stream,
      commit: async (digest, size) => {
        try {
          if (!stream.writableFinished) await finished(stream);
          if (this.failure) throw this.failure;
          if (stream.bytes !== size) throw new DestinationError(`${this.label}: blob ${digest} has ${stream.bytes} bytes, expected ${size}`);
          if (await this.has(digest)) return await discard();
        } catch (err) {
          await discard();
          throw err;
        }
        // Another writer of the same blob may have been accepted while `has` looked: the first one stays.
        if (this.accepted.has(digest)) return await discard();
        owned = false;
        await this.accept(digest, { tmp, handle });
      },
      abort: async () => {
        stream.destroy();
        await discard();
      },
    };
  }

  /** Queues a written blob for its sync and rename; waits while WAITING_MAX blobs wait already. */
  private async accept(digest: string, blob: Accepted): Promise<void> {
    this.accepted.set(digest, blob);
    this.queue.push({ digest, blob });
    this.pump();
    while (this.queue.length > WAITING_MAX) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  private pump(): void {
    while (this.running < SYNCS_AT_ONCE && this.queue.length > 0) {
      const { digest, blob } = this.queue.shift()!;
      this.running++;
      blob.done = this.place(digest, blob).finally(() => {
        this.running--;
        this.waiters.splice(0).forEach((wake) => wake());
        this.pump();
      });
    }
  }

  /** fsync, close, rename into place; a failure is kept for the next commit and flush, the temp file removed. */
  private async place(digest: string, blob: Accepted): Promise<void> {
    try {
      try {
        await blob.handle.sync();
      } finally {
        await blob.handle.close();
      }
      await rename(blob.tmp, this.layout.blobPath(digest));
    } catch (err) {
      this.failure ??= new DestinationError(`${this.label}: blob ${digest} could not be made durable: ${(err as Error).message}`, { cause: err });
      await rm(blob.tmp, { force: true });
    } finally {
      if (this.accepted.get(digest) === blob) this.accepted.delete(digest);
    }
  }

  /** Every accepted blob durable and in place, and blobs/sha256 synced. Throws DestinationError when one could not be. */
  async flush(): Promise<void> {
    await this.flushBlobs();
    await fsyncPath(this.layout.blobs);
  }

  private async flushBlobs(): Promise<void> {
    while (this.accepted.size > 0) {
      this.pump();
      await Promise.allSettled([...this.accepted.values()].map((b) => b.done).filter(Boolean));
    }
    if (this.failure) throw this.failure;
  }

  /** Waits for the background syncs to end, without throwing (what failed stays out of blobs/). */
  async settle(): Promise<void> {
    await this.flushBlobs().catch(() => undefined);
  }

  /** The blob's bytes, unchecked (an accepted one from its temp file). Throws DestinationError when it is missing or `digest` is not one. */
  async read(digest: string): Promise<Readable> {
    const path = this.layout.blobPath(digest);
    const pending = this.accepted.get(digest);
    // Opened now: the file is renamed once synced, and an open file is read whatever its name becomes.
    const handle = pending && (await open(pending.tmp, 'r').catch(() => undefined));
    if (handle) return createReadStream('', { fd: handle, highWaterMark: READ_PIECE });
    let file: FileHandle;
    try {
      file = await open(path, 'r');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new DestinationError(`${this.label}: blob ${digest} is missing`);
      throw new DestinationError(`${this.label}: blob ${digest} cannot be read (${code ?? (err as Error).message})`, { cause: err });
    }
    try {
      // Pieces of its size up to READ_PIECE: a chunk of a few hundred KiB is read in one piece, without a READ_PIECE buffer each.
      const { size } = await file.stat();
      return createReadStream('', { fd: file, highWaterMark: Math.max(1, Math.min(READ_PIECE, size)) });
    } catch (err) {
      await file.close();
      throw err;
    }
  }
}

/** `body` as a blob, fsynced under its digest (a set document, before any tag names it); returns the digest. */
export async function writeBlobBytes(layout: DirLayout, body: Buffer): Promise<string> {
  const digest = sha256Digest(body);
  const tmp = layout.tmpPath('blob');
  try {
    await writeFile(tmp, body, { flag: 'wx', mode: FILE_MODE });
    await chmod(tmp, FILE_MODE);
    await fsyncPath(tmp);
    await rename(tmp, layout.blobPath(digest));
  } finally {
    await rm(tmp, { force: true });
  }
  return digest;
}

/** Removes the partial files under .tmp/ of processes on this host that are gone (killed mid-write), telling `warn` of each. */
export async function removeAbandoned(layout: DirLayout, label: string, warn: (message: string) => void): Promise<void> {
  for (const name of await readdir(layout.tmp)) {
    const owner = tmpOwner(name);
    if (owner && checkableHere(owner.host) && !isAlive(owner.pid, '')) {
      await rm(join(layout.tmp, name), { force: true });
      warn(`Removed ${label} .tmp/${name}, left by an interrupted backup`);
    }
  }
}
