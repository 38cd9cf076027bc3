/**
 * The record of a restore's uncommitted changes (what each target changed, saved before each change)
 * and the transaction that keeps it and stops a cancelled restore at its next step. Putting the
 * changes back is restore-rollback.ts.
 */
import type { Readable } from 'node:stream';
import type { FilledHostPath, ReplacedHostPath } from './host-path-aside.js';
import type { ContainerSpec } from './spec.js';

/** An old container a restore with `replace` moved aside: stopped and renamed, kept until its replacement runs. */
export interface AsideRecord {
  id: string;
  /** The name it is kept under meanwhile. */
  asideName: string;
  wasRunning: boolean;
  wasPaused: boolean;
  /**
   * Set when the old container had to be removed (it used a volume being replaced): its writable
   * layer committed as `image`, its configuration, and the anonymous volumes it had (kept).
   */
  removed?: { image: string; spec: ContainerSpec; anonymous: Array<{ destination: string; volume: string }> };
}

/** A volume that existed before the restore and is being emptied and refilled. */
export interface ReplacedVolume {
  name: string;
  /** A volume holding the old content, or undefined when the old volume was empty. */
  aside?: string;
  /** False while the old content is still being copied aside (the volume itself is untouched then). */
  kept: boolean;
  /**
   * False until the volume is about to be removed and created again: until then it still holds its
   * old content (and may still be in use by the old container), so a rollback only drops the copy.
   */
  emptied?: boolean;
  driver?: string;
  driverOpts?: Record<string, string>;
  labels?: Record<string, string>;
}

/** What one container's restore changed and has not committed: enough to put everything back. */
export interface TargetPending {
  /** The name the container is restored under. */
  target: string;
  /** A local image helpers can use while putting things back (the snapshot's, loaded). */
  image?: string;
  aside?: AsideRecord;
  /** Set once the new container may exist under `target`. */
  creating: boolean;
  /** The new container's ID, once created. */
  created?: string;
  createdVolumes: string[];
  /**
   * Networks this restore created for the container (recorded before each is created; its ID once
   * it is). Absent in journals of older versions.
   */
  createdNetworks?: CreatedNetwork[];
  replaced: ReplacedVolume[];
  /**
   * Bind-mounted host paths moved aside to be filled anew (recorded before each rename). Absent
   * in journals of older versions.
   */
  replacedPaths?: ReplacedHostPath[];
  /**
   * Bind-mounted host paths filled where they were missing or empty (recorded before each fill,
   * where this host sees them): a rollback empties or removes them again. Absent in journals of
   * older versions.
   */
  filledPaths?: FilledHostPath[];
}

/** A network a restore created: its name, and its ID once the engine made it. */
export interface CreatedNetwork {
  name: string;
  id?: string;
}

/** Whether `e` still has a change to put back (or to commit). */
export function hasChanges(e: TargetPending): boolean {
  return (
    e.creating ||
    e.replaced.length > 0 ||
    e.createdVolumes.length > 0 ||
    (e.createdNetworks?.length ?? 0) > 0 ||
    (e.replacedPaths?.length ?? 0) > 0 ||
    (e.filledPaths?.length ?? 0) > 0 ||
    e.aside !== undefined
  );
}

/** The whole of a restore's pending changes, saved after each change (step state and a journal file). */
export interface RestorePending {
  /** This run's label value: its helpers and aside volumes carry it. */
  run: string;
  /** Any local image, for helpers during a rollback. */
  helperImage?: string;
  targets: TargetPending[];
  /**
   * What committed restores still have to remove (recorded with the commit, before any removal):
   * a run killed meanwhile is finished by the next, never rolled back. Absent when there is none,
   * and in journals of older versions.
   */
  leftovers?: Leftovers;
}

/**
 * What a committed restore removes: the old container kept aside (by ID), the image an old
 * container removed to free a volume was committed to, the copies aside of replaced volumes and
 * that container's anonymous volumes (by name), and the siblings holding replaced host paths' old
 * content (absolute paths on this host; absent in journals of older versions).
 */
export interface Leftovers {
  containers: string[];
  images: string[];
  volumes: string[];
  paths?: string[];
}

/** How many things `l` still names. */
function leftoverCount(l: Leftovers): number {
  return l.containers.length + l.images.length + l.volumes.length + (l.paths?.length ?? 0);
}

/** Drops `done` from `pending.leftovers`, and the entry itself once nothing is left in it. */
export function forgetLeftovers(pending: RestorePending, done: Leftovers): void {
  const l = pending.leftovers;
  if (!l) return;
  const drop = (from: string[], gone: string[] = []) => from.filter((x) => !gone.includes(x));
  l.containers = drop(l.containers, done.containers);
  l.images = drop(l.images, done.images);
  l.volumes = drop(l.volumes, done.volumes);
  if (l.paths) l.paths = drop(l.paths, done.paths);
  if (leftoverCount(l) === 0) delete pending.leftovers;
}

/** Whether `pending` still has anything to put back or to finish. */
export function hasPending(pending: RestorePending): boolean {
  return pending.targets.length > 0 || (pending.leftovers !== undefined && leftoverCount(pending.leftovers) > 0);
}

/** A restore stopped by `abort()` (a cancelled run); its message is the abort's reason. */
export class InterruptedError extends Error {
  override name = 'InterruptedError';
}

/**
 * Records, before each change, what a restore is about to do, and undoes what was not committed.
 * Every `record…` call saves the pending state (through `onChange`) before the caller changes
 * anything, and throws `InterruptedError` once `abort()` was called, so a cancelled restore stops
 * at the next step and rolls back from one place.
 */
export class RestoreTransaction {
  readonly pending: RestorePending;
  private abortReason?: string;
  private readonly onAbort = new Set<() => void>();
  private readonly cancel = new AbortController();

  constructor(
    run: string,
    private readonly onChange: (pending: RestorePending) => void = () => undefined,
  ) {
    this.pending = { run, targets: [] };
  }

  /** Whether `abort()` was called. */
  get aborted(): boolean {
    return this.abortReason !== undefined;
  }

  /** Aborts (with an `InterruptedError`) when the restore is cancelled: for the engine calls that wait on helpers. */
  get signal(): AbortSignal {
    return this.cancel.signal;
  }

  /** Stops the restore at its next step; streams in flight are destroyed. */
  abort(reason: string): void {
    this.abortReason ??= reason;
    for (const f of this.onAbort) f();
    if (!this.cancel.signal.aborted) this.cancel.abort(new InterruptedError(this.abortReason));
  }

  /** Destroys `stream` on abort while it is open; returns it. */
  track<S extends Readable>(stream: S): S {
    const destroy = () => stream.destroy(new InterruptedError(this.abortReason ?? 'interrupted'));
    this.onAbort.add(destroy);
    stream.once('close', () => this.onAbort.delete(destroy));
    return stream;
  }

  /** Throws when the restore was cancelled. */
  checkpoint(): void {
    if (this.abortReason !== undefined) throw new InterruptedError(this.abortReason);
  }

  private save(): void {
    this.onChange(this.pending);
  }

  /** Saves the pending state as it is now (a rollback records its progress, never stopped by `abort`). */
  persist(): void {
    this.save();
  }

  /** Records a local image rollback helpers can use (RestorePending.helperImage), and saves. */
  setHelperImage(image: string): void {
    this.pending.helperImage = image;
    this.save();
  }

  /** The pending entry of `target`, made on first use. */
  entry(target: string): TargetPending {
    let e = this.pending.targets.find((t) => t.target === target);
    if (!e) {
      e = { target, creating: false, createdVolumes: [], replaced: [] };
      this.pending.targets.push(e);
    }
    return e;
  }

  /** Applies `change` to the entry of `target` and saves, before the caller changes anything; throws InterruptedError once aborted. */
  record(target: string, change: (e: TargetPending) => void): void {
    this.checkpoint();
    change(this.entry(target));
    this.save();
  }

  /** The aside record of the old container holding `id`, whichever target it belongs to. */
  asideOf(id: string): TargetPending | undefined {
    return this.pending.targets.find((t) => t.aside?.id === id);
  }

  /**
   * The restores of `targets` succeeded (a consistency group's together): forget them, and record
   * `leftovers` as what is left to remove (the caller removes them next, then calls `removed`).
   * Saved in one write, so a run killed at any point of a commit is finished by the next run, never
   * rolled back, and never only part of a group.
   */
  committed(targets: string[], leftovers?: Leftovers): void {
    this.pending.targets = this.pending.targets.filter((t) => !targets.includes(t.target));
    if (leftovers) {
      const l = (this.pending.leftovers ??= { containers: [], images: [], volumes: [] });
      l.containers.push(...leftovers.containers);
      l.images.push(...leftovers.images);
      l.volumes.push(...leftovers.volumes);
      if (leftovers.paths?.length) (l.paths ??= []).push(...leftovers.paths);
    }
    this.save();
  }

  /** `leftovers` are done with (removed, gone, or in use and left with a warning; see removeLeftovers): forgotten, and saved. */
  removed(leftovers: Leftovers): void {
    forgetLeftovers(this.pending, leftovers);
    this.save();
  }
}
