import type { Engine } from '../engine/engine.js';
import type { Journal } from '../snapshot/backup.js';
import { errorMessage, type Logger } from './log.js';

/** What a backup has changed and not yet put back: containers it paused or stopped, images it committed. */
export interface PendingUndo {
  paused: string[];
  stopped: string[];
  tempImages: string[];
}

export function emptyUndo(): PendingUndo {
  return { paused: [], stopped: [], tempImages: [] };
}

/** A pending undo as saved by any version (older ones had no `stopped`). */
export function pendingFrom(p: Partial<PendingUndo>): PendingUndo {
  return { paused: p.paused ?? [], stopped: p.stopped ?? [], tempImages: p.tempImages ?? [] };
}

export function parsePending(raw: string): PendingUndo {
  return pendingFrom(JSON.parse(raw) as Partial<PendingUndo>);
}

/** Keeps the pending undo current, calling `onChange` after every change (the action saves it as state). */
export class UndoJournal implements Journal {
  readonly pending: PendingUndo = emptyUndo();
  private readonly inFlight = new Set<Promise<unknown>>();

  constructor(private readonly onChange?: (pending: PendingUndo) => void) {}

  private update(list: string[], id: string, add: boolean): void {
    const at = list.indexOf(id);
    if (add && at === -1) list.push(id);
    if (!add && at !== -1) list.splice(at, 1);
    this.onChange?.(this.pending);
  }

  paused(id: string): void {
    this.update(this.pending.paused, id, true);
  }

  unpaused(id: string): void {
    this.update(this.pending.paused, id, false);
  }

  stopped(id: string): void {
    this.update(this.pending.stopped, id, true);
  }

  restarted(id: string): void {
    this.update(this.pending.stopped, id, false);
  }

  tempImage(id: string): void {
    this.update(this.pending.tempImages, id, true);
  }

  tempImageRemoved(id: string): void {
    this.update(this.pending.tempImages, id, false);
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

/** Unpauses what a backup paused, starts what it stopped, removes the images it committed; returns what could not be undone. */
export async function undo(pending: PendingUndo, engine: Engine, log: Logger): Promise<string[]> {
  const problems: string[] = [];
  for (const id of pending.stopped) {
    try {
      const info = await engine.inspectContainer(id);
      if (!info.State.Running) {
        await engine.start(id);
        log.warning(`Started container ${info.Name.replace(/^\//, '')} again, left stopped by an interrupted backup`);
      }
    } catch (err) {
      problems.push(`container ${id}: ${errorMessage(err)}`);
    }
  }
  for (const id of pending.paused) {
    try {
      const info = await engine.inspectContainer(id);
      if (info.State.Paused) {
        await engine.unpause(id);
        log.warning(`Unpaused container ${info.Name.replace(/^\//, '')}, left paused by an interrupted backup`);
      }
    } catch (err) {
      problems.push(`container ${id}: ${errorMessage(err)}`);
    }
  }
  for (const id of pending.tempImages) {
    await engine.removeImage(id, { force: true }).catch((err: unknown) => problems.push(`image ${id}: ${errorMessage(err)}`));
  }
  return problems;
}

export function hasPending(pending: PendingUndo): boolean {
  return pending.paused.length + pending.stopped.length + pending.tempImages.length > 0;
}

/**
 * Runs a backup with its journal guarded: signals and crashes undo what it changed, and the
 * journal file is removed once nothing is left to undo.
 */
export async function guarded<T>(handle: { journal: UndoJournal; close(): void }, engine: Engine, log: Logger, fn: () => Promise<T>): Promise<T> {
  const release = undoOnSignals(handle.journal, engine, log, handle.close);
  try {
    return await fn();
  } finally {
    release();
    if (!hasPending(handle.journal.pending)) handle.close();
  }
}

/**
 * On SIGINT or SIGTERM, undoes what is pending before the process exits, so a cancelled
 * run never leaves a container paused. Returns a function that removes the handlers.
 */
export function undoOnSignals(journal: UndoJournal, engine: Engine, log: Logger, undone: () => void = () => undefined): () => void {
  const undoThenExit = (code: number) =>
    journal
      .settle(60_000)
      .then(() => undo(journal.pending, engine, log))
      .then((problems) => {
        for (const p of problems) log.error(`Could not undo: ${p}`);
        if (problems.length === 0) undone();
      })
      .finally(() => process.exit(code));
  const handler = (signal: NodeJS.Signals) => {
    log.error(`Received ${signal}: undoing what this backup changed`);
    void undoThenExit(signal === 'SIGINT' ? 130 : 143);
  };
  const crash = (err: Error) => {
    log.error(`Unexpected error: ${err.message}; undoing what this backup changed`);
    void undoThenExit(1);
  };
  process.once('SIGINT', handler);
  process.once('SIGTERM', handler);
  process.once('uncaughtException', crash);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
    process.off('uncaughtException', crash);
  };
}
