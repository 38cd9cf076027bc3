import type { Readable } from 'node:stream';
import { errorMessage, type Logger } from '../core/log.js';
import { ConflictError, NotFoundError, type Engine } from '../engine/engine.js';
import { Filler, RUN_LABEL } from './fill.js';
import { createOptions, type ContainerSpec } from './spec.js';

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
  createdVolumes: string[];
  replaced: ReplacedVolume[];
}

/** The whole of a restore's pending changes, saved after each change (step state and a journal file). */
export interface RestorePending {
  /** This run's label value: its helpers and aside volumes carry it. */
  run: string;
  /** Any local image, for helpers during a rollback. */
  helperImage?: string;
  targets: TargetPending[];
}

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

  constructor(
    run: string,
    private readonly onChange: (pending: RestorePending) => void = () => undefined,
  ) {
    this.pending = { run, targets: [] };
  }

  get aborted(): boolean {
    return this.abortReason !== undefined;
  }

  /** Stops the restore at its next step; streams in flight are destroyed. */
  abort(reason: string): void {
    this.abortReason ??= reason;
    for (const f of this.onAbort) f();
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

  record(target: string, change: (e: TargetPending) => void): void {
    this.checkpoint();
    change(this.entry(target));
    this.save();
  }

  /** The aside record of the old container holding `id`, whichever target it belongs to. */
  asideOf(id: string): TargetPending | undefined {
    return this.pending.targets.find((t) => t.aside?.id === id);
  }

  /** The restore of `target` succeeded: forget it (its leftovers were removed by the caller). */
  committed(target: string): void {
    this.pending.targets = this.pending.targets.filter((t) => t.target !== target);
    this.save();
  }
}

async function exists(engine: Engine, id: string): Promise<boolean> {
  return (await engine.inspectContainer(id).catch((err: unknown) => (err instanceof NotFoundError ? undefined : Promise.reject(err)))) !== undefined;
}

/**
 * Puts back what an uncommitted restore of one target changed: removes the new container and the
 * volumes it created, refills replaced volumes with their old content, and brings the old container
 * back under its name and in its state. Each step checks what is there first, so a rollback that
 * was itself interrupted can run again. Returns what could not be put back.
 */
export async function rollBackTarget(engine: Engine, run: string, helperImage: string | undefined, e: TargetPending, log: Logger): Promise<string[]> {
  const problems: string[] = [];
  const attempt = async (what: string, fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (err) {
      problems.push(`${what}: ${errorMessage(err)}`);
    }
  };
  const image = e.aside?.removed?.image ?? e.image ?? helperImage;
  if (e.creating) {
    await attempt(`remove the new container ${e.target}`, async () => {
      const now = await engine.findContainer(e.target);
      if (now && now.Id !== e.aside?.id) await engine.removeContainer(now.Id, { force: true, volumes: true });
    });
  }
  for (const v of [...e.replaced].reverse()) {
    await attempt(`put back volume ${v.name}`, async () => {
      if (!v.kept) {
        if (v.aside) await engine.removeVolume(v.aside).catch(ignoreMissing);
        return;
      }
      if (v.aside && !(await engine.inspectVolume(v.aside))) throw new Error(`its old content (volume ${v.aside}) is gone`);
      if (await engine.inspectVolume(v.name)) await engine.removeVolume(v.name);
      await engine.createVolume({ name: v.name, driver: v.driver, driverOpts: v.driverOpts, labels: v.labels });
      if (v.aside) {
        if (!image) throw new Error('no local image to copy its old content with');
        await new Filler(engine, image, run).copyVolume(v.aside, v.name);
        await engine.removeVolume(v.aside);
      }
    });
  }
  for (const name of e.createdVolumes) await attempt(`remove volume ${name}`, () => engine.removeVolume(name).catch(ignoreMissing));
  const a = e.aside;
  if (a) {
    await attempt(`put back container ${e.target}`, async () => {
      let id = a.id;
      if (!(await exists(engine, a.id))) {
        if (!a.removed) throw new Error(`container ${a.id} is gone`);
        id = await recreate(engine, run, e.target, a.removed);
      } else if ((await engine.inspectContainer(id)).Name !== `/${e.target}`) {
        await engine.renameContainer(id, e.target);
      }
      if (a.wasRunning) await engine.start(id);
      if (a.wasPaused && !(await engine.inspectContainer(id)).State.Paused) await engine.pause(id);
      if (a.removed) {
        await engine.removeImage(a.removed.image, { force: true });
        for (const v of a.removed.anonymous) await engine.removeVolume(v.volume).catch(ignoreMissing);
      }
      log.warning(`${e.target}: the previous container is back${a.wasRunning ? ' and running' : ''}`);
    });
  }
  return problems;
}

function ignoreMissing(err: unknown): void {
  if (!(err instanceof NotFoundError)) throw err;
}

/** Missing, or in use / being removed by someone else: left to whoever has it. */
function ignoreGoing(err: unknown): void {
  if (!(err instanceof NotFoundError || err instanceof ConflictError)) throw err;
}

/** Creates a removed old container again from its committed layer and configuration; its anonymous volumes get their old content back. */
async function recreate(engine: Engine, run: string, name: string, removed: NonNullable<AsideRecord['removed']>): Promise<string> {
  const { create, connect } = createOptions(removed.spec, name, removed.image, (await engine.info()).apiVersion);
  const id = await engine.createContainer(create);
  for (const n of connect) await engine.connectNetwork(n.network, id, n.endpoint);
  const mounts = ((await engine.inspectContainer(id)).Mounts ?? []) as Array<{ Type?: string; Name?: string; Destination: string }>;
  const filler = new Filler(engine, removed.image, run);
  for (const old of removed.anonymous) {
    const now = mounts.find((m) => m.Type === 'volume' && m.Destination === old.destination && m.Name);
    if (now?.Name && (await engine.inspectVolume(old.volume))) await filler.copyVolume(old.volume, now.Name);
  }
  return id;
}

/** Removes the helper containers of the runs `matches` accepts (by their label). */
export async function removeRunHelpers(engine: Engine, matches: (run: string) => boolean): Promise<void> {
  for (const c of await engine.containersLabelled(RUN_LABEL)) {
    // Another run may be removing the same leftover at this moment: 404 and 409 both mean it is going.
    if (matches(c.value)) await engine.removeContainer(c.id, { force: true, volumes: true }).catch(ignoreGoing);
  }
}

/** Removes the aside volumes of the runs `matches` accepts, but those in `keep` or still in use. */
export async function removeRunVolumes(engine: Engine, matches: (run: string) => boolean, keep: Set<string>): Promise<void> {
  for (const v of await engine.volumesLabelled(RUN_LABEL)) {
    if (!matches(v.value) || keep.has(v.name)) continue;
    await engine.removeVolume(v.name).catch(ignoreGoing);
  }
}
