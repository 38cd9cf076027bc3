import type { IncomingMessage } from 'node:http';
import { PassThrough, Writable } from 'node:stream';
import { DIGEST_RULE, isDigest } from '../oci/digest.js';
import { RegistryError } from './errors.js';
import type { Pending } from './http.js';

/** A blob upload in progress (distribution spec, "Pushing a blob in chunks"): write `stream`, then finish with the digest, or cancel. */
export interface BlobUpload {
  readonly stream: Writable;
  finish(digest: string): Promise<void>;
  cancel(): Promise<void>;
}

export interface UploadSteps {
  rejection(res: IncomingMessage): Promise<RegistryError | undefined>;
  commit(location: URL, digest: string): Promise<void>;
  discard(): Promise<void>;
}

/** One chunked PATCH whose request body is `stream`; the PUT with the digest follows in finish(). */
export class StreamingUpload implements BlobUpload {
  readonly stream = new PassThrough();
  private readonly patched: Promise<URL>;
  private finishing?: Promise<void>;
  private settled = false;

  constructor(
    private readonly pending: Pending,
    private readonly location: URL,
    private readonly steps: UploadSteps,
  ) {
    this.stream.pipe(pending.req);
    this.stream.on('close', () => {
      if (this.stream.writableFinished) return;
      const reason = this.stream.errored?.message ?? 'the stream was closed before it ended';
      pending.req.destroy(new RegistryError(`Blob upload to ${location.host} was aborted: ${reason}`));
    });
    this.patched = this.patchOutcome();
    this.patched.catch(() => undefined);
  }

  finish(digest: string): Promise<void> {
    this.finishing ??= this.complete(digest);
    return this.finishing;
  }

  async cancel(): Promise<void> {
    if (this.settled) return;
    this.settled = true;
    this.pending.req.destroy();
    this.stream.destroy();
    await this.steps.discard().catch(() => undefined);
  }

  private async complete(digest: string): Promise<void> {
    if (!isDigest(digest)) throw new RegistryError(`Invalid digest "${digest}": expected ${DIGEST_RULE}`);
    if (!this.stream.writableEnded && !this.stream.destroyed) this.stream.end();
    const next = await this.patched;
    await this.steps.commit(next, digest);
    this.settled = true;
  }

  private async patchOutcome(): Promise<URL> {
    const res = await this.pending.response.catch((err: Error) => {
      this.stream.destroy(err);
      throw err;
    });
    const failure = await this.steps.rejection(res);
    if (failure) {
      this.stream.destroy(failure);
      this.pending.req.destroy();
      throw failure;
    }
    res.resume();
    return res.headers.location ? new URL(res.headers.location, this.location) : this.location;
  }
}

/** Bytes an upload holds before it starts streaming them in a PATCH; a blob no larger goes in the PUT that completes it. */
export const WHOLE_UPLOAD_MAX = 4 << 20;

/** What a BufferedUpload asks of the client: the PATCH that streams (opened once the blob outgrows the buffer), the PUT of a whole blob, the cancel. */
export interface BufferedSteps {
  streaming(): Promise<StreamingUpload>;
  /** PUT <location>?digest=… with the whole blob as its body (distribution spec, "Pushing a blob monolithically", POST then PUT). */
  whole(body: Buffer, digest: string): Promise<void>;
  discard(): Promise<void>;
}

/**
 * An upload that holds what is written until it passes `limit` bytes: a blob no larger is sent
 * whole with the PUT that completes it (one round trip fewer than POST, PATCH, PUT; and, its body
 * in memory, retried like any other request); a larger one is streamed in one PATCH as it comes
 * (StreamingUpload), what was held first.
 */
export class BufferedUpload implements BlobUpload {
  readonly stream: Writable;
  private held: Buffer[] = [];
  private heldBytes = 0;
  private inner?: StreamingUpload;
  private finishing?: Promise<void>;
  private settled = false;

  constructor(
    private readonly steps: BufferedSteps,
    private readonly limit = WHOLE_UPLOAD_MAX,
  ) {
    this.stream = new Writable({
      write: (chunk: Buffer, _enc, done) => {
        this.take(chunk).then(() => done(), done);
      },
      final: (done) => {
        this.inner?.stream.end();
        done();
      },
    });
    this.stream.on('close', () => {
      if (!this.stream.writableFinished) this.inner?.stream.destroy(this.stream.errored ?? undefined);
    });
  }

  private async take(chunk: Buffer): Promise<void> {
    if (!this.inner && this.heldBytes + chunk.length <= this.limit) {
      this.held.push(chunk);
      this.heldBytes += chunk.length;
      return;
    }
    if (!this.inner) {
      const inner = await this.steps.streaming();
      this.inner = inner;
      inner.stream.on('error', (err) => this.stream.destroy(err));
      for (const b of this.held) inner.stream.write(b);
      this.held = [];
    }
    if (!this.inner.stream.write(chunk)) await drained(this.inner.stream);
  }

  finish(digest: string): Promise<void> {
    this.finishing ??= this.complete(digest);
    return this.finishing;
  }

  async cancel(): Promise<void> {
    if (this.settled) return;
    this.settled = true;
    this.stream.destroy();
    if (this.inner) return this.inner.cancel();
    await this.steps.discard().catch(() => undefined);
  }

  private async complete(digest: string): Promise<void> {
    if (!isDigest(digest)) throw new RegistryError(`Invalid digest "${digest}": expected ${DIGEST_RULE}`);
    if (!this.stream.writableFinished) {
      const ended = new Promise<void>((resolve, reject) => {
        this.stream.once('finish', resolve);
        this.stream.once('error', reject);
      });
      if (!this.stream.writableEnded) this.stream.end();
      await ended;
    }
    if (this.inner) await this.inner.finish(digest);
    else await this.steps.whole(Buffer.concat(this.held, this.heldBytes), digest);
    this.held = [];
    this.settled = true;
  }
}

/** Resolves on the stream's 'drain'; rejects on its error, or when it closes first. */
function drained(stream: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    const settle = (err?: Error) => {
      stream.off('drain', ok);
      stream.off('error', settle);
      stream.off('close', closed);
      if (err) reject(err);
      else resolve();
    };
    const ok = () => settle();
    const closed = () => settle(new RegistryError('the blob upload was closed while it was written'));
    stream.on('drain', ok);
    stream.on('error', settle);
    stream.on('close', closed);
  });
}
