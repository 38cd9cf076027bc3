import type { Readable } from 'node:stream';

/**
 * A live stream of one container's events (`GET /events`, filters `container`, `type` and `event`:
 * Engine API 1.24 and later, so 1.41 and 1.45 alike), opened by `ContainerCalls.watchContainer`.
 * It sees only what happens once the engine has subscribed it, a moment after it answers: its
 * events carry the engine's clock, never compared here with this host's.
 */
export interface ContainerWatch {
  /** True once the engine streams the events; false when the stream could not be opened (never rejects). */
  readonly ready: Promise<boolean>;
  /** The events' actions received so far (`start`, `pause`, `die`, …), in the order the engine sent them. */
  readonly actions: readonly string[];
  /**
   * True when the stream was opened and has neither failed nor ended before `close()`: `actions`
   * then holds every watched event up to what the engine has sent (it may lag a few ms behind).
   */
  readonly intact: boolean;
  /**
   * Resolves true once an event of `action` has been received (at once when it has), false after
   * `timeoutMs` or when the stream fails or closes first. Events arrive in the engine's order, so
   * once it is seen, so is every event before it: a barrier for a stream that lags.
   */
  seen(action: string, timeoutMs: number): Promise<boolean>;
  /** Ends the stream and its connection, whether or not it has opened yet; idempotent. */
  close(): void;
}

/** How long the engine may take to answer the stream's request before the watch gives up (ms). */
export const WATCH_OPEN_TIMEOUT_MS = 5_000;

/**
 * A watch over the response stream `open` resolves to; `abort` cancels the request and
 * destroys its response (docker-modem's abortSignal). Lines of JSON, one event each; a line that
 * does not parse, a stream error or an end before `close()` makes it not intact.
 */
export function watchOf(open: Promise<Readable>, abort: AbortController): ContainerWatch {
  const actions: string[] = [];
  let closed = false;
  let opened = false;
  let failed = false;
  let rest = '';
  // Whoever waits in `seen`: called after each change (an event, a failure, the close).
  const waiters = new Set<() => void>();
  const changed = () => waiters.forEach((w) => w());
  const timer = setTimeout(() => abort.abort(), WATCH_OPEN_TIMEOUT_MS);
  timer.unref();
  const ready = open.then(
    (stream) => {
      clearTimeout(timer);
      if (closed) {
        stream.destroy();
        return false;
      }
      opened = true;
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => {
        const lines = (rest + chunk).split('\n');
        rest = lines.pop() ?? '';
        for (const line of lines.filter((l) => l.trim())) {
          try {
            const event = JSON.parse(line) as { Action?: string; status?: string };
            actions.push(event.Action ?? event.status ?? '');
          } catch {
            failed = true;
          }
        }
        changed();
      });
      const ended = () => {
        failed ||= !closed;
        changed();
      };
      stream.on('error', ended);
      stream.on('end', ended);
      abort.signal.addEventListener('abort', () => stream.destroy(), { once: true });
      return true;
    },
    () => {
      clearTimeout(timer);
      failed = true;
      changed();
      return false;
    },
  );
  return {
    ready,
    actions,
    get intact() {
      return opened && !failed;
    },
    seen(action, timeoutMs) {
      return new Promise<boolean>((resolve) => {
        const check = () => {
          const done = actions.includes(action) ? true : closed || failed ? false : undefined;
          if (done === undefined) return;
          clearTimeout(deadline);
          waiters.delete(check);
          resolve(done);
        };
        const deadline = setTimeout(() => {
          waiters.delete(check);
          resolve(actions.includes(action));
        }, timeoutMs);
        deadline.unref();
        waiters.add(check);
        check();
      });
    },
    close() {
      if (closed) return;
      closed = true;
      clearTimeout(timer);
      abort.abort();
      changed();
    },
  };
}

/** A watch that sees nothing (not ready, not intact): what an engine that is not watched gives. */
export function unwatched(): ContainerWatch {
  return { ready: Promise.resolve(false), actions: [], intact: false, seen: () => Promise.resolve(false), close: () => undefined };
}
