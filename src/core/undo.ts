import type { ContainerInspect } from '../engine/containers.js';
import type { Engine } from '../engine/engine.js';
import { NotFoundError } from '../engine/errors.js';
import type { Journal, StopEntry } from './journal.js';
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
