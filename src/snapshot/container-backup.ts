/**
 * One container's backup: its spec, the hold window (decided in hold.ts, done by Holder in holder.ts),
 * the writable layer (full commit or delta); its volumes go through VolumePath (backup-volumes.ts).
 */
import type { BackupOptions } from '../core/options.js';
import { errorMessage } from '../core/log.js';
import { ACTION_WORDS } from '../core/words.js';
import type { ContainerInspect } from '../engine/containers.js';
import type { NetworkInspect } from '../engine/volumes-networks.js';
import { SET_SCOPE } from '../destinations/types.js';
import { tempImageName } from '../core/run-names.js';
import type { StoreTarget } from './blobs.js';
import { layerMediaType, type Compression, type ContainerRecord, type VolumeRecord } from './manifest.js';
import { secretEnvWarning, specWithoutEnv } from './secret-env.js';
import type { Candidate } from './select.js';
import type { MemberGate } from './groups.js';
import { Spool, SpoolError, type Spooled } from './spool.js';
import { captureSpec, containerReferences, userNetworkNames } from './spec.js';
import { mountsToTake } from './volumes.js';
import { deltaBaseMismatch, deltaTar, isEmpty, planDelta, upperDeltaTar, type DeltaPlan } from './layer-delta.js';
import { markRacy, scanLayerOn, type LayerIndex } from './layer-index.js';
import type { UpperDir } from './layer-upper.js';
import { upperLayerTar } from './layer-upper-tar.js';
import { LayerStore, hostImageConfig, type TakenLayer } from './layer-store.js';
import { imageStoreRoot } from './host-image-store.js';
import { DEFAULT_LAYER_COMPACTION, MAX_DELTA_READS, MAX_INDEXED_PATHS, deltaAllowed, previousLayer, type PreviousLayer } from './writable-layer.js';
import { type BackupContext, phase, runMeter, runTargets } from './backup-context.js';
import type { History } from './backup-history.js';
import { holdPlan, stateOf } from './hold.js';
import { Holder, addNote } from './holder.js';
import { VolumePath, type PreparedRead, type TakenVolume, type VolumePlan } from './backup-volumes.js';
import { DeferredChange } from './deferred-read.js';
import { FREE_TURN, type Turn } from './turns.js';

export class ContainerBackup {
  constructor(
    private readonly ctx: BackupContext,
    private readonly opts: BackupOptions,
    private readonly history: History,
    private readonly compression: Compression,
    private readonly spool: Spool,
    /** The names and IDs of the containers this run takes: a container that takes volumes from one outside them is said to need it. */
    private readonly selected: ReadonlySet<string> = new Set(),
  ) {
    this.volumes = new VolumePath(ctx, opts, history, compression, spool);
    this.holder = new Holder(ctx, opts, this.notes);
    this.store = new LayerStore(ctx, opts, history, compression, spool);
  }

  /** Stores the image once the container is back. */
  private readonly store: LayerStore;

  /** Why a container was not held as asked, by container ID. */
  readonly notes = new Map<string, string>();

  /** The volume path, with the set's chunk budget (one worker per set). */
  private readonly volumes: VolumePath;

  /** Holds the container still around its layer and volumes, and puts it back. */
  private readonly holder: Holder;

  private targets(scope: StoreTarget['scope']): StoreTarget[] {
    return runTargets(this.ctx, scope);
  }

  /**
   * Backs up one container. `turn` orders the image-layer phase of containers taken at once (selection
   * order), so that a base layer they share is stored by the first and reused by the next. `gate`:
   * the container's place in its consistency group, whose members are hooked, held, taken and put back together.
   */
  async run(candidate: Candidate, turn: Turn = FREE_TURN, gate?: MemberGate): Promise<ContainerRecord & { blobStats: { written: number; reused: number } }> {
    const { engine, log, signal } = this.ctx;
    const info = await engine.inspectContainer(candidate.id, signal);
    const name = info.Name.replace(/^\//, '');
    const state = stateOf(info);
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
    const spec = specWithoutEnv(
      captureSpec(info, networks, (ref) => names.get(ref) ?? ref),
      this.opts.excludeEnv,
    );
    const keyring = this.ctx.destinations[0]?.keyring;
    const how = !keyring?.encrypting ? 'clear' : keyring.keepsImagesPullable ? 'pullable' : undefined;
    const clear = how && secretEnvWarning(name, (spec.config.Env as string[] | undefined) ?? [], this.opts.words ?? ACTION_WORDS, how);
    if (clear) log.warning(clear);
    const mounts = mountsToTake(info, this.opts);
    const { running, hold, note, warn, hooks, hooksSkipped } = holdPlan(info, this.opts);
    if (note) this.notes.set(info.Id, note);
    // Its --volumes-from volumes are taken here, but a restore mounts them from their owner, which must be restored too or be there.
    const owners = ((info.HostConfig.VolumesFrom as string[] | null) ?? []).map((v) => v.split(':')[0]);
    const outside = owners.filter((ref) => !this.selected.has(ref) && !this.selected.has(names.get(ref) ?? ref)).map((ref) => names.get(ref) ?? ref);
    if (outside.length > 0) {
      const needs = `takes volumes from ${outside.join(', ')} (--volumes-from), which this set does not hold: it restores only where ${outside.length > 1 ? 'they are' : 'that container is'} (back them up together)`;
      log.warning(`${name}: ${needs}`);
      addNote(this.notes, info.Id, needs);
    }
    if (warn)
      log.warning(
        `${name}: started with --rm (auto-remove), so it is not stopped (the engine would remove it and its anonymous volumes): ${hold === 'pause' ? 'paused' : 'taken running'} instead`,
      );
    else if (note) log.info(`${name}: restarting (its restart policy runs it again after each exit): taken as it is, between two runs`);
    const journal = this.ctx.journal;
    // Named before the commit starts, so an interruption mid-commit still knows what to remove.
    const temp = tempImageName(info.Id);
    const tempRef = `${temp.repo}:${temp.tag}`;
    const volumes: VolumeRecord[] = [];
    const stats = { written: 0, reused: 0 };
    const plans: VolumePlan[] = [];
    for (const mount of mounts) plans.push(await this.volumes.planVolume(name, mount));
    // What is read while held goes to the spool, and to the destinations only once the container is back.
    const taken: TakenVolume[] = [];
    const pending: Spooled[] = [];
    const previous = await this.previousLayer(info.Id, name);
    // Read before the hold: the base image's config, for a writable layer made on this host.
    const baseConfig = await hostImageConfig(info);
    // Images are read from the engine's own store where its files are this host's (a local engine).
    const imageStore = engine.describe().startsWith('unix://') ? imageStoreRoot(info.GraphDriver as Parameters<typeof imageStoreRoot>[0]) : undefined;
    if (hooksSkipped) log.info(`${name}: not running (${state}), so its pre- and post-command are not run`);
    // Before the hold: what the held read of each volume on this host can have ready (its directory checked, a getfattr run).
    const prepared: (PreparedRead | undefined)[] = [];
    try {
      for (const plan of plans) prepared.push(await this.volumes.prepareHostRead(info, plan, hold !== 'none' || !running));
      // One hold, its layer and volumes read; `defer`: settled files of the volumes are read once the container is back.
      const takeHeld = (defer: boolean) =>
        this.holder.withHooks(info.Id, name, hooks, gate, () =>
          this.holder.held(info, name, hold, mounts.length, gate, async (heldAs) => {
            signal?.throwIfAborted();
            // The host may read the layer's upper directory only while no process of the container can change it.
            const atRest = heldAs !== 'none' || !running;
            // Each mount's getfattr (for a read on this host) runs beside the layer's read.
            const xattrs = plans.map((plan) => this.volumes.earlyGetfattr(info, plan, atRest));
            // The writable layer and the volumes are read at once: the layer's walk runs in a child process
            // (layer-walk.ts) and its probes are the engine's, while this thread walks the volumes. Not over
            // ssh:// or tcp://: there both would share the run's one connection (an SSH server may refuse a
            // second channel at once, "Unable to exec"), and nothing is walked on this host.
            const beside = engine.describe().startsWith('unix://');
            const layerTaken = (async (): Promise<TakenLayer> => {
              const { index: now, upper } =
                (this.opts.layerCompaction ?? DEFAULT_LAYER_COMPACTION) > 0
                  ? await phase('writable layer changes', () =>
                      scanLayerOn(engine, info.Id, MAX_INDEXED_PATHS, signal, { hostReads: atRest, settleSeconds: this.opts.settleSeconds }),
                    )
                  : {};
              let committed = previous && now ? await this.takeDelta(info, name, previous, now, pending, upper) : undefined;
              // The whole layer from this host's upper directory, read while no process can change it.
              if (!committed && now && upper && atRest) committed = await this.takeWhole(info, name, now, upper, baseConfig, pending);
              if (!committed) {
                // A commit runs to its end once asked for (the engine takes no cancel): none is started for a cancelled run.
                signal?.throwIfAborted();
                journal?.tempImage(tempRef);
                log.info(`${name}: committing the writable layer`);
                const commit = engine.commit(info.Id, { pause: false, ...temp });
                committed = { kind: 'commit', imageId: await phase('commit', () => (journal ? journal.track(commit) : commit)), now, base: info.Image };
              }
              return committed;
            })();
            const volumesTaken = (async () => {
              if (!beside) await layerTaken;
              for (const [i, plan] of plans.entries()) {
                const { mount } = plan;
                log.info(`${name}: reading ${mount.type === 'bind' ? `bind mount ${mount.source}` : `volume ${mount.name}`}`);
                taken.push(
                  await phase(`volume ${mount.name || mount.destination}`, () =>
                    this.volumes.takeVolume(info.Id, name, plan, pending, xattrs[i], defer, prepared[i]),
                  ),
                );
              }
            })();
            // Both end before either's error is thrown: what they spooled is released only once nothing writes it.
            const [layerDone, volumesDone] = await Promise.allSettled([layerTaken, volumesTaken]);
            if (layerDone.status === 'rejected') {
              // Said when it is a failure of its own (not the same cancel).
              if (volumesDone.status === 'rejected' && volumesDone.reason !== layerDone.reason && !signal?.aborted)
                log.warning(`${name}: its volumes failed too: ${errorMessage(volumesDone.reason)}`);
              throw layerDone.reason;
            }
            if (volumesDone.status === 'rejected') throw volumesDone.reason;
            return layerDone.value;
          }),
        );
      // A member of a consistency group is held with the others: it is never taken again alone.
      let { value: layer, heldMs, held } = await takeHeld(!gate);
      // A directory prepared and not taken (the hold read the volume through the engine) is not kept open while storing.
      for (const p of prepared) p?.close();
      const changed = await this.readLater(name, taken);
      if (changed) {
        log.info(`${name}: ${changed}: taken again, every file read while it is held`);
        // This hold's reads are dropped whole: the next one reads everything while the container is held.
        await Promise.allSettled(pending.splice(0).map((p) => this.spool.release(p)));
        taken.length = 0;
        if (layer.kind === 'commit') {
          await engine.removeImage(tempRef, { force: true });
          journal?.tempImageRemoved(tempRef);
        }
        const firstMs = heldMs;
        ({ value: layer, heldMs, held } = await takeHeld(false));
        // The time held is both holds' (pausedMs, stoppedMs): the container was held twice.
        heldMs += firstMs;
      }
      signal?.throwIfAborted();
      const missing = taken.flatMap((t) => (t.incomplete ? [t.incomplete] : []));
      for (const m of missing) addNote(this.notes, info.Id, m);
      // The volumes (from the spool) are stored while the image is read (from the engine's store on this
      // host, else with docker save, which writes the whole image to a temporary directory before it
      // sends a byte on Engine 20.10).
      const storingVolumes = (async () => {
        for (const t of taken)
          volumes.push(await phase(`volume ${t.plan.mount.name || t.plan.mount.destination}`, () => this.volumes.storeVolume(name, t, stats)));
      })();
      const storingImage = (async () => {
        await turn.wait();
        return phase('image layers', () => this.store.store(name, layer, imageStore));
      })();
      // Both end before either's error is thrown: the spool is released only once nothing reads it.
      const [volumesDone, imageDone] = await Promise.allSettled([storingVolumes, storingImage]);
      if (volumesDone.status === 'rejected') {
        // The container fails with the first; the image's own failure is said too, not lost.
        if (imageDone.status === 'rejected') this.ctx.log.warning(`${name}: the image layers failed too: ${errorMessage(imageDone.reason)}`);
        throw volumesDone.reason;
      }
      if (imageDone.status === 'rejected') throw imageDone.reason;
      const { image, stats: layerStats } = imageDone.value;
      // Containers later in this run share base layers with this one: stored once per set.
      for (const layer of image.layers) if (!this.history.layers.has(layer.contentDigest)) this.history.layers.set(layer.contentDigest, layer);
      turn.done();
      stats.written += layerStats.written;
      stats.reused += layerStats.reused;
      const pausedMs = held === 'pause' ? heldMs : 0;
      return {
        name,
        id: info.Id,
        state: state as ContainerRecord['state'],
        image: { ...image, baseImage: info.Config.Image },
        volumes,
        spec,
        pausedMs,
        ...(held === 'stop' ? { stoppedMs: heldMs } : {}),
        blobStats: stats,
      };
    } finally {
      for (const p of prepared) p?.close();
      turn.done();
      await Promise.allSettled(pending.map((p) => this.spool.release(p)));
      await engine.removeImage(tempRef, { force: true });
      journal?.tempImageRemoved(tempRef);
    }
  }

  /**
   * Once the container is back: the files each volume's read left for later, read into its spooled
   * archive (VolumePath.readLater). Returns what changed before its read ("VOLUME: PATH changed
   * after the container was back, before it was read (WHY)"), the reads then stopped, else undefined.
   */
  private async readLater(name: string, taken: TakenVolume[]): Promise<string | undefined> {
    for (const t of taken) {
      const { mount } = t.plan;
      try {
        await phase(`volume ${mount.name || mount.destination} (read later)`, () => this.volumes.readLater(name, t));
      } catch (err) {
        // phase() says which phase failed, the DeferredChange its cause.
        const change = err instanceof Error && err.cause instanceof DeferredChange ? err.cause : err;
        // The held copies of the volumes not read yet go now: the container is taken again.
        for (const other of taken) other.deferred?.discard();
        if (!(change instanceof DeferredChange)) throw err;
        return `${mount.name || mount.destination}: ${Buffer.from(change.rel, 'latin1').toString('utf8')} changed after the container was back, before it was read (${change.why})`;
      }
    }
    return undefined;
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
      // An index written before racy entries were marked: when its scan was is unknown (a set after it may have
      // reused it unchanged), so every regular file of it is racy: taken again once.
      if (previous && !previous.index.racyMarked) markRacy(previous.index.entries, {});
      if (previous && previous.deltas >= compaction)
        this.ctx.log.info(
          `${name}: ${previous.deltas} delta layer(s) on the last full writable layer (layer-compaction ${compaction}): the whole layer is taken again`,
        );
      return deltaAllowed(previous, compaction) ? previous : undefined;
    } catch (err) {
      this.ctx.log.info(`${name}: the last snapshot's writable layer could not serve as a base (${errorMessage(err)}): the whole layer is taken`);
      return undefined;
    }
  }

  /**
   * While held: reads what changed since `previous` (plan-delta) into the spool, touching no
   * destination: from the upper directory `upper` where the index was made from it
   * (layer-delta.ts upperDeltaTar), else (or when the host cannot read a path as the engine
   * would: said in one line) one engine archive request per path.
   */
  private async takeDelta(
    info: ContainerInspect,
    name: string,
    previous: PreviousLayer,
    now: LayerIndex,
    pending: Spooled[],
    upper?: UpperDir,
  ): Promise<TakenLayer | undefined> {
    const mismatch = deltaBaseMismatch(previous.index, now);
    if (mismatch) {
      this.ctx.log.info(`${name}: ${mismatch}: the whole layer is taken again`);
      return undefined;
    }
    const plan = planDelta(previous.index, now);
    if (plan.reads.length + plan.parents.length > MAX_DELTA_READS) {
      this.ctx.log.info(
        `${name}: ${plan.reads.length + plan.parents.length} path(s) of the writable layer changed since the last snapshot (more than ${MAX_DELTA_READS}, each read alone): the whole layer is taken again`,
      );
      return undefined;
    }
    this.ctx.log.info(
      `${name}: reading what changed in the writable layer since the last snapshot: ${plan.reads.length} path(s), ${plan.whiteouts.length} removed${plan.opaque.length ? `, ${plan.opaque.length} director${plan.opaque.length === 1 ? 'y' : 'ies'} made again (opaque)` : ''}`,
    );
    if (isEmpty(plan)) return { kind: 'delta', previous, now };
    await this.spool.ready();
    const spooled = (upper && now.source === 'upper' && (await this.hostDelta(name, plan, upper))) || (await this.engineDelta(info, plan));
    pending.push(spooled);
    return { kind: 'delta', previous, now, spooled };
  }

  /** The delta of `plan` from the upper directory into the spool; undefined (why said in one line) when the host cannot make it. Throws a SpoolError, or the signal's reason. */
  private async hostDelta(name: string, plan: DeltaPlan, upper: UpperDir): Promise<Spooled | undefined> {
    const { log, signal } = this.ctx;
    const fallback = (why: string) => {
      log.info(`${name}: the writable layer's changes are read through the engine: ${why}`);
      return undefined;
    };
    const tar = await upperDeltaTar(upper, plan, signal);
    if (typeof tar === 'string') return fallback(tar);
    try {
      return await this.spool.take(tar);
    } catch (err) {
      signal?.throwIfAborted();
      if (err instanceof SpoolError) throw err;
      return fallback(`the host could not read it as the engine would (${errorMessage(err)})`);
    }
  }

  /** The delta of `plan` read through the engine, one archive request per path, into the spool. */
  private engineDelta(info: ContainerInspect, plan: DeltaPlan): Promise<Spooled> {
    const mountPoints = new Set((info.Mounts ?? []).map((m) => m.Destination));
    return phase('writable layer changes', () => this.spool.take(deltaTar(this.ctx.engine, info.Id, plan, mountPoints, this.ctx.signal)));
  }

  /**
   * While held: the whole writable layer as a tar made on this host from the trusted upper
   * directory `upper` (layer-upper-tar.ts) into the spool, instead of a commit. Undefined (the
   * reason logged in one line: the engine commits it then) when it cannot be made here as the
   * engine's overlay2 diff would make it, or when the spool runs short. Throws when the run is aborted.
   */
  private async takeWhole(
    info: ContainerInspect,
    name: string,
    now: LayerIndex,
    upper: UpperDir,
    baseConfig: Buffer | undefined,
    pending: Spooled[],
  ): Promise<TakenLayer | undefined> {
    const { log, signal } = this.ctx;
    const fallback = (why: string) => {
      log.info(`${name}: the writable layer is committed by the engine: ${why}`);
      return undefined;
    };
    await this.spool.ready();
    let tar;
    try {
      tar = await upperLayerTar(upper, signal);
    } catch (err) {
      // A cancel (its getfattr runs killed) is no reason to commit instead.
      signal?.throwIfAborted();
      return fallback(`its upper directory could not be read (${errorMessage(err)})`);
    }
    if (typeof tar === 'string') return fallback(tar);
    log.info(`${name}: reading the writable layer from its upper directory on this host`);
    let spooled: Spooled;
    try {
      spooled = await this.spool.take(tar, runMeter(this.ctx)(`${name}: reading the writable layer`));
    } catch (err) {
      signal?.throwIfAborted();
      // The spool file is gone: the engine's commit needs no spool room for the layer, as before this path.
      if (err instanceof SpoolError) return fallback(`the spool has no room for it (${errorMessage(err)})`);
      return fallback(`the host could not read it as the engine would (${errorMessage(err)})`);
    }
    pending.push(spooled);
    return { kind: 'host', now, spooled, base: info.Image, config: info.Config, ...(baseConfig ? { baseConfig } : {}) };
  }
}
