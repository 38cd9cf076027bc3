import { Transform, type TransformCallback } from 'node:stream';
import tar from 'tar-stream';

/**
 * Passes a tar stream through unchanged while parsing it, and fails at the end if it
 * was not a whole archive: the engine can end an archive response early without an error.
 */
export class TarChecker extends Transform {
  private readonly extract = tar.extract();
  private readonly parsed: Promise<void>;
  private entries = 0;

  constructor(private readonly what: string) {
    super();
    this.extract.on('entry', (_header, stream, next) => {
      this.entries++;
      stream.on('end', next);
      stream.on('error', () => undefined); // the archive's own error is reported once, below
      stream.resume();
    });
    this.parsed = new Promise((resolve, reject) => {
      this.extract.on('finish', resolve);
      this.extract.on('error', reject);
    });
    this.parsed.catch(() => undefined);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    if (this.extract.write(chunk)) done(null, chunk);
    else this.extract.once('drain', () => done(null, chunk));
  }

  override _flush(done: TransformCallback): void {
    (this.extract as unknown as { end(): void }).end();
    this.parsed.then(
      () => done(this.entries > 0 ? null : new Error(`${this.what}: the engine sent an empty archive`)),
      (err: Error) => done(new Error(`${this.what}: the engine's archive is not a whole tar (${err.message})`)),
    );
  }
}
