import type { IncomingMessage } from 'node:http';
import { PassThrough, type Writable } from 'node:stream';
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
