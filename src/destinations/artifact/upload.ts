import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';

/** What the library reports of a finished single-file upload: bytes, hex sha256, artifact id. */
export interface Uploaded {
  size?: number;
  digest?: string;
  id?: number;
}

/** Paths of the uploads in progress → the stream the library reads in place of the file. */
const claimed = new Map<string, () => Readable>();
let installed = false;

/**
 * @actions/artifact (6.2.1, internal/upload/stream.ts) uploads a single file by reading it with
 * fs.createReadStream(path, { highWaterMark: 8 MiB }), and takes no stream. Through a named pipe it
 * got ≤ 64 KiB a read, each into a fresh 8 MiB buffer: most of an upload's time went to allocating
 * and collecting them (×5 a dir: backup). For a path of ours, it now gets our stream itself;
 * every other path reads as before.
 */
function interceptReads(): void {
  if (installed) return;
  installed = true;
  const original = fs.createReadStream;
  // fs (the default export) is the one object every importer shares, the bundled library included;
  // syncBuiltinESMExports carries the change to named imports of node:fs.
  fs.createReadStream = function createReadStream(this: unknown, path: Parameters<typeof original>[0], options?: Parameters<typeof original>[1]) {
    const take = typeof path === 'string' ? claimed.get(path) : undefined;
    if (!take) return original.call(fs, path, options);
    claimed.delete(path as string);
    return take() as ReturnType<typeof original>;
  } as typeof original;
  syncBuiltinESMExports();
}

/**
 * A single-file artifact upload fed from a stream, never written to disk: the library is given
 * an empty placeholder file, and reads `stream` when it opens it (after creating the artifact).
 */
export class StreamedUpload {
  readonly stream = new PassThrough();
  private taken = false;
  private cancelled = false;
  private finalized = false;

  private constructor(
    private readonly path: string,
    private readonly dir: string,
    private readonly failure: (err: unknown) => Error,
  ) {
    // Failures reach the caller through the pipeline while it runs, and through finish() after: never as an unhandled event.
    this.stream.on('error', () => undefined);
    claimed.set(path, () => this.take());
  }

  private uploading!: Promise<Uploaded>;

  /**
   * Makes the placeholder `name` in a fresh directory under `tempRoot` and starts `upload` reading it
   * as the file; `failure` turns the library's errors into ours.
   */
  static async start(
    tempRoot: string,
    name: string,
    upload: (path: string, dir: string) => Promise<Uploaded>,
    failure: (err: unknown) => Error,
  ): Promise<StreamedUpload> {
    interceptReads();
    const dir = await mkdtemp(join(tempRoot, 'container-snapshot-up-'));
    const path = join(dir, name);
    await writeFile(path, '');
    const up = new StreamedUpload(path, dir, failure);
    up.uploading = upload(path, dir);
    up.uploading.then(
      () => {
        up.finalized = true;
      },
      // The library gave up: fail the writer instead of leaving it blocked on a stream nobody reads.
      (error: unknown) => up.stream.destroy(failure(error)),
    );
    void up.uploading.catch(() => undefined).finally(() => claimed.delete(path));
    return up;
  }

  /** What the library reads: our stream, or end of file at once when cancelled before it opened the file. */
  private take(): Readable {
    this.taken = true;
    return this.cancelled ? Readable.from([]) : this.stream;
  }

  /** Waits for everything written to be uploaded, and the artifact finalized. */
  async finish(): Promise<Uploaded> {
    try {
      return await this.uploading;
    } finally {
      await rm(this.dir, { recursive: true, force: true });
    }
  }

  /** Stops the upload; true when the library finalized an artifact anyway (it was cancelled before reading). */
  async cancel(): Promise<boolean> {
    this.cancelled = true;
    // Read already: an error, so the library fails the upload instead of finalizing what it got.
    this.stream.destroy(this.taken ? this.failure(new Error('cancelled')) : undefined);
    await this.uploading.catch(() => undefined);
    claimed.delete(this.path);
    await rm(this.dir, { recursive: true, force: true });
    return this.finalized;
  }
}
