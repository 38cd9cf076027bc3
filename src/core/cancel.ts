import type { BlobWriter, Destination } from '../destinations/types.js';

/** The reason a cancelled backup's signal carries: the run stops, then puts back what it changed. */
export class CancelledError extends Error {
  override name = 'CancelledError';
}

function cancellableWriter(writer: BlobWriter, signal: AbortSignal): BlobWriter {
  const onAbort = () => writer.stream.destroy(signal.reason as Error);
  signal.addEventListener('abort', onAbort, { once: true });
  const done = () => signal.removeEventListener('abort', onAbort);
  return {
    stream: writer.stream,
    commit: async (digest, size) => {
      try {
        signal.throwIfAborted();
        await writer.commit(digest, size);
      } finally {
        done();
      }
    },
    abort: async () => {
      done();
      await writer.abort();
    },
  };
}

/**
 * The destination, refusing every call once `signal` aborts and cutting a blob upload in
 * progress (its stream is destroyed with the signal's reason). `discard` and `close` are cleanup: never refused.
 */
export function cancellable(dest: Destination, signal: AbortSignal): Destination {
  return new Proxy(dest, {
    get(target, prop, receiver) {
      const value: unknown = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function' || prop === 'discard' || prop === 'close') return value;
      const method = value as (...args: unknown[]) => Promise<unknown>;
      return async (...args: unknown[]) => {
        signal.throwIfAborted();
        const result = await method.apply(target, args);
        return prop === 'writeBlob' ? cancellableWriter(result as BlobWriter, signal) : result;
      };
    },
  });
}
