import { createHash, type Hash } from 'node:crypto';
import { Transform, Writable, type Readable, type TransformCallback } from 'node:stream';
import { once } from 'node:events';

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

/** One writable that forwards every chunk to several, honouring the slowest one's backpressure. */
export function fanOut(targets: Writable[]): Writable {
  if (targets.length === 1) return targets[0];
  return new Writable({
    async write(chunk: Buffer, _enc, done) {
      try {
        const waits = targets.filter((t) => !t.write(chunk)).map((t) => once(t, 'drain'));
        await Promise.all(waits);
        done();
      } catch (err) {
        done(err as Error);
      }
    },
    final(done) {
      Promise.all(targets.map((t) => new Promise<void>((resolve, reject) => {
        t.once('error', reject);
        t.end(() => resolve());
      }))).then(() => done(), done);
    },
    destroy(err, done) {
      for (const t of targets) t.destroy(err ?? undefined);
      done(err);
    },
  });
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
