import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, mkdir, rm, statfs } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { spoolRoot, tempTagPrefix } from '../core/recovery.js';
import type { Destination } from '../destinations/types.js';
import { formatBytes } from '../util/format.js';
import { encodeInto, storeEncoded, type StoreTarget } from './blobs.js';
import type { BlobDescriptor } from './manifest.js';

/** Free space the spool leaves on its filesystem: it fails rather than fill the disk. */
export const SPOOL_RESERVE = 256 << 20;
/** How many bytes are written between two looks at the free space. */
const CHECK_EVERY = 32 << 20;

/** A blob read while its container was held, waiting on local disk for the destinations. */
export interface SpooledBlob {
  blob: BlobDescriptor;
  path: string;
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
    statfs(this.dir).then(
      (fs) => {
        const free = fs.bavail * fs.bsize;
        if (free >= SPOOL_RESERVE) return done(null, chunk);
        done(new SpoolError(`the spool at ${this.dir} has ${formatBytes(free)} free, less than the ${formatBytes(SPOOL_RESERVE)} it leaves free: make room there (see the README on the spool's disk)`));
      },
      (err: Error) => done(err),
    );
  }
}

/**
 * What a backup reads while a container is paused or stopped goes here first, compressed and
 * digested on the way, so that the hold never waits on a destination; it is copied to the
 * destinations once the container is back. Files are 0600. With a dir: destination the spool is
 * that directory's `.tmp/` and a spooled blob is renamed into it (written once); otherwise it is a
 * directory of this run under `spoolRoot`, which a later run's recovery removes if this one is killed.
 */
export class Spool {
  private readonly files = new Set<string>();
  private made = false;

  private constructor(
    readonly dir: string,
    private readonly home?: Destination,
  ) {}

  /** The spool for a run writing to `destinations`: in the first dir: one's own filesystem, else under `spoolRoot(env)`. */
  static for(destinations: Destination[], env: NodeJS.ProcessEnv): Spool {
    const home = destinations.find((d) => d.spoolDir && d.adoptBlob);
    if (home) return new Spool(home.spoolDir!, home);
    return new Spool(join(spoolRoot(env), `${tempTagPrefix()}-${process.pid}-${randomBytes(4).toString('hex')}`));
  }

  /** Makes the spool's directory (once): called before an engine stream is opened, so nothing waits between the two. */
  async ready(): Promise<void> {
    if (this.made || this.home) return;
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await chmod(this.dir, 0o700);
    this.made = true;
  }

  /** Encodes `source` as `mediaType` into a file of the spool (`meter` sees the content). Throws SpoolError when the disk runs short. */
  async take(source: Readable, mediaType: string, meter?: Transform): Promise<SpooledBlob> {
    await this.ready();
    // Named as dir: names its partial files, so its own sweep also clears a killed run's spool.
    const path = join(this.dir, `blob-${hostname()}-${process.pid}-${randomBytes(6).toString('hex')}`);
    this.files.add(path);
    try {
      const check = new RoomCheck(this.dir);
      const [blob] = await Promise.all([encodeInto(source, check, mediaType, meter), pipeline(check, createWriteStream(path, { flags: 'wx', mode: 0o600 }))]);
      return { blob, path };
    } catch (err) {
      source.destroy();
      await this.release({ path });
      throw err;
    }
  }

  /**
   * Copies a spooled blob to every target that lacks it (one read for all), moves it into the
   * spool's own dir: destination last, and removes it from the spool. Returns false when every target held it already.
   */
  async store(spooled: SpooledBlob, targets: StoreTarget[], what: string, meter?: Transform): Promise<boolean> {
    try {
      const { blob, path } = spooled;
      const lacking: StoreTarget[] = [];
      for (const t of targets) if (!(await t.dest.hasBlob(t.scope, blob.digest))) lacking.push(t);
      const copies = lacking.filter((t) => t.dest !== this.home);
      if (copies.length > 0) await storeEncoded(createReadStream(path), blob, copies, what, meter);
      if (lacking.length > copies.length) await this.home!.adoptBlob!(path, blob.digest, blob.size);
      return lacking.length > 0;
    } finally {
      await this.release(spooled);
    }
  }

  /** Removes one spooled file (after its upload, or a failure). */
  async release(spooled: Pick<SpooledBlob, 'path'>): Promise<void> {
    this.files.delete(spooled.path);
    await rm(spooled.path, { force: true });
  }

  /** Removes every file this spool still holds, and its directory when it is the run's own. Safe to call twice. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.files].map((path) => this.release({ path })));
    if (this.made) await rm(this.dir, { recursive: true, force: true });
    this.made = false;
  }
}
