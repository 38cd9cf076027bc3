import { NotFoundError, type ContainerInspect, type Engine } from '../engine/engine.js';
import type { Journal, StopEntry } from '../snapshot/backup.js';
import { CancelledError } from './cancel.js';
import { errorMessage, type Logger } from './log.js';

export type { StopEntry };

/** What a backup has changed and not yet put back: containers it paused or stopped, images it committed. */
export interface PendingUndo {
  paused: string[];
  stopped: StopEntry[];
  tempImages: string[];
}

export function emptyUndo(): PendingUndo {
  return { paused: [], stopped: [], tempImages: [] };
}

/** A pending undo as saved by any version (older ones had no `stopped`, then only IDs in it). */
export function pendingFrom(p: Partial<Omit<PendingUndo, 'stopped'>> & { stopped?: Array<StopEntry | string> }): PendingUndo {
  const stopped = (p.stopped ?? []).map((s) => (typeof s === 'string' ? { id: s, startedAt: '', until: 0 } : s));
  return { paused: p.paused ?? [], stopped, tempImages: p.tempImages ?? [] };
}

export function parsePending(raw: string): PendingUndo {
  return pendingFrom(JSON.parse(raw) as Parameters<typeof pendingFrom>[0]);
}

export function hasPending(pending: PendingUndo): boolean {
  return pending.paused.length + pending.stopped.length + pending.tempImages.length > 0;
}

/** Keeps the pending undo current, calling `onChange` after every change (the action saves it as state). */
export class UndoJournal implements Journal {
  readonly pending: PendingUndo = emptyUndo();
  private readonly inFlight = new Set<Promise<unknown>>();

  constructor(private readonly onChange?: (pending: PendingUndo) => void) {}

  private update<E>(list: E[], key: (e: E) => string, entry: E, add: boolean): void {
    const at = list.findIndex((e) => key(e) === key(entry));
    if (add && at === -1) list.push(entry);
    if (!add && at !== -1) list.splice(at, 1);
    this.onChange?.(this.pending);
  }

  paused(id: string): void {
    this.update(this.pending.paused, String, id, true);
  }

  unpaused(id: string): void {
    this.update(this.pending.paused, String, id, false);
  }

  stopped(entry: StopEntry): void {
    this.update(this.pending.stopped, (e) => e.id, entry, true);
  }

  restarted(id: string): void {
    this.update(this.pending.stopped, (e) => e.id, { id, startedAt: '', until: 0 }, false);
  }

  tempImage(id: string): void {
    this.update(this.pending.tempImages, String, id, true);
  }

  tempImageRemoved(id: string): void {
    this.update(this.pending.tempImages, String, id, false);
  }

  /** After an undo: only what it could not put back stays pending. */
  keepOnly(left: PendingUndo): void {
    this.pending.paused.splice(0, Infinity, ...left.paused);
    this.pending.stopped.splice(0, Infinity, ...left.stopped);
    this.pending.tempImages.splice(0, Infinity, ...left.tempImages);
    this.onChange?.(this.pending);
  }

  track<T>(operation: Promise<T>): Promise<T> {
    const settled = operation.then(
      () => undefined,
      () => undefined,
    );
    this.inFlight.add(settled);
    void settled.then(() => this.inFlight.delete(settled));
    return operation;
  }

  /** Waits, at most `ms`, for tracked engine calls to finish (so that what they made can be undone). */
  async settle(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
    await Promise.race([Promise.all(this.inFlight), timeout]);
    clearTimeout(timer);
  }
}

const nameOf = (info: ContainerInspect) => info.Name.replace(/^\//, '');

/**
 * Starts again a container a backup stopped. One that still runs the same run (same start time)
 * may still be stopping: it is waited for until the entry's deadline, then started; one still
 * running then was never stopped. One running a newer run is already back.
 */
async function restartStopped(entry: StopEntry, engine: Engine, log: Logger): Promise<void> {
  let info = await engine.inspectContainer(entry.id);
  if (info.State.Running && entry.startedAt !== '' && info.State.StartedAt === entry.startedAt) {
    log.info(`Waiting for container ${nameOf(info)} to finish stopping, to start it again`);
    if (!(await engine.waitNotRunning(entry.id, entry.until - Date.now()))) return;
    info = await engine.inspectContainer(entry.id);
  }
  if (info.State.Running) return;
  await engine.start(entry.id);
  log.warning(`Started container ${nameOf(info)} again, left stopped by an interrupted backup`);
}

async function unpauseLeft(id: string, engine: Engine, log: Logger): Promise<void> {
  const info = await engine.inspectContainer(id);
  if (!info.State.Paused) return;
  await engine.unpause(id);
  log.warning(`Unpaused container ${nameOf(info)}, left paused by an interrupted backup`);
}

/**
 * Puts back what a backup left: starts what it stopped (after its stop has finished), unpauses
 * what it paused, removes the images it committed. An entry is done when the thing it names is
 * back as it was or gone; `left` holds the others, and `problems` says why each is left.
 */
export async function undo(pending: PendingUndo, engine: Engine, log: Logger): Promise<{ problems: string[]; left: PendingUndo }> {
  const problems: string[] = [];
  const left = emptyUndo();
  const attempt = async (what: string, fn: () => Promise<void>): Promise<boolean> => {
    try {
      await fn();
      return true;
    } catch (err) {
      if (err instanceof NotFoundError) {
        log.warning(`${what}, left by an interrupted backup, no longer exists: nothing to put back`);
        return true;
      }
      problems.push(`${what}: ${errorMessage(err)}`);
      return false;
    }
  };
  for (const e of pending.stopped) if (!(await attempt(`container ${e.id.slice(0, 12)}`, () => restartStopped(e, engine, log)))) left.stopped.push(e);
  for (const id of pending.paused) if (!(await attempt(`container ${id.slice(0, 12)}`, () => unpauseLeft(id, engine, log)))) left.paused.push(id);
  for (const ref of pending.tempImages) if (!(await attempt(`image ${ref}`, () => engine.removeImage(ref, { force: true })))) left.tempImages.push(ref);
  return { problems, left };
}

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
  const stuck = new Promise<PromiseSettledResult<T>>((resolve) => {
    signal.addEventListener('abort', () => {
      timer = setTimeout(() => {
        log.warning(`The backup did not stop within ${UNWIND_MS / 1000} s; undoing what it changed now`);
        resolve({ status: 'rejected', reason: signal.reason });
      }, UNWIND_MS);
    });
  });
  const settled = run.then(
    (value): PromiseSettledResult<T> => ({ status: 'fulfilled', value }),
    (reason: unknown): PromiseSettledResult<T> => ({ status: 'rejected', reason }),
  );
  return Promise.race([settled, stuck]).finally(() => clearTimeout(timer));
}

/**
 * Runs a backup as the one owner of its undo. A signal (or a crash) aborts `fn`'s signal; the
 * run stops (each engine and destination call refuses or is cut), and once it has settled the
 * undo runs, once, over what the journal still holds; then the process exits 130/143 (1 on a
 * crash). Without a signal, the undo still runs over anything a failure left. The journal file
 * is removed once nothing is left to undo.
 */
export async function guarded<T>(handle: { journal: UndoJournal; close(): void }, engine: Engine, log: Logger, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
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
