import { createHash, type Hash } from 'node:crypto';
import { Transform, Writable, type Readable, type TransformCallback } from 'node:stream';

/** Passes bytes through while counting them and computing their sha256. */
export class Digester extends Transform {
  private readonly hash: Hash = createHash('sha256');
  bytes = 0;
  private result?: string;

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    done(null, chunk);
  }

  get digest(): string {
    this.result ??= `sha256:${this.hash.digest('hex')}`;
    return this.result;
  }
}

/** Fails the stream when the bytes that went through don't have the expected digest and size. */
export class Verifier extends Transform {
  private readonly hash: Hash = createHash('sha256');
  private bytes = 0;

  constructor(
    private readonly expected: { digest: string; size: number },
    private readonly what: string,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    if (this.bytes > this.expected.size) {
      done(new ChecksumError(`${this.what}: more than the ${this.expected.size} bytes recorded`));
      return;
    }
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    const digest = `sha256:${this.hash.digest('hex')}`;
    if (digest !== this.expected.digest || this.bytes !== this.expected.size) {
      done(new ChecksumError(`${this.what}: checksum mismatch (expected ${this.expected.digest}, ${this.expected.size} bytes; found ${digest}, ${this.bytes} bytes)`));
      return;
    }
    done();
  }
}

export class ChecksumError extends Error {
  override name = 'ChecksumError';
}

/** Resolves when `target` drains; rejects if it fails or closes first. */
function drained(target: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      target.off('drain', onDrain).off('error', onError).off('close', onClose);
      if (err) reject(err);
      else resolve();
    };
    const onDrain = () => done();
    const onError = (err: Error) => done(err);
    const onClose = () => done(new Error('a destination stream closed before its data was written'));
    target.on('drain', onDrain).on('error', onError).on('close', onClose);
  });
}

/**
 * One writable that forwards every chunk to several, honouring the slowest one's
 * backpressure; the first target to fail fails the whole write.
 */
export function fanOut(targets: Writable[]): Writable {
  if (targets.length === 1) return targets[0];
  const fan: Writable = new Writable({
    async write(chunk: Buffer, _enc, done) {
      try {
        await Promise.all(targets.filter((t) => !t.write(chunk)).map(drained));
        done();
      } catch (err) {
        done(err as Error);
      }
    },
    final(done) {
      const ends = targets.map((t) => new Promise<void>((resolve, reject) => {
        t.once('error', reject);
        t.end((err?: Error | null) => (err ? reject(err) : resolve()));
      }));
      Promise.all(ends).then(() => done(), done);
    },
    destroy(err, done) {
      // Only a failure stops the targets: after a normal end, a target may still hold bytes its reader has not taken.
      if (err) for (const t of targets) if (!t.destroyed) t.destroy(err);
      done(err);
    },
  });
  for (const t of targets) t.on('error', (err) => fan.destroy(err));
  return fan;
}

/** Reads a small stream whole (manifests, configs); refuses more than `limit` bytes. */
export async function readSmall(stream: Readable, limit = 64 * 1024 * 1024): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > limit) {
      stream.destroy();
      throw new Error(`refusing to buffer more than ${limit} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Consumes a stream, discarding its bytes. */
export async function drain(stream: Readable): Promise<void> {
  for await (const _ of stream) {
    // discard
  }
}
