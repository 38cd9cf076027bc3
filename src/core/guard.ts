import type { Engine } from '../engine/engine.js';
import { CancelledError } from './cancel.js';
import { errorMessage, type Logger } from './log.js';
import { hasPending, undo, type UndoJournal } from './undo.js';

/** How long a cancelled backup has to stop its pipeline before its undo runs regardless. */
const UNWIND_MS = 30_000;

interface Cancellation {
  signal: AbortSignal;
  /** The exit status a signal or crash asks for; undefined while none came. */
  exitCode(): number | undefined;
  release(): void;
}

/** Turns SIGINT, SIGTERM and an uncaught exception into one abort of the run; later ones are only logged. */
function cancelOnSignals(log: Logger): Cancellation {
  const controller = new AbortController();
  let code: number | undefined;
  const cancel = (exitCode: number, why: string) => {
    if (code !== undefined) {
      log.warning(`${why} again: still putting back what this backup changed`);
      return;
    }
    code = exitCode;
    log.error(`${why}: stopping the backup, then undoing what it changed`);
    controller.abort(new CancelledError(`cancelled (${why})`));
  };
  const onSignal = (signal: NodeJS.Signals) => cancel(signal === 'SIGINT' ? 130 : 143, `Received ${signal}`);
  const crash = (err: Error) => cancel(1, `Unexpected error: ${err.message}`);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('uncaughtException', crash);
  return {
    signal: controller.signal,
    exitCode: () => code,
    release: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      process.off('uncaughtException', crash);
    },
  };
}

/** The run's outcome once it has settled, or, once cancelled, after UNWIND_MS at most. */
function settledOrStuck<T>(run: Promise<T>, signal: AbortSignal, log: Logger): Promise<PromiseSettledResult<T>> {
  let timer: NodeJS.Timeout | undefined;
  let onAbort = () => undefined as void;
  const stuck = new Promise<PromiseSettledResult<T>>((resolve) => {
    onAbort = () => {
      timer = setTimeout(() => {
        log.warning(`The backup did not stop within ${UNWIND_MS / 1000} s; undoing what it changed now`);
        resolve({ status: 'rejected', reason: signal.reason });
      }, UNWIND_MS);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
  const settled = run.then(
    (value): PromiseSettledResult<T> => ({ status: 'fulfilled', value }),
    (reason: unknown): PromiseSettledResult<T> => ({ status: 'rejected', reason }),
  );
  return Promise.race([settled, stuck]).finally(() => {
    signal.removeEventListener('abort', onAbort);
    clearTimeout(timer);
  });
}

/**
 * Runs a backup as the one owner of its undo. A signal (or a crash) aborts `fn`'s signal; the
 * run stops (each engine and destination call refuses or is cut), and once it has settled the
 * undo runs, once, over what the journal still holds; then the process exits 130/143 (1 on a
 * crash). Without a signal, the undo still runs over anything a failure left. The journal file
 * is removed once nothing is left to undo.
 */
export async function guarded<T>(
  handle: { journal: UndoJournal; close(): void },
  engine: Engine,
  log: Logger,
  fn: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const cancellation = cancelOnSignals(log);
  let result: PromiseSettledResult<T>;
  try {
    result = await settledOrStuck(fn(cancellation.signal), cancellation.signal, log);
    const { journal } = handle;
    if (hasPending(journal.pending)) {
      // Only after a run given up as stuck can a commit still be in flight.
      await journal.settle(60_000);
      const { problems, left } = await undo(journal.pending, engine, log).catch((err: unknown) => ({ problems: [errorMessage(err)], left: journal.pending }));
      journal.keepOnly(left);
      for (const p of problems) log.error(`Could not undo: ${p}`);
    }
    if (!hasPending(journal.pending)) handle.close();
  } finally {
    cancellation.release();
  }
  const code = cancellation.exitCode();
  if (code !== undefined) process.exit(code);
  if (result.status === 'rejected') throw result.reason;
  return result.value;
}
