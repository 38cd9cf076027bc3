import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

/**
 * Digests as the OCI image spec writes them (image-spec descriptor.md, "Digests":
 * `algorithm ":" encoded`). Only sha256 is produced or accepted here, encoded as 64 lowercase
 * hex characters, the form the spec requires for that algorithm.
 */
export const SHA256_DIGEST = /^sha256:([0-9a-f]{64})$/;

/** The rule in words, for error messages. */
export const DIGEST_RULE = 'sha256:<64 lowercase hex characters>';

/** True when `value` is a sha256 digest in the spec's form. */
export function isDigest(value: unknown): value is string {
  return typeof value === 'string' && SHA256_DIGEST.test(value);
}

/** The 64 hex characters of a sha256 digest (the name of its blob in an OCI layout). Throws a TypeError on anything else. */
export function hexOf(digest: string): string {
  const m = SHA256_DIGEST.exec(digest);
  if (!m) throw new TypeError(`not a digest: '${digest}' (expected ${DIGEST_RULE})`);
  return m[1];
}

/** The sha256 digest of `data` (bytes, or a string as UTF-8). */
export function sha256Digest(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** Passes bytes through while counting them (`bytes`) and computing their sha256 (`digest`, read after the end). */
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

/** Bytes whose digest or size is not the one their descriptor records. */
export class ChecksumError extends Error {
  override name = 'ChecksumError';
}

/** What a Verifier checks: the digest, and the size in bytes when it is known. */
export interface Expected {
  digest: string;
  size?: number;
}

/** Bytes a Verifier keeps back until the digest is checked: more than a tar archive's end (two 512-byte blocks). */
export const VERIFIER_HOLD_BYTES = 64 * 1024;

/**
 * Passes bytes through and fails the stream when they do not have the expected digest (and
 * size, when given): at the end, or as soon as more bytes than `size` went through. The error
 * is a ChecksumError naming `what`, or the one `mismatch` makes from the digest found.
 *
 * The last VERIFIER_HOLD_BYTES (at least) are passed on only once the digest matches, so a
 * reader that acts on a complete stream (the engine extracting a tar archive, `docker load`)
 * never sees one whose digest is wrong: the stream it reads fails before its end.
 */
export class Verifier extends Transform {
  private readonly hash: Hash = createHash('sha256');
  private bytes = 0;
  private readonly held: Buffer[] = [];
  private heldBytes = 0;

  constructor(
    private readonly expected: Expected,
    private readonly what: string,
    private readonly mismatch?: (found: string) => Error,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    const { size } = this.expected;
    if (size !== undefined && this.bytes > size) {
      done(new ChecksumError(`${this.what}: more than the ${size} bytes recorded`));
      return;
    }
    this.held.push(chunk);
    this.heldBytes += chunk.length;
    while (this.held.length > 1 && this.heldBytes - this.held[0].length >= VERIFIER_HOLD_BYTES) {
      const first = this.held.shift()!;
      this.heldBytes -= first.length;
      this.push(first);
    }
    done();
  }

  override _flush(done: TransformCallback): void {
    const digest = `sha256:${this.hash.digest('hex')}`;
    const { size } = this.expected;
    if (digest === this.expected.digest && (size === undefined || this.bytes === size)) {
      for (const chunk of this.held.splice(0)) this.push(chunk);
      done();
      return;
    }
    if (this.mismatch) {
      done(this.mismatch(digest));
      return;
    }
    const recorded = size === undefined ? this.expected.digest : `${this.expected.digest}, ${size} bytes`;
    done(new ChecksumError(`${this.what}: checksum mismatch (expected ${recorded}; found ${digest}, ${this.bytes} bytes)`));
  }
}
