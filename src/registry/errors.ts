/** A registry call that failed: `status` is the HTTP status, `code` the registry's error code or the socket's errno code. */
export class RegistryError extends Error {
  override name = 'RegistryError';
  status?: number;
  code?: string;

  constructor(message: string, details: { status?: number; code?: string; cause?: unknown } = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.status = details.status;
    this.code = details.code;
  }
}

export class RegistryAuthError extends RegistryError {
  override name = 'RegistryAuthError';
}

/** Content whose sha256 is not the digest it was asked for by, or that the registry named for it. */
export class DigestMismatchError extends RegistryError {
  override name = 'DigestMismatchError';
  constructor(
    message: string,
    readonly expected: string,
  ) {
    super(message);
  }
}

const TRANSIENT_STATUS = new Set([429, 500, 502, 503, 504]);
// Not ETIMEDOUT: the idle timeout is long already, and a retry would multiply it.
const TRANSIENT_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ECONNABORTED', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH']);

/** Server errors, rate limits and dropped connections may pass; other 4xx will not. */
export function isTransient(err: unknown): boolean {
  if (!(err instanceof RegistryError) || err instanceof RegistryAuthError) return false;
  if (err.status !== undefined) return TRANSIENT_STATUS.has(err.status);
  return err.code !== undefined && TRANSIENT_CODES.has(err.code);
}
