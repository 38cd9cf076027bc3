/**
 * What a backup records before each change it makes to a container or the engine, so that an
 * interrupted run can be undone: by the same process, by the action's post step, or by the next
 * run on the host (core/recovery.ts). The contract between the backup and its undo.
 */

/**
 * A container about to be stopped: its start time before the stop (a later one means it is back)
 * and, in ms since the epoch, when its stop will have finished (its stop timeout, and a margin).
 */
export interface StopEntry {
  id: string;
  startedAt: string;
  until: number;
}

/** Records what must be undone if the process dies mid-way (the action's post step reads it), before each change. */
export interface Journal {
  paused(containerId: string): void;
  unpaused(containerId: string): void;
  stopped(entry: StopEntry): void;
  restarted(containerId: string): void;
  tempImage(ref: string): void;
  tempImageRemoved(ref: string): void;
  /** An engine call whose effect must be known before undoing (a commit in flight). */
  track<T>(operation: Promise<T>): Promise<T>;
}
