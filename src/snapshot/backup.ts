import type { Readable } from 'node:stream';
import { hostname } from 'node:os';
import type { BackupOptions } from '../core/options.js';
import { errorMessage, type Logger } from '../core/log.js';
import { ACTION_WORDS } from '../core/words.js';
import { NotFoundError, ownName, type Engine, type ContainerInspect, type NetworkInspect } from '../engine/engine.js';
import { SET_SCOPE, type Destination } from '../destinations/types.js';
import { Digester } from '../oci/digest.js';
import { drain } from '../util/streams.js';
import { formatBytes } from '../util/format.js';
import { TarChecker } from '../util/tar-check.js';
import { withContainerLock } from '../core/locks.js';
import type { Journal } from '../core/journal.js';
import { tempImageName } from '../core/run-names.js';
import { allHave, storeBlob, type StoreTarget } from './blobs.js';
import { storeSavedImage } from './image-archive.js';
import { storeChunked, type ChunkIndex } from './chunked.js';
import { CHUNK_SIZES } from './chunker.js';
import {
  SET_MEDIA_TYPE,
  schemaVersionOf,
  layerMediaType,
  volumeMediaType,
  volumeMetadataMediaType,
  isChunked,
  type Compression,
  type BlobDescriptor,
  type ContainerRecord,
  type ImageRecord,
  type SnapshotSet,
  type VolumeRecord,
} from './manifest.js';
import { setForHistory } from './sealed-sets.js';
import { imageConfigWithoutEnv, secretEnvWarning, specWithoutEnv } from './secret-env.js';
import { selectContainers, type Candidate } from './select.js';
import { dependencyOrder, GroupGate, unitsOf, type MemberGate, type Unit } from './groups.js';
import { Spool, type Spooled } from './spool.js';
import { forEachLimited } from '../util/pool.js';
import { meterWith, type Meter } from '../util/progress.js';
import { SetWriteError, copyBlobs, tagState, unwrittenLine, writeSetEverywhere, type SetPlacement, type TagState } from './set-writes.js';
import { captureSpec, containerReferences, userNetworkNames } from './spec.js';
import { mountsToTake, type MountToTake } from './volumes.js';
import { archiveRoot, keepVolumeMetadata, matchedScan, scanVolumeMetadata, type MetadataScan } from './volume-metadata.js';
import { TOOL } from '../version.js';
import { deltaTar, isEmpty, planDelta } from './layer-delta.js';
import { scanLayer, type LayerIndex } from './layer-index.js';
import { DEFAULT_LAYER_COMPACTION, MAX_INDEXED_PATHS, deltaAllowed, previousLayer, storeDelta, storeFullIndex, type PreviousLayer } from './writable-layer.js';

export interface BackupContext {
  engine: Engine;
  journal?: Journal;
  destinations: Destination[];
  log: Logger;
  env?: NodeJS.ProcessEnv;
  now?: () => Date;
  /** Aborted when the run is cancelled: the pipeline stops, and puts back what it changed. */
  signal?: AbortSignal;
  /** Reports long transfers; a line to `log` every 5 s when absent. */
  meter?: Meter;
}

export interface ContainerOutcome {
  name: string;
  id: string;
  state: string;
  status: 'ok' | 'failed' | 'planned';
  error?: string;
  destinations: Array<{ destination: string; ref: string; digest?: string }>;
  volumes: string[];
  bytes: number;
  pausedMs: number;
  stoppedMs: number;
  /** Blobs (layers and volumes) this run stored, and those already stored by an earlier set. */
  blobs: { written: number; reused: number };
  /** Why the container was not held as asked (auto-remove, restarting), when it was not. */
  note?: string;
  /** The consistency group it was held with, when in one. */
  group?: string;
  /** That group's window: milliseconds from its first hold to its last release. */
  groupWindowMs?: number;
}

export interface BackupResult {
  tag: string;
  containers: ContainerOutcome[];
  failed: number;
  written: boolean;
  /** The set's artifact in each artifact: destination, for a workflow to link to. */
  artifacts: Array<{ destination: string; name: string; id: number; url: string }>;
  /** Each destination asked for, and whether it holds the set (in a dry run: each it would write, not written; empty when no set was due). */
  destinations: SetPlacement[];
  /** Why some destinations do not hold a set that others hold; the run has failed. */
  incomplete?: string;
  /** Each consistency group of the run (group-by, container-snapshot.group): its members and window; absent or empty when none. */
  groups?: GroupOutcome[];
}

export class BackupError extends Error {
  override name = 'BackupError';
}

interface History {
  layers: Map<string, BlobDescriptor>;
  volumes: Map<string, BlobDescriptor>;
  /** Each container's image in the newest recent set that has it, by container ID (with its name then): the base of a delta layer. */
  images: Map<string, { name: string; image: ImageRecord }>;
  /** Chunks of chunked volumes, by content digest (any container's, any mount's). */
  chunks: ChunkIndex;
}

const HISTORY_DEPTH = 5;

function volumeKey(container: string, destination: string): string {
  return `${container}\0${destination}`;
}

/** What recent sets stored alike (encrypted to the same keys, or clear), present in every destination: the basis for not storing it again. */
async function loadHistory(destinations: Destination[]): Promise<History> {
  const perDest: History[] = [];
  for (const dest of destinations) {
    const h: History = { layers: new Map(), volumes: new Map(), images: new Map(), chunks: new Map() };
    for (const summary of (await dest.listSets()).filter((s) => !s.damaged).slice(0, HISTORY_DEPTH)) {
      const set = await setForHistory(dest, summary);
      for (const c of set?.containers ?? []) {
        for (const l of c.image.layers) h.layers.set(l.contentDigest, l);
        for (const v of c.volumes) if (!h.volumes.has(volumeKey(c.name, v.destination))) h.volumes.set(volumeKey(c.name, v.destination), v.blob);
        // A sealed set's dedupe record names no container ID and no config: it is no base for a delta.
        const full = 'id' in c && 'config' in c.image ? (c as ContainerRecord) : undefined;
        if (full && !h.images.has(full.id)) h.images.set(full.id, { name: full.name, image: full.image });
        for (const v of c.volumes) if (isChunked(v.blob)) for (const chunk of v.blob.chunks) h.chunks.set(chunk.contentDigest, chunk);
      }
    }
    perDest.push(h);
  }
  const [first, ...rest] = perDest;
  const keep = <K, V extends BlobDescriptor>(m: Map<K, V>, pick: (h: History) => Map<K, V>) =>
    new Map([...m].filter(([k, v]) => rest.every((h) => pick(h).get(k)?.digest === v.digest)));
  return {
    layers: keep(first.layers, (h) => h.layers),
    volumes: keep(first.volumes, (h) => h.volumes),
    images: new Map([...first.images].filter(([k, v]) => rest.every((h) => h.images.get(k)?.image.config?.digest === v.image.config?.digest))),
    chunks: keep(first.chunks, (h) => h.chunks),
  };
}

/**
 * zstd is faster and smaller, but engines before 23.0 can't pull zstd layers: `auto` keeps
 * a registry's snapshot images pullable by the engine that made them.
 */
export function chooseCompression(opts: Pick<BackupOptions, 'compression' | 'destinations'>, engineVersion: string): Compression {
  if (opts.compression !== 'auto') return opts.compression;
  const major = Number.parseInt(engineVersion, 10);
  const toRegistry = opts.destinations.some((d) => d.kind === 'registry');
  return toRegistry && !(major >= 23) ? 'gzip' : 'zstd';
}

/** Labels that give a container its own pre- and post-command (over the inputs). */
export const PRE_LABEL = 'container-snapshot.pre';
export const POST_LABEL = 'container-snapshot.post';

function hooksFor(opts: BackupOptions, labels: Record<string, string>): { pre?: string; post?: string } {
  const pick = (label: string | undefined, input: string | undefined) => (label !== undefined ? label.trim() || undefined : input);
  return { pre: pick(labels[PRE_LABEL], opts.preCommand), post: pick(labels[POST_LABEL], opts.postCommand) };
}

/** Runs one phase of a container's backup; its errors say which phase. */
async function phase<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw new BackupError(`${what}: ${errorMessage(err)}`, { cause: err });
  }
}

/** The label container-snapshot.stop (true or false) overrides the stop input for its container. */
export const STOP_LABEL = 'container-snapshot.stop';

/** How a running container is held still for its snapshot. */
type Hold = 'pause' | 'stop' | 'none';

/** Seconds the engine waits for a stopped container when neither it nor the input says (Engine API `t`). */
const ENGINE_STOP_TIMEOUT_S = 10;
/** Beyond its stop timeout, how long a stop may take before an undo stops waiting for it. */
const STOP_MARGIN_MS = 30_000;

function stopAsked(opts: Pick<BackupOptions, 'stop'>, labels: Record<string, string>): boolean {
  const label = labels[STOP_LABEL]?.trim().toLowerCase();
  if (label === 'true') return true;
  if (label === 'false') return false;
  return opts.stop;
}

/**
 * How a container is held still for its snapshot, and why, when that is not what was asked. Only
 * a running container is paused or stopped. A restarting one (a restart policy between two runs)
 * is taken as it is: its layer and volumes are at rest, and the engine can pause neither. One
 * started with --rm (HostConfig.AutoRemove) is never stopped: the engine would remove it, and its
 * anonymous volumes, as it stops; it is paused instead, or taken running with `pause: false`.
 */
export function holdFor(info: ContainerInspect, opts: Pick<BackupOptions, 'stop' | 'pause'>): { hold: Hold; note?: string; warn?: boolean } {
  if (info.State.Restarting) return { hold: 'none', note: 'restarting: taken as it is, between two runs' };
  if (!info.State.Running || info.State.Paused) return { hold: 'none' };
  const instead: Hold = opts.pause ? 'pause' : 'none';
  if (!stopAsked(opts, info.Config.Labels ?? {})) return { hold: instead };
  if (info.HostConfig.AutoRemove) return { hold: instead, note: `auto-remove (--rm): ${instead === 'pause' ? 'paused' : 'taken running'}, not stopped`, warn: true };
  return { hold: 'stop' };
}

function candidateOf(c: { Id: string; Names?: string[]; Labels?: Record<string, string>; State: string }): Candidate {
  return { id: c.Id, name: ownName(c.Names, c.Id), labels: c.Labels ?? {}, state: c.State };
}

function statusOf(info: ContainerInspect): string {
  return info.State.Paused ? 'paused' : info.State.Status;
}

/** Set-scope blobs kept out of the chunk budget (Destination.setBlobLimit): side records, image configs, layer indexes. */
export const SET_BLOB_HEADROOM = 256;

class ContainerBackup {
  constructor(
    private readonly ctx: BackupContext,
    private readonly opts: BackupOptions,
    private readonly history: History,
    private readonly compression: Compression,
    private readonly spool: Spool,
  ) {}

  /** Why a container was not held as asked, by container ID. */
  readonly notes = new Map<string, string>();

  /** Chunks planned for this set so far, against the destinations' setBlobLimit (all volumes of all containers: one worker per set). */
  private chunksPlanned = 0;

  /** The tightest setBlobLimit among the destinations, less SET_BLOB_HEADROOM; undefined when none limits. */
  private chunkLimit(): { label: string; limit: number } | undefined {
    const limits = this.ctx.destinations.flatMap((d) => (d.setBlobLimit === undefined ? [] : [{ label: d.label, limit: d.setBlobLimit - SET_BLOB_HEADROOM }]));
    return limits.sort((x, y) => x.limit - y.limit)[0];
  }

  /**
   * Plans `chunks` more chunks for the set: undefined when they fit (then counted as planned), else
   * why not. `less`: chunks planned before (an estimate now replaced by the count), taken back first.
   */
  private planChunks(chunks: number, less = 0): string | undefined {
    this.chunksPlanned -= less;
    const tight = this.chunkLimit();
    if (tight && this.chunksPlanned + chunks > tight.limit) {
      return `${chunks} chunks, and ${tight.label} takes ${tight.limit + SET_BLOB_HEADROOM} blobs per set (${this.chunksPlanned} already planned, ${SET_BLOB_HEADROOM} kept for other records)`;
    }
    this.chunksPlanned += chunks;
    return undefined;
  }

  /** Volumes are stored as content-defined chunks, except for an artifact: destination (one artifact per chunk would be absurd): then each is one blob. */
  private get chunking(): boolean {
    return !this.opts.destinations.some((d) => d.kind === 'artifact');
  }

  private get meter(): Meter {
    return this.ctx.meter ?? meterWith((line) => this.ctx.log.info(line));
  }

  private targets(scope: StoreTarget['scope']): StoreTarget[] {
    return this.ctx.destinations.map((dest) => ({ dest, scope }));
  }

  /**
   * Backs up one container. `turn` orders the image-layer phase of containers taken at once (selection
   * order), so that a base layer they share is stored by the first and reused by the next. `gate`:
   * the container's place in its consistency group, whose members are hooked, held, taken and put back together.
   */
  async run(candidate: Candidate, turn: Turn = FREE_TURN, gate?: MemberGate): Promise<ContainerRecord & { layerStats: { written: number; reused: number } }> {
    const { engine, log, signal } = this.ctx;
    const info = await engine.inspectContainer(candidate.id, signal);
    const name = info.Name.replace(/^\//, '');
    const status = statusOf(info);
    const networks = new Map<string, NetworkInspect>();
    for (const net of userNetworkNames(info)) {
      const n = await engine.inspectNetwork(net, signal);
      if (n) networks.set(net, n);
    }
    const names = new Map<string, string>();
    for (const ref of containerReferences(info.HostConfig as Record<string, unknown>)) {
      const peer = await engine.inspectContainer(ref, signal).catch(() => undefined);
      if (peer) names.set(ref, peer.Name.replace(/^\//, ''));
    }
    const spec = specWithoutEnv(captureSpec(info, networks, (ref) => names.get(ref) ?? ref), this.opts.excludeEnv);
    const keyring = this.ctx.destinations[0]?.keyring;
    const how = !keyring?.encrypting ? 'clear' : keyring.keepsImagesPullable ? 'pullable' : undefined;
    const clear = how && secretEnvWarning(name, (spec.config.Env as string[] | undefined) ?? [], this.opts.words ?? ACTION_WORDS, how);
    if (clear) log.warning(clear);
    const mounts = mountsToTake(info, this.opts);
    const running = info.State.Running && !info.State.Paused && !info.State.Restarting;
    const { hold, note, warn } = holdFor(info, this.opts);
    if (note) this.notes.set(info.Id, note);
    if (warn) log.warning(`${name}: started with --rm (auto-remove), so it is not stopped (the engine would remove it and its anonymous volumes): ${hold === 'pause' ? 'paused' : 'taken running'} instead`);
    else if (note) log.info(`${name}: restarting (its restart policy runs it again after each exit): taken as it is, between two runs`);
    const journal = this.ctx.journal;
    // Named before the commit starts, so an interruption mid-commit still knows what to remove.
    const temp = tempImageName(info.Id);
    const tempRef = `${temp.repo}:${temp.tag}`;
    const volumes: VolumeRecord[] = [];
    const stats = { written: 0, reused: 0 };
    const plans: VolumePlan[] = [];
    for (const mount of mounts) plans.push(await this.planVolume(name, mount));
    // What is read while held goes to the spool, and to the destinations only once the container is back.
    const taken: TakenVolume[] = [];
    const pending: Spooled[] = [];
    const previous = await this.previousLayer(info.Id, name);
    const hooks = hooksFor(this.opts, info.Config.Labels ?? {});
    if ((hooks.pre || hooks.post) && !running) log.info(`${name}: not running (${status}), so its pre- and post-command are not run`);
    try {
      const { value: layer, heldMs, held } = await this.withHooks(info.Id, name, running ? hooks : {}, gate, () =>
        this.held(info, name, hold, mounts.length, gate, async () => {
          signal?.throwIfAborted();
          const now = (this.opts.layerCompaction ?? DEFAULT_LAYER_COMPACTION) > 0 ? await phase('writable layer changes', () => scanLayer(engine, info.Id, MAX_INDEXED_PATHS, signal)) : undefined;
          let committed: TakenLayer;
          if (previous && now) committed = await this.takeDelta(info, name, previous, now, pending);
          else {
            journal?.tempImage(tempRef);
            log.info(`${name}: committing the writable layer`);
            const commit = engine.commit(info.Id, { pause: false, ...temp });
            committed = { kind: 'commit', imageId: await phase('commit', () => (journal ? journal.track(commit) : commit)), now };
          }
          for (const plan of plans) {
            const { mount } = plan;
            log.info(`${name}: reading ${mount.type === 'bind' ? `bind mount ${mount.source}` : `volume ${mount.name}`}`);
            taken.push(await phase(`volume ${mount.name || mount.destination}`, () => this.takeVolume(info.Id, name, plan, pending)));
          }
          return committed;
        }),
      );
      signal?.throwIfAborted();
      for (const t of taken) volumes.push(await phase(`volume ${t.plan.mount.name || t.plan.mount.destination}`, () => this.storeVolume(name, t, stats)));
      await turn.wait();
      const { image, stats: layerStats } = await phase('image layers', () => (layer.kind === 'delta' ? this.storeDeltaImage(name, layer) : this.saveCommit(layer, name)));
      // Containers later in this run share base layers with this one: stored once per set.
      for (const layer of image.layers) if (!this.history.layers.has(layer.contentDigest)) this.history.layers.set(layer.contentDigest, layer);
      turn.done();
      stats.written += layerStats.written;
      stats.reused += layerStats.reused;
      const pausedMs = held === 'pause' ? heldMs : 0;
      return { name, id: info.Id, status: status as ContainerRecord['status'], image: { ...image, baseImage: info.Config.Image }, volumes, spec, pausedMs, ...(held === 'stop' ? { stoppedMs: heldMs } : {}), layerStats: stats };
    } finally {
      turn.done();
      await Promise.allSettled(pending.map((p) => this.spool.release(p)));
      await engine.removeImage(tempRef, { force: true });
      journal?.tempImageRemoved(tempRef);
    }
  }

  /**
   * Runs `fn` between the pre-command and the post-command; the post-command also runs after a failed
   * pre-command (it undoes it). In a group, each waits for its turn (dependency order, reversed after).
   */
  private async withHooks<T>(id: string, name: string, hooks: { pre?: string; post?: string }, gate: MemberGate | undefined, fn: () => Promise<T>): Promise<T> {
    try {
      await gate?.beforePre();
      if (hooks.pre) await this.hook(id, name, 'pre-command', hooks.pre);
      gate?.afterPre();
      return await fn();
    } catch (err) {
      gate?.fail(err);
      throw err;
    } finally {
      await gate?.beforePost();
      if (hooks.post) await this.hook(id, name, 'post-command', hooks.post).catch((err: unknown) => this.ctx.log.warning(`${name}: ${errorMessage(err)}`));
      gate?.afterPost();
    }
  }

  /**
   * Runs `take` with the container held still as asked: paused, or stopped, each journalled
   * before the change so that an interruption puts it back, and puts it back after. A hold that
   * fails leaves the container as it was (its journal entry cleared) or fails the container; one
   * that fails because the container is not running any more (a crash loop) takes it as it is.
   * Once stopping, a cancelled run waits for the stop to finish, then starts it again.
   * In a group, it is held once every member's pre-command has run, taken once every member is
   * held, and put back once every member is taken. Returns how long it was held, and how.
   */
  private async held<T>(info: ContainerInspect, name: string, hold: Hold, mounts: number, gate: MemberGate | undefined, take: () => Promise<T>): Promise<{ value: T; heldMs: number; held: Hold }> {
    const { log, signal } = this.ctx;
    await gate?.beforeHold();
    const held = await this.holdStill(info, name, hold);
    const since = performance.now();
    let heldMs = 0;
    let value: T;
    let taken = false;
    try {
      await gate?.afterHold();
      signal?.throwIfAborted();
      value = await take();
      await gate?.afterTake();
      taken = true;
    } finally {
      await this.putBack(info.Id, held);
      gate?.released();
      heldMs = Math.round(performance.now() - since);
      const what = (when: string) => (taken ? ` (writable layer and ${mounts} mount(s) taken ${when})` : '');
      if (held === 'pause') log.info(`${name}: paused for ${heldMs} ms${what('at one point in time')}`);
      if (held === 'stop') log.info(`${name}: started again after ${heldMs} ms stopped${what('while stopped')}`);
    }
    return { value, heldMs, held };
  }

  /** Pauses or stops the container (the state changes take no abort signal: each runs to its end, then is put back). */
  private async holdStill(info: ContainerInspect, name: string, hold: Hold): Promise<Hold> {
    const { engine, log, journal } = this.ctx;
    const id = info.Id;
    try {
      if (hold === 'pause') {
        journal?.paused(id);
        await engine.pause(id);
      }
      if (hold === 'stop') {
        const timeoutS = this.opts.stopTimeout ?? (info.Config as { StopTimeout?: number }).StopTimeout ?? ENGINE_STOP_TIMEOUT_S;
        journal?.stopped({ id, startedAt: info.State.StartedAt, until: Date.now() + timeoutS * 1000 + STOP_MARGIN_MS });
        log.info(`${name}: stopping (up to ${timeoutS} s before the engine kills it)`);
        await engine.stop(id, this.opts.stopTimeout);
        log.info(`${name}: stopped for its snapshot`);
      }
      return hold;
    } catch (err) {
      if (await this.asItWas(info, hold)) {
        const verb = hold === 'pause' ? 'paused' : 'stopped';
        log.info(`${name}: could not be ${verb} (${errorMessage(err)}); it is restarting or not running any more, so it is taken as it is`);
        this.notes.set(id, `restarting: not ${verb}, taken as it is, between two runs`);
        return 'none';
      }
      throw new BackupError(`${hold}: ${errorMessage(err)}`, { cause: err });
    }
  }

  /**
   * After a failed pause or stop, makes sure the container is as it was: its journal entry is
   * cleared when it verifiably is (not paused; still running; gone), else it is put back. True
   * when it is now between two runs of a crash loop (restarting, or exited after a pause), to be
   * taken as it is.
   */
  private async asItWas(info: ContainerInspect, hold: Hold): Promise<boolean> {
    const { engine, journal } = this.ctx;
    const id = info.Id;
    const now = await engine.inspectContainer(id).catch((err: unknown) => {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    });
    if (hold === 'pause') {
      if (now?.State.Paused) await this.putBack(id, 'pause');
      else journal?.unpaused(id);
      return Boolean(now && !now.State.Paused && (now.State.Restarting || !now.State.Running));
    }
    if (now && !now.State.Running) await this.putBack(id, 'stop');
    else journal?.restarted(id);
    return Boolean(now?.State.Restarting);
  }

  /** Unpauses or starts the container again, then clears its journal entry. */
  private async putBack(id: string, held: Hold): Promise<void> {
    const { engine, journal } = this.ctx;
    if (held === 'pause') {
      await phase('unpause', () => engine.unpause(id));
      journal?.unpaused(id);
    }
    if (held === 'stop') {
      await phase('start again', () => engine.start(id));
      journal?.restarted(id);
    }
  }

  /** Runs a hook inside the container; fails with the container, the phase and the exit code. */
  private async hook(id: string, name: string, phase: 'pre-command' | 'post-command', command: string): Promise<void> {
    const { engine, log } = this.ctx;
    const timeoutMs = this.opts.hookTimeout * 1000;
    log.info(`${name}: ${phase}: ${command}`);
    const started = performance.now();
    // A post-command undoes what the pre-command did: it runs even in a cancelled run.
    const signal = phase === 'pre-command' ? this.ctx.signal : undefined;
    const result = await engine.exec(id, command, { timeoutMs, signal, onLine: (line) => log.info(`${name} ${phase}> ${line}`) });
    const ms = Math.round(performance.now() - started);
    if (result.timedOut) throw new BackupError(`${phase} did not finish within ${(this.opts.words ?? ACTION_WORDS).name('hook-timeout')} ${this.opts.hookTimeout} s (it may still run in the container): ${command}`);
    if (result.exitCode !== 0) throw new BackupError(`${phase} exited with ${result.exitCode ?? 'an unknown status'} after ${ms} ms: ${command}`);
    log.info(`${name}: ${phase} done in ${ms} ms`);
  }

  /**
   * The last snapshot of this container (same ID, same name) in every destination, when the next
   * may be a delta on it (layer-compaction not reached, not encrypted); its index and config read.
   * Undefined otherwise: the writable layer is then committed whole.
   */
  private async previousLayer(id: string, name: string): Promise<PreviousLayer | undefined> {
    const compaction = this.opts.layerCompaction ?? DEFAULT_LAYER_COMPACTION;
    const last = this.history.images.get(id);
    if (!last || last.name !== name || compaction === 0 || this.ctx.destinations[0]?.keyring?.encrypting) return undefined;
    try {
      const previous = await previousLayer(last.image, this.targets({ container: name }), this.targets(SET_SCOPE), layerMediaType(this.compression));
      if (previous && previous.deltas >= compaction) this.ctx.log.info(`${name}: ${previous.deltas} delta layer(s) on the last full writable layer (layer-compaction ${compaction}): the whole layer is taken again`);
      return deltaAllowed(previous, compaction) ? previous : undefined;
    } catch (err) {
      this.ctx.log.info(`${name}: the last snapshot's writable layer could not serve as a base (${errorMessage(err)}): the whole layer is taken`);
      return undefined;
    }
  }

  /** While held: reads what changed since `previous` (plan-delta) into the spool, touching no destination. */
  private async takeDelta(info: ContainerInspect, name: string, previous: PreviousLayer, now: LayerIndex, pending: Spooled[]): Promise<TakenLayer> {
    const plan = planDelta(previous.index, now);
    this.ctx.log.info(`${name}: reading what changed in the writable layer since the last snapshot: ${plan.reads.length} path(s), ${plan.whiteouts.length} removed`);
    if (isEmpty(plan)) return { kind: 'delta', previous, now };
    await this.spool.ready();
    const mountPoints = new Set((info.Mounts ?? []).map((m) => m.Destination));
    const spooled = await phase('writable layer changes', () => this.spool.take(deltaTar(this.ctx.engine, info.Id, plan, mountPoints, this.ctx.signal)));
    pending.push(spooled);
    return { kind: 'delta', previous, now, spooled };
  }

  /** Once the container is back: the delta layer (checked as a whole tar), its config and the index stored. */
  private async storeDeltaImage(name: string, layer: TakenLayer & { kind: 'delta' }): Promise<{ image: Omit<ImageRecord, 'baseImage'>; stats: { written: number; reused: number } }> {
    let tar: Readable | undefined;
    if (layer.spooled) {
      const file = this.spool.read(layer.spooled);
      tar = file.pipe(new TarChecker(`${name}: writable layer changes`));
      file.on('error', (err) => tar?.destroy(err));
      this.ctx.log.info(`${name}: storing the writable layer's changes (${formatBytes(layer.spooled.bytes)} before compression)`);
    }
    const exclude = this.opts.excludeEnv;
    const stored = await storeDelta(layer.previous, tar, layer.now, { layers: this.targets({ container: name }), set: this.targets(SET_SCOPE) }, {
      layerMediaType: layerMediaType(this.compression),
      compression: this.compression,
      created: (this.ctx.now?.() ?? new Date()).toISOString(),
      rewriteConfig: exclude.length > 0 ? (config: Buffer) => imageConfigWithoutEnv(config, exclude) : undefined,
    });
    return { image: stored.image, stats: { written: stored.written, reused: layer.previous.image.layers.length } };
  }

  /** Once the container is back: the committed image stored, and the writable layer's index beside it. */
  private async saveCommit(layer: TakenLayer & { kind: 'commit' }, name: string): Promise<{ image: Omit<ImageRecord, 'baseImage'>; stats: { written: number; reused: number } }> {
    const { image, stats } = await this.saveImage(layer.imageId, name);
    const index = await storeFullIndex(layer.now, this.targets(SET_SCOPE), this.compression);
    // Without excluded variables, the stored config is another image: its ID is that config's digest.
    const id = this.opts.excludeEnv.length > 0 ? image.config.contentDigest : layer.imageId;
    return { image: { ...image, id, ...index }, stats };
  }

  private async saveImage(imageId: string, name: string): Promise<{ image: Pick<ImageRecord, 'config' | 'layers'>; stats: { written: number; reused: number } }> {
    const { engine, signal } = this.ctx;
    const targets = this.targets({ container: name });
    const diffIds = (await engine.inspectImage(imageId, signal)).RootFS.Layers ?? [];
    const known = new Map<string, BlobDescriptor>();
    for (const diffId of diffIds) {
      const blob = this.history.layers.get(diffId);
      if (blob && blob.mediaType === layerMediaType(this.compression) && (await allHave(targets, blob.digest))) known.set(diffId, blob);
    }
    const mediaType = layerMediaType(this.compression);
    const exclude = this.opts.excludeEnv;
    const rewriteConfig = exclude.length > 0 ? (config: Buffer) => imageConfigWithoutEnv(config, exclude) : undefined;
    const base = { diffIds, layerMediaType: mediaType, configTargets: this.targets(SET_SCOPE), rewriteConfig, meter: (bytes: number) => this.meter(`${name}: layer ${n} of ${diffIds.length}`, bytes) };
    let n = 0;
    const onLayer = (bytes: number, known: boolean) => this.ctx.log.info(`${name}: ${known ? 'checking' : 'storing'} layer ${++n} of ${diffIds.length} (${formatBytes(bytes)})`);
    this.ctx.log.info(`${name}: reading the image (${diffIds.length} layer(s)) from the engine`);
    let result = await storeSavedImage(await engine.saveImage(imageId, signal), targets, { ...base, known, onLayer });
    if ('retry' in result) {
      n = 0;
      result = await storeSavedImage(await engine.saveImage(imageId, signal), targets, { ...base, known: new Map(), onLayer });
    }
    if ('retry' in result) throw new BackupError(`${name}: could not read the committed image consistently`);
    return { image: result.image, stats: { written: result.written, reused: result.reused } };
  }

  /** What is known of a mount before the hold: its record so far, where it is on the host, and an earlier set's blob it may turn out to equal. */
  private async planVolume(container: string, mount: MountToTake): Promise<VolumePlan> {
    const { engine, signal } = this.ctx;
    const record: Omit<VolumeRecord, 'blob'> = { type: mount.type, name: mount.name, anonymous: mount.anonymous, destination: mount.destination };
    let hostPath = mount.source;
    if (mount.type === 'bind') record.source = mount.source;
    else {
      const v = await engine.inspectVolume(mount.name, signal);
      if (v) {
        record.driver = v.Driver;
        record.driverOptions = (v.Options as Record<string, string> | null) ?? {};
        record.labels = (v.Labels as Record<string, string> | null) ?? {};
        hostPath = v.Mountpoint;
      }
    }
    const previous = this.history.volumes.get(volumeKey(container, mount.destination));
    const reusable = previous && previous.mediaType === volumeMediaType(this.compression) && (await allHave(this.targets(SET_SCOPE), previous.digest));
    return { mount, record, hostPath, ...(reusable ? { previous } : {}) };
  }

  /**
   * Reads a mount while the container is held, touching no destination and compressing nothing:
   * its archive into the spool, as the engine sends it, and a scan of what the archive drops.
   * The spooled file is also pushed to `pending`, for the caller to remove whatever happens.
   */
  private async takeVolume(id: string, container: string, plan: VolumePlan, pending: Spooled[]): Promise<TakenVolume> {
    const { engine, signal } = this.ctx;
    const { mount, hostPath } = plan;
    const scanning = scanVolumeMetadata(hostPath);
    await this.spool.ready();
    const archive = await engine.getArchive(id, mount.destination, signal);
    const archived = archiveRoot(archive);
    // take() destroys the archive if it fails: one left open keeps the container locked in the engine (never unpaused).
    const spooled = await this.spool.take(archive, this.meter(`${container}: reading ${mount.name || mount.destination}`));
    pending.push(spooled);
    return { plan, spooled, scan: matchedScan(await scanning, await archived, hostPath) };
  }

  /**
   * Once the container is back: the spooled archive checked (a whole tar) and digested; the
   * earlier set's blob when the content is the same, else compressed into every destination.
   * Then the side record of what the archive dropped.
   */
  private async storeVolume(container: string, taken: TakenVolume, stats: { written: number; reused: number }): Promise<VolumeRecord> {
    const { plan, spooled } = taken;
    const what = `${container}: ${plan.mount.type === 'bind' ? `bind mount ${plan.mount.source}` : `volume ${plan.mount.name}`}`;
    const checked = () => {
      // Reads of 1 MiB: fewer turns through the tar check and the chunker.
      const file = this.spool.read(spooled, 1 << 20);
      const tar = file.pipe(new TarChecker(`${container}: ${plan.mount.name || plan.mount.destination}`));
      file.on('error', (err) => tar.destroy(err));
      return tar;
    };
    // Counted before chunking (the archive's size is known), a little above the average: a count past it is caught after.
    const estimate = Math.ceil((1.25 * spooled.bytes) / CHUNK_SIZES.avg) + 1;
    let whole = this.chunking ? this.planChunks(estimate) : undefined;
    let blob = (!this.chunking || whole) && plan.previous && (await this.sameContent(spooled, plan.previous)) ? plan.previous : undefined;
    if (blob) stats.reused++;
    else if (this.chunking && !whole) {
      this.ctx.log.info(`${what}: storing the new chunks of ${formatBytes(spooled.bytes)} (before compression)`);
      const chunked = await storeChunked(checked(), this.targets(SET_SCOPE), this.compression, this.history.chunks, this.meter(`${what}: chunking`, spooled.bytes));
      this.ctx.log.info(`${what}: ${chunked.blob.chunks.length} chunk(s): ${chunked.written} stored, ${chunked.reused} already there`);
      whole = this.planChunks(chunked.blob.chunks.length, estimate);
      blob = whole ? undefined : chunked.blob;
      stats.written += chunked.written;
      stats.reused += chunked.reused;
    }
    if (whole) this.ctx.log.info(`${what}: stored whole, not as chunks: ${formatBytes(spooled.bytes)} would take ${whole}`);
    if (!blob) {
      this.ctx.log.info(`${what}: storing ${formatBytes(spooled.bytes)} (before compression)`);
      blob = await storeBlob(checked(), this.targets(SET_SCOPE), volumeMediaType(this.compression), this.meter(`${what}: storing`, spooled.bytes));
      stats.written++;
    }
    await this.spool.release(spooled);
    return this.withMetadata(what, { ...plan.record, blob }, taken.scan);
  }

  /** True when the spooled archive's content is `previous`'s (its sha256). */
  private async sameContent(spooled: Spooled, previous: BlobDescriptor): Promise<boolean> {
    const digester = new Digester();
    const file = this.spool.read(spooled);
    file.on('error', (err) => digester.destroy(err));
    await drain(file.pipe(digester));
    return digester.digest === previous.contentDigest;
  }

  /** Keeps the side record of what the archive dropped, and says what it kept and what not (a warning). */
  private async withMetadata(what: string, volume: VolumeRecord, scan: MetadataScan): Promise<VolumeRecord> {
    const store = (content: Readable) => storeBlob(content, this.targets(SET_SCOPE), volumeMetadataMediaType(this.compression));
    const { metadata, kept } = await keepVolumeMetadata(scan, store);
    if (kept) this.ctx.log.info(`${what}: ${kept}`);
    if (metadata.notKept) this.ctx.log.warning(`${what}: not kept: ${metadata.notKept}`);
    return { ...volume, metadata };
  }
}

/** A container's place in the order of the image-layer phases: wait for the one before, then let the next go (once, whatever happens). */
interface Turn {
  wait(): Promise<void>;
  done(): void;
}

const FREE_TURN: Turn = { wait: async () => undefined, done: () => undefined };

/** Turns for `count` containers, each after the one before. */
function turnsInOrder(count: number): Turn[] {
  const releases: Array<() => void> = [];
  const finished = Array.from({ length: count }, (_v, i) => new Promise<void>((resolve) => (releases[i] = resolve)));
  return finished.map((_p, i) => ({ wait: () => (i === 0 ? Promise.resolve() : finished[i - 1]), done: () => releases[i]() }));
}

/** The writable layer as taken while held: committed whole, or what changed since `previous` spooled (absent: nothing did). */
type TakenLayer = { kind: 'commit'; imageId: string; now?: LayerIndex } | { kind: 'delta'; previous: PreviousLayer; now: LayerIndex; spooled?: Spooled };

/** What is known of a mount before its container is held (ContainerBackup.planVolume). */
interface VolumePlan {
  mount: MountToTake;
  record: Omit<VolumeRecord, 'blob'>;
  hostPath: string | undefined;
  previous?: BlobDescriptor;
}

/** A mount read while held: its plan, its archive in the spool, and the scan of what the archive drops. */
interface TakenVolume {
  plan: VolumePlan;
  spooled: Spooled;
  scan: MetadataScan;
}

function outcome(record: ContainerRecord & { layerStats: { written: number; reused: number } }, refs: ContainerOutcome['destinations'], note?: string): ContainerOutcome {
  const blobs = [record.image.config, ...record.image.layers, ...record.volumes.map((v) => v.blob)];
  return {
    name: record.name,
    id: record.id,
    state: record.status,
    status: 'ok',
    destinations: refs,
    volumes: record.volumes.map((v) => v.name || v.source || v.destination),
    bytes: [...new Map(blobs.map((b) => [b.digest, b.size])).values()].reduce((a, b) => a + b, 0),
    pausedMs: record.pausedMs,
    stoppedMs: record.stoppedMs ?? 0,
    blobs: record.layerStats,
    ...(note ? { note } : {}),
    ...(record.group ? { group: record.group } : {}),
  };
}

function failure(name: string, id: string, state: string, err: unknown): ContainerOutcome {
  return { name, id, state, status: 'failed', error: errorMessage(err), destinations: [], volumes: [], bytes: 0, pausedMs: 0, stoppedMs: 0, blobs: { written: 0, reused: 0 } };
}

async function plan(ctx: BackupContext, opts: BackupOptions, selected: Candidate[]): Promise<ContainerOutcome[]> {
  const out: ContainerOutcome[] = [];
  for (const u of unitsOf(selected, opts.groupBy)) {
    if (u.group !== undefined) ctx.log.info(`[dry-run] group ${u.group}: ${u.members.map((c) => c.name).join(', ')} would be held together`);
  }
  for (const c of selected) {
    const info = await ctx.engine.inspectContainer(c.id);
    const mounts = mountsToTake(info, opts);
    const vols = mounts.map((m) => m.name || m.source || m.destination);
    const size = await ctx.engine.writableLayerSize(c.id);
    const { hold, note } = holdFor(info, opts);
    const running = info.State.Running && !info.State.Paused && !info.State.Restarting;
    const quiesce = (!running ? 'taken as it is' : hold === 'stop' ? 'would be stopped' : hold === 'pause' ? 'would be paused' : 'taken running') + (note ? `; ${note}` : '');
    ctx.log.info(
      `[dry-run] ${c.name} (${statusOf(info)}, ${quiesce}, image ${info.Config.Image}, writable layer ${size ?? '?'} bytes): ` +
        `volumes [${vols.join(', ')}] → ${opts.destinations.map((d) => d.raw).join(', ')} as ${opts.tag}`,
    );
    out.push({ ...failure(c.name, c.id, statusOf(info), ''), status: 'planned', error: undefined, volumes: vols, bytes: size ?? 0 });
  }
  return out;
}

/**
 * Every destination checked as the run needs it, changing nothing in a dry run (the tag is free,
 * credentials work, the place is writable). Throws when one fails; returns where the tag already is.
 */
async function checkDestinations(ctx: BackupContext, opts: BackupOptions): Promise<TagState> {
  for (const dest of ctx.destinations) await dest.check('plan');
  // The tag before any directory is made: a refused tag changes nothing.
  const state = await tagState(ctx.destinations, opts.tag);
  if (state.set) refuseWholeOnly(opts, state.set, state.missing);
  if (!opts.dryRun) for (const dest of ctx.destinations) await dest.check('write');
  return state;
}

/**
 * A set with chunked volumes cannot be completed in an artifact: destination: it stores each volume
 * whole, so its set document would differ from the holders' (and a set must read the same everywhere).
 * Throws SetWriteError.
 */
function refuseWholeOnly(opts: BackupOptions, set: SnapshotSet, missing: Destination[]): void {
  const wholeOnly = missing.filter((d) => opts.destinations.some((spec) => spec.kind === 'artifact' && spec.raw === d.label));
  if (wholeOnly.length === 0 || !set.containers.some((c) => c.volumes.some((v) => isChunked(v.blob)))) return;
  const labels = wholeOnly.map((d) => d.label).join(', ');
  throw new SetWriteError(`Snapshot ${set.tag} stores its volumes as chunks, which ${labels} cannot hold (one blob per volume there); not copied. Expected a new tag: a new set stores whole volumes in every destination.`);
}

/** A set some destinations hold and others miss (an earlier run with this tag failed there): copied to the rest, no container taken again. */
async function completeSet(ctx: BackupContext, opts: BackupOptions, state: TagState & { set: SnapshotSet }): Promise<BackupResult> {
  const { set, holders, missing } = state;
  const names = (ds: Destination[]) => ds.map((d) => d.label).join(', ');
  const records = set.containers.map((c) => ({ ...c, layerStats: { written: 0, reused: 0 } }));
  if (opts.dryRun) {
    ctx.log.info(`[dry-run] Snapshot ${set.tag} is in ${names(holders)}: it would be copied to ${names(missing)}; no container is taken again.`);
    const planned = records.map((r) => ({ ...outcome(r, []), status: 'planned' as const }));
    return { tag: set.tag, containers: planned, failed: 0, written: false, artifacts: [], destinations: [] };
  }
  ctx.log.info(`Snapshot ${set.tag} is in ${names(holders)} and not in ${names(missing)}: copying it there; no container is taken again.`);
  const copied = new Set<Destination>();
  const placements: SetPlacement[] = [];
  for (const dest of missing) {
    try {
      const stats = await copyBlobs(set, holders[0], dest);
      ctx.log.info(`${dest.label}: ${stats.written} blob(s) copied from ${holders[0].label}, ${stats.reused} already there`);
      copied.add(dest);
    } catch (err) {
      placements.push({ destination: dest.label, written: false, error: `Snapshot ${set.tag} not copied to ${dest.label}: ${errorMessage(err)}` });
    }
  }
  const writes = await writeSetEverywhere(set, [...copied], holders);
  const all = [...writes.placements, ...placements];
  await Promise.allSettled(missing.filter((d) => !all.find((p) => p.destination === d.label)?.written).map((d) => d.discard?.()));
  return {
    tag: set.tag,
    containers: records.map((r) => outcome(r, writes.refs.get(r.name) ?? [])),
    failed: 0,
    written: true,
    artifacts: writes.artifacts,
    destinations: all,
    incomplete: unwrittenLine(set.tag, all),
  };
}

export async function runBackup(opts: BackupOptions, ctx: BackupContext): Promise<BackupResult> {
  const { engine, log } = ctx;
  const engineInfo = await engine.info(ctx.signal);
  const all = (await engine.listContainers(ctx.signal)).map(candidateOf);
  const selection = selectContainers(all, opts.selection);
  const outcomes: ContainerOutcome[] = [
    ...selection.missing.map((name) => failure(name, '', 'missing', new BackupError(`no such container: ${name}`))),
    ...selection.missingProjects.map((p) => failure(`project ${p}`, '', 'missing', new BackupError(`no container in Compose project ${p}`))),
  ];
  // A missing container is said once, in the caller's final error line that lists every failure.
  if (opts.onError === 'continue' && !selection.empty) for (const o of outcomes) log.info(`${o.name}: not found; the others go on`);
  if (selection.empty && outcomes.length === 0) {
    const message = `No container matched the selection (${opts.selection.containers.map((s) => s.value).join(', ') || 'all'}).`;
    if (opts.selection.ifNoMatch === 'error') throw new BackupError(message);
    if (opts.selection.ifNoMatch === 'warn') log.warning(message);
  }
  if (opts.onError === 'abort' && outcomes.length > 0) {
    throw new BackupError(`Aborted before any change: ${outcomes.map((o) => `${o.name}: ${o.error}`).join('; ')}`);
  }
  const none = { written: false, artifacts: [], destinations: [] };
  if (selection.selected.length === 0 && !opts.dryRun) return { tag: opts.tag, containers: outcomes, failed: outcomes.length, ...none };
  try {
    return await checkAndStore(ctx, opts, selection.selected, outcomes, engineInfo);
  } finally {
    // What the destinations' checks took (a dir: backup lock, which keeps a prune from sweeping).
    await Promise.allSettled(ctx.destinations.map((d) => d.close?.()));
  }
}

async function checkAndStore(
  ctx: BackupContext,
  opts: BackupOptions,
  selected: Candidate[],
  outcomes: ContainerOutcome[],
  engineInfo: SnapshotSet['source']['engine'],
): Promise<BackupResult> {
  const { log } = ctx;
  const none = { written: false, artifacts: [], destinations: [] };
  const state = await checkDestinations(ctx, opts);
  if (state.set) return completeSet(ctx, opts, { ...state, set: state.set });
  if (opts.dryRun) {
    const planned = ctx.destinations.map((d) => ({ destination: d.label, written: false }));
    return { tag: opts.tag, containers: [...outcomes, ...(await plan(ctx, opts, selected))], failed: outcomes.length, ...none, destinations: planned };
  }
  const created = (ctx.now?.() ?? new Date()).toISOString();
  const history = await loadHistory(ctx.destinations);
  const compression = chooseCompression(opts, engineInfo.version);
  log.info(`Compression: ${compression}${opts.compression === 'auto' ? ' (auto)' : ''}`);
  const spool = Spool.for(ctx.env ?? {}, ctx.destinations.some((d) => d.keyring?.encrypting));
  // Aborted when one container fails with on-error: abort, so that the others stop (and are put back) too.
  const stopOthers = new AbortController();
  const signal = ctx.signal ? AbortSignal.any([ctx.signal, stopOthers.signal]) : stopOthers.signal;
  const worker = new ContainerBackup({ ...ctx, signal }, opts, history, compression, spool);
  let stored: Omit<BackupResult, 'tag' | 'containers' | 'failed'> | undefined;
  try {
    stored = await backUpAndStore(ctx, opts, selected, { worker, stopOthers, signal }, created, engineInfo, outcomes);
  } finally {
    await spool.close();
    // Where no set was written (a failure, an abort, every container failed): drop what was stored for it, where nothing else would.
    const holds = (d: Destination) => stored?.destinations.some((p) => p.destination === d.label && p.written);
    await Promise.allSettled(ctx.destinations.filter((d) => !holds(d)).map((d) => d.discard?.()));
  }
  outcomes.sort((a, b) => a.name.localeCompare(b.name));
  return { tag: opts.tag, containers: outcomes, failed: outcomes.filter((o) => o.status === 'failed').length, ...stored };
}

/** The containers' backups of one run: one worker, and the signal that stops them all (a cancel, or a failure with on-error: abort). */
interface Crew {
  worker: ContainerBackup;
  stopOthers: AbortController;
  signal: AbortSignal;
}

type Taken = ContainerRecord & { layerStats: { written: number; reused: number } };

/** Where a run's results go while its units are taken: by the container's place in the run, and one entry per group. */
interface Tally {
  records: Array<Taken | undefined>;
  failures: Array<ContainerOutcome | undefined>;
  groups: GroupOutcome[];
  abortedAt?: ContainerOutcome;
}

/**
 * Backs up the selected containers, `opts.parallelism` units at once: a container on its own, or a
 * consistency group, whose members are held together (backUpGroup). Returns the records, the
 * failures (in the order taken) and the groups. With on-error: abort, the first failure stops the
 * others (each put back as it stands) and throws once they have.
 */
async function backUpEach(ctx: BackupContext, opts: BackupOptions, selected: Candidate[], crew: Crew): Promise<{ records: Taken[]; failures: ContainerOutcome[]; groups: GroupOutcome[] }> {
  const { log } = ctx;
  const units = unitsOf(selected, opts.groupBy);
  const order = units.flatMap((u) => u.members);
  const place = new Map(order.map((c, i) => [c.id, i]));
  const tally: Tally = { records: [], failures: [], groups: [] };
  const together = Math.min(opts.parallelism, units.length) > 1 || units.some((u) => u.group !== undefined);
  // In the order taken: a group's members run at once, each waits only for those taken before it.
  const turns = turnsInOrder(order.length);
  const one = async (c: Candidate) => {
    const i = place.get(c.id) ?? 0;
    try {
      const take = () => withContainerLock(ctx.env ?? {}, c, opts.lockTimeoutMs, () => crew.worker.run(c, turns[i]), crew.signal);
      // Groups of containers taken at once would interleave: their lines name the container instead.
      const record = together ? await take() : await log.group(`Back up ${c.name}`, take);
      tally.records[i] = record;
      log.info(`${c.name}: ${record.image.layers.length} layer(s) and ${record.volumes.length} volume(s): ${record.layerStats.written} blob(s) stored, ${record.layerStats.reused} already there`);
    } catch (err) {
      // A cancelled run goes no further: its undo follows.
      if (ctx.signal?.aborted) throw ctx.signal.reason;
      // Stopped because another container failed first: that failure is the one said.
      if (crew.stopOthers.signal.aborted) return;
      unitFailed(opts, crew, tally, [[i, failure(c.name, c.id, c.state, err)]], c.name, log);
    } finally {
      // Also when it never got to run (its lock not taken): the next one's layers wait for nothing more.
      turns[i].done();
    }
  };
  const unit = (u: Unit) => (u.group === undefined ? one(u.members[0]) : backUpGroup(ctx, opts, { ...u, group: u.group }, crew, { tally, place, turns }));
  await forEachLimited(units, opts.parallelism, unit, () => crew.stopOthers.signal.aborted);
  if (tally.abortedAt) throw new BackupError(`Aborted at ${tally.abortedAt.name}; no snapshot set was written: ${tally.abortedAt.error}`);
  const groups = tally.groups.sort((a, b) => a.name.localeCompare(b.name));
  return { records: tally.records.filter((r) => r !== undefined), failures: tally.failures.filter((f) => f !== undefined), groups };
}

/** Records a unit's failures (by place), says so with on-error: continue, and stops the others with abort. */
function unitFailed(opts: BackupOptions, crew: Crew, tally: Tally, failed: Array<[number, ContainerOutcome]>, what: string, log: Logger): void {
  for (const [i, f] of failed) {
    tally.records[i] = undefined;
    tally.failures[i] = f;
  }
  // Its reason is said once, in the caller's final error line.
  if (opts.onError === 'continue') log.info(`${what}: failed; the others go on`);
  if (opts.onError === 'abort') {
    tally.abortedAt = failed[0][1];
    crew.stopOthers.abort(new BackupError(`Aborted at ${what}`));
  }
}

/** One consistency group's result: its members, how long from the first hold to the last release, and why it was not taken. */
export interface GroupOutcome {
  name: string;
  containers: string[];
  status: 'ok' | 'failed';
  windowMs: number;
  error?: string;
}

/**
 * Backs up a consistency group: its members at once, in dependency order (groups.ts), each held
 * until all are taken (GroupGate). One member failing, or missing (a Compose service another
 * depends on that is not in the group), fails them all: a group is taken whole or not at all.
 */
async function backUpGroup(
  ctx: BackupContext,
  opts: BackupOptions,
  unit: Unit & { group: string },
  crew: Crew,
  run: { tally: Tally; place: Map<string, number>; turns: Turn[] },
): Promise<void> {
  const { log, engine } = ctx;
  const { tally, place, turns } = run;
  const infos = await Promise.all(unit.members.map((c) => engine.inspectContainer(c.id, crew.signal).catch(() => undefined)));
  const { order, missing } = dependencyOrder(unit.members.map((c, k) => ({ name: c.name, labels: c.labels, links: infos[k]?.HostConfig.Links ?? [] })));
  const members = order.map((k) => unit.members[k]);
  const gate = new GroupGate(unit.group, members.map((c) => c.name));
  if (missing.length > 0) {
    gate.fail(0, `a member is missing: ${missing.join('; ')}`);
    for (const c of members) turns[place.get(c.id) ?? 0].done();
  } else {
    log.info(`Group ${unit.group}: ${members.map((c) => c.name).join(', ')} held together (pre-commands in this order, post-commands in reverse)`);
    await Promise.all(
      members.map(async (c, k) => {
        const i = place.get(c.id) ?? 0;
        try {
          const record = await withContainerLock(ctx.env ?? {}, c, opts.lockTimeoutMs, () => crew.worker.run(c, turns[i], gate.member(k)), crew.signal);
          tally.records[i] = { ...record, group: unit.group };
        } catch (err) {
          gate.fail(k, `${c.name} failed: ${errorMessage(err)}`);
        } finally {
          gate.settle(k);
          turns[i].done();
        }
      }),
    );
  }
  if (ctx.signal?.aborted) throw ctx.signal.reason;
  const names = members.map((c) => c.name);
  if (!gate.failed) {
    log.info(`Group ${unit.group}: held together for ${gate.windowMs} ms (first hold to last release)`);
    tally.groups.push({ name: unit.group, containers: names, status: 'ok', windowMs: gate.windowMs });
    return;
  }
  // Stopped because another unit failed first: that failure is the one said.
  if (crew.stopOthers.signal.aborted && tally.abortedAt) return;
  const error = `group ${unit.group} not taken: ${gate.failed}`;
  tally.groups.push({ name: unit.group, containers: names, status: 'failed', windowMs: gate.windowMs, error });
  const failed = members.map((c): [number, ContainerOutcome] => [place.get(c.id) ?? 0, failure(c.name, c.id, c.state, new BackupError(error))]);
  unitFailed(opts, crew, tally, failed, `group ${unit.group}`, log);
}

async function backUpAndStore(
  ctx: BackupContext,
  opts: BackupOptions,
  selected: Candidate[],
  crew: Crew,
  created: string,
  engineInfo: SnapshotSet['source']['engine'],
  outcomes: ContainerOutcome[],
): Promise<Omit<BackupResult, 'tag' | 'containers' | 'failed'>> {
  const { log } = ctx;
  const { records, failures, groups } = await backUpEach(ctx, opts, selected, crew);
  outcomes.push(...failures);
  if (records.length === 0) return { written: false, artifacts: [], destinations: [], groups };
  const env = ctx.env ?? {};
  const containers = records.map(({ layerStats: _unused, ...r }) => r);
  const set: SnapshotSet = {
    schemaVersion: schemaVersionOf(containers),
    mediaType: SET_MEDIA_TYPE,
    tag: opts.tag,
    created,
    tool: TOOL,
    source: {
      hostname: hostname(),
      engine: engineInfo,
      ...(env.GITHUB_SHA ? { revision: env.GITHUB_SHA } : {}),
      ...(env.GITHUB_RUN_ID ? { run: `${env.GITHUB_REPOSITORY ?? ''}/actions/runs/${env.GITHUB_RUN_ID}` } : {}),
    },
    containers,
    failures: outcomes.filter((o) => o.status === 'failed').map((o) => ({ name: o.name, error: o.error ?? '' })),
  };
  log.info(`Writing snapshot set ${opts.tag} to ${ctx.destinations.map((d) => d.label).join(', ')}`);
  const writes = await writeSetEverywhere(set, ctx.destinations);
  const incomplete = unwrittenLine(opts.tag, writes.placements);
  if (!writes.placements.some((p) => p.written)) throw new BackupError(incomplete ?? `Snapshot ${opts.tag} was not written.`);
  const windows = new Map(groups.map((g) => [g.name, g.windowMs]));
  for (const r of records) outcomes.push({ ...outcome(r, writes.refs.get(r.name) ?? [], crew.worker.notes.get(r.id)), ...(r.group ? { groupWindowMs: windows.get(r.group) } : {}) });
  return { written: true, artifacts: writes.artifacts, destinations: writes.placements, groups, ...(incomplete ? { incomplete } : {}) };
}
