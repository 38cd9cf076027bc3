import type { Readable } from 'node:stream';
import { EngineError, NotFoundError, ConflictError, UnreachableError } from './errors.js';

/** What docker-modem 5 rejects with: the HTTP status and the engine's JSON body, or a socket error's code. */
interface ModemError extends Error {
  statusCode?: number;
  json?: { message?: string } | string | null;
  code?: string;
}

function engineMessage(err: ModemError): string {
  if (err.json && typeof err.json === 'object' && err.json.message) return err.json.message;
  if (typeof err.json === 'string' && err.json.trim()) return err.json.trim();
  return err.message.replace(/^\(HTTP code \d+\)\s*/, '');
}

function translate(err: unknown, what: string): Error {
  const e = err as ModemError;
  if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED' || e.code === 'EACCES') {
    return new UnreachableError(`Docker engine unreachable (${e.code}) while trying to ${what}: ${e.message}`);
  }
  const message = `${what}: ${engineMessage(e)}`;
  if (e.statusCode === 404) return new NotFoundError(message);
  if (e.statusCode === 409) return new ConflictError(message);
  return new EngineError(message, e.statusCode);
}

/**
 * Runs one engine call. With a signal, the call is refused once it is aborted and given up (its
 * reason thrown) when it aborts mid-way; calls that change a container's state take no signal.
 * A failure is thrown as "`what`: the engine's message": UnreachableError when the engine cannot
 * be reached (ENOENT, ECONNREFUSED, EACCES), NotFoundError for HTTP 404, ConflictError for 409,
 * EngineError (with `statusCode`) otherwise.
 */
export async function call<T>(what: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  signal?.throwIfAborted();
  try {
    return await (signal ? untilAborted(fn(), signal) : fn());
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    throw translate(err, what);
  }
}

function untilAborted<T>(operation: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    operation.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/**
 * A response stream, closed if it arrives once the call was given up: an archive nobody reads
 * keeps the container locked in the engine (then it can be neither unpaused nor removed).
 */
export function closedIfAborted<S extends Readable>(response: Promise<S>, signal?: AbortSignal): Promise<S> {
  if (signal)
    void response.then(
      (stream) => signal.aborted && stream.destroy(),
      () => undefined,
    );
  return response;
}

/** Destroys a response stream when the signal aborts (or has), so whatever reads it fails at once. */
export function endOnAbort<S extends Readable>(stream: S, signal?: AbortSignal): S {
  if (!signal) return stream;
  if (signal.aborted) {
    stream.destroy(signal.reason as Error);
    return stream;
  }
  const onAbort = () => stream.destroy(signal.reason as Error);
  signal.addEventListener('abort', onAbort, { once: true });
  stream.once('close', () => signal.removeEventListener('abort', onAbort));
  return stream;
}

/** The value, or undefined where the engine answers that the object does not exist (NotFoundError); other errors are thrown. */
export async function unlessMissing<T>(operation: Promise<T>): Promise<T | undefined> {
  try {
    return await operation;
  } catch (err) {
    if (err instanceof NotFoundError) return undefined;
    throw err;
  }
}
