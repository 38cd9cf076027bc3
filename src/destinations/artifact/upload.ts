import { execFile } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import { DestinationError } from '../types.js';

const execFileAsync = promisify(execFile);

/** What the library reports of a finished single-file upload: bytes, hex sha256, artifact id. */
export interface Uploaded {
  size?: number;
  digest?: string;
  id?: number;
}
/** Pipes with a library reader that may be blocked in a thread: the process cannot exit until each sees end of file. */
const livePipes = new Set<PipeUpload>();
let exitHookInstalled = false;

function closeLivePipesOnExit(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const pipe of livePipes) pipe.closeNow();
  });
}

/**
 * A single-file artifact upload fed from a stream: the library reads a named pipe as the file.
 * Our end opens only once the library's end is open (a pipe nobody holds loses what it buffered),
 * non-blocking, so no thread of ours ever waits on the pipe. Closing our end is the reader's end of
 * file, so every way out (done, cancelled, failed, process exit) closes it.
 */
export class PipeUpload {
  readonly stream = new PassThrough();
  private fd?: number;
  private socket?: Socket;
  private cancelled = false;
  private settled = false;
  private finalized = false;
  private readonly piped: Promise<void>;

  private constructor(
    private readonly path: string,
    private readonly dir: string,
    private readonly uploading: Promise<Uploaded>,
    private readonly failure: (err: unknown) => Error,
  ) {
    livePipes.add(this);
    closeLivePipesOnExit();
    // Failures reach the caller through the pipeline while it runs, and through finish() after: never as an unhandled event.
    this.stream.on('error', () => undefined);
    this.piped = this.connect();
    this.piped.catch((err: unknown) => this.stream.destroy(this.failure(err)));
    uploading.then(
      () => {
        this.finalized = true;
        this.settled = true;
      },
      (error: unknown) => {
        this.settled = true;
        // The library gave up: fail the writer instead of waiting on a pipe nobody reads.
        this.stream.destroy(this.failure(error));
        this.socket?.destroy();
      },
    );
    void uploading.catch(() => undefined).finally(() => livePipes.delete(this));
  }

  /**
   * Makes the named pipe `name` in a fresh directory under `tempRoot` and starts `upload` reading it
   * as the file; `failure` turns the library's errors into ours. Throws DestinationError when no pipe can be made.
   */
  static async start(
    tempRoot: string,
    name: string,
    upload: (path: string, dir: string) => Promise<Uploaded>,
    failure: (err: unknown) => Error,
  ): Promise<PipeUpload> {
    const dir = await mkdtemp(join(tempRoot, 'container-snapshot-up-'));
    const path = join(dir, name);
    try {
      await execFileAsync('mkfifo', ['-m', '600', path]);
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw new DestinationError(`Cannot make a named pipe in ${tempRoot} to stream to the artifact service: ${(err as Error).message}`);
    }
    return new PipeUpload(path, dir, upload(path, dir), failure);
  }

  /** Opens our end once the library has opened its end (after creating the artifact), until the upload settles. */
  private async connect(): Promise<void> {
    while (this.fd === undefined) {
      if (this.settled) throw new Error('the artifact service refused the upload');
      try {
        this.fd = openSync(this.path, constants.O_WRONLY | constants.O_NONBLOCK);
      } catch (err) {
        // ENXIO: the library has not opened its end yet.
        if ((err as NodeJS.ErrnoException).code !== 'ENXIO') throw err;
        await delay(20);
      }
    }
    this.socket = new Socket({ fd: this.fd, readable: false, writable: true });
    // Cancelled before the library opened its end: give it end of file at once, so it does not wait forever.
    if (this.cancelled) this.socket.destroy();
    await pipeline(this.stream, this.socket);
  }

  /** Waits for everything written to be uploaded, and the artifact finalized. */
  async finish(): Promise<Uploaded> {
    try {
      const [piped, uploaded] = await Promise.allSettled([this.piped, this.uploading]);
      // The library's reason first: a failed pipe is only its consequence.
      if (uploaded.status === 'rejected') throw uploaded.reason;
      if (piped.status === 'rejected') throw piped.reason;
      return uploaded.value;
    } finally {
      await rm(this.dir, { recursive: true, force: true });
    }
  }

  /** Stops the upload; true when the library finalized an artifact anyway (it saw end of file). */
  async cancel(): Promise<boolean> {
    this.cancelled = true;
    this.stream.destroy();
    this.socket?.destroy();
    await this.uploading.catch(() => undefined);
    await rm(this.dir, { recursive: true, force: true });
    return this.finalized;
  }

  /** At process exit (synchronous): end of file for a reader still blocked on the pipe. */
  closeNow(): void {
    try {
      if (this.fd !== undefined) closeSync(this.fd);
      else closeSync(openSync(this.path, constants.O_WRONLY | constants.O_NONBLOCK));
    } catch {
      // No reader, or already closed.
    }
  }
}
