/**
 * One container's backup: its spec, the hold window (decided in hold.ts, done by Holder in holder.ts),
 * the writable layer (full commit or delta); its volumes go through VolumePath (backup-volumes.ts).
 */
import type { Readable } from 'node:stream';
import type { BackupOptions } from '../core/options.js';
import { errorMessage } from '../core/log.js';
import { ACTION_WORDS } from '../core/words.js';
import type { ContainerInspect } from '../engine/containers.js';
import type { NetworkInspect } from '../engine/volumes-networks.js';
import { SET_SCOPE } from '../destinations/types.js';
import { formatBytes } from '../util/format.js';
import { TarChecker } from '../util/tar-check.js';
import { tempImageName } from '../core/run-names.js';
import { allHave, type StoreTarget } from './blobs.js';
import { storeSavedImage } from './image-archive.js';
import { layerMediaType, type Compression, type BlobDescriptor, type ContainerRecord, type ImageRecord, type VolumeRecord } from './manifest.js';
import { imageConfigWithoutEnv, secretEnvWarning, specWithoutEnv } from './secret-env.js';
import type { Candidate } from './select.js';
import type { MemberGate } from './groups.js';
import { Spool, type Spooled } from './spool.js';
import type { Meter } from '../util/progress.js';
import { captureSpec, containerReferences, userNetworkNames } from './spec.js';
import { mountsToTake } from './volumes.js';
import { deltaTar, isEmpty, planDelta } from './layer-delta.js';
import { scanLayer, type LayerIndex } from './layer-index.js';
import {
  DEFAULT_LAYER_COMPACTION,
  MAX_DELTA_READS,
  MAX_INDEXED_PATHS,
  deltaAllowed,
  previousLayer,
  storeDelta,
  storeFullIndex,
  type PreviousLayer,
} from './writable-layer.js';
import { type BackupContext, BackupError, phase, runMeter, runTargets } from './backup-context.js';
import type { History } from './backup-history.js';
import { holdPlan, stateOf } from './hold.js';
import { Holder } from './holder.js';
import { VolumePath, type TakenVolume, type VolumePlan } from './backup-volumes.js';
import { FREE_TURN, type Turn } from './turns.js';

export class ContainerBackup {
  constructor(
    private readonly ctx: BackupContext,
    private readonly opts: BackupOptions,
    private readonly history: History,
    private readonly compression: Compression,
    private readonly spool: Spool,
  ) {
    this.volumes = new VolumePath(ctx, opts, history, compression, spool);
    this.holder = new Holder(ctx, opts, this.notes);
  }

  /** Why a container was not held as asked, by container ID. */
  readonly notes = new Map<string, string>();

  /** The volume path, with the set's chunk budget (one worker per set). */
  private readonly volumes: VolumePath;

  /** Holds the container still around its layer and volumes, and puts it back. */
  private readonly holder: Holder;

  private get meter(): Meter {
    return runMeter(this.ctx);
  }

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
    if (hooksSkipped) log.info(`${name}: not running (${state}), so its pre- and post-command are not run`);
    try {
      const {
        value: layer,
        heldMs,
        held,
      } = await this.holder.withHooks(info.Id, name, hooks, gate, () =>
        this.holder.held(info, name, hold, mounts.length, gate, async (heldAs) => {
          signal?.throwIfAborted();
          // The host may read the layer's upper directory only while no process of the container can change it.
          const atRest = heldAs !== 'none' || !running;
          const now =
            (this.opts.layerCompaction ?? DEFAULT_LAYER_COMPACTION) > 0
              ? await phase('writable layer changes', () => scanLayer(engine, info.Id, MAX_INDEXED_PATHS, signal, { hostReads: atRest }))
              : undefined;
          let committed = previous && now ? await this.takeDelta(info, name, previous, now, pending) : undefined;
          if (!committed) {
            journal?.tempImage(tempRef);
            log.info(`${name}: committing the writable layer`);
            const commit = engine.commit(info.Id, { pause: false, ...temp });
            committed = { kind: 'commit', imageId: await phase('commit', () => (journal ? journal.track(commit) : commit)), now };
          }
          for (const plan of plans) {
            const { mount } = plan;
            log.info(`${name}: reading ${mount.type === 'bind' ? `bind mount ${mount.source}` : `volume ${mount.name}`}`);
            taken.push(await phase(`volume ${mount.name || mount.destination}`, () => this.volumes.takeVolume(info.Id, name, plan, pending)));
          }
          return committed;
        }),
      );
      signal?.throwIfAborted();
      // The volumes (from the spool) are stored while the engine saves the image: its save writes
      // the whole image to a temporary directory before it sends a byte (Engine 20.10).
      const storingVolumes = (async () => {
        for (const t of taken)
          volumes.push(await phase(`volume ${t.plan.mount.name || t.plan.mount.destination}`, () => this.volumes.storeVolume(name, t, stats)));
      })();
      const storingImage = (async () => {
        await turn.wait();
        return phase('image layers', () => (layer.kind === 'delta' ? this.storeDeltaImage(name, layer) : this.saveCommit(layer, name)));
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
      turn.done();
      await Promise.allSettled(pending.map((p) => this.spool.release(p)));
      await engine.removeImage(tempRef, { force: true });
      journal?.tempImageRemoved(tempRef);
    }
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

  /** While held: reads what changed since `previous` (plan-delta) into the spool, touching no destination. */
  private async takeDelta(info: ContainerInspect, name: string, previous: PreviousLayer, now: LayerIndex, pending: Spooled[]): Promise<TakenLayer | undefined> {
    const plan = planDelta(previous.index, now);
    if (plan.reads.length > MAX_DELTA_READS) {
      this.ctx.log.info(
        `${name}: ${plan.reads.length} path(s) of the writable layer changed since the last snapshot (more than ${MAX_DELTA_READS}, each read alone): the whole layer is taken again`,
      );
      return undefined;
    }
    this.ctx.log.info(
      `${name}: reading what changed in the writable layer since the last snapshot: ${plan.reads.length} path(s), ${plan.whiteouts.length} removed`,
    );
    if (isEmpty(plan)) return { kind: 'delta', previous, now };
    await this.spool.ready();
    const mountPoints = new Set((info.Mounts ?? []).map((m) => m.Destination));
    const spooled = await phase('writable layer changes', () => this.spool.take(deltaTar(this.ctx.engine, info.Id, plan, mountPoints, this.ctx.signal)));
    pending.push(spooled);
    return { kind: 'delta', previous, now, spooled };
  }

  /** Once the container is back: the delta layer (checked as a whole tar), its config and the index stored. */
  private async storeDeltaImage(
    name: string,
    layer: TakenLayer & { kind: 'delta' },
  ): Promise<{ image: Omit<ImageRecord, 'baseImage'>; stats: { written: number; reused: number } }> {
    let tar: Readable | undefined;
    if (layer.spooled) {
      const file = this.spool.read(layer.spooled);
      tar = file.pipe(new TarChecker(`${name}: writable layer changes`));
      file.on('error', (err) => tar?.destroy(err));
      this.ctx.log.info(`${name}: storing the writable layer's changes (${formatBytes(layer.spooled.bytes)} before compression)`);
    }
    const exclude = this.opts.excludeEnv;
    const stored = await storeDelta(
      layer.previous,
      tar,
      layer.now,
      { layers: this.targets({ container: name }), set: this.targets(SET_SCOPE) },
      {
        layerMediaType: layerMediaType(this.compression),
        compression: this.compression,
        created: (this.ctx.now?.() ?? new Date()).toISOString(),
        rewriteConfig: exclude.length > 0 ? (config: Buffer) => imageConfigWithoutEnv(config, exclude) : undefined,
      },
    );
    return { image: stored.image, stats: { written: stored.written, reused: layer.previous.image.layers.length } };
  }

  /** Once the container is back: the committed image stored, and the writable layer's index beside it. */
  private async saveCommit(
    layer: TakenLayer & { kind: 'commit' },
    name: string,
  ): Promise<{ image: Omit<ImageRecord, 'baseImage'>; stats: { written: number; reused: number } }> {
    const { image, stats } = await this.saveImage(layer.imageId, name);
    const index = await storeFullIndex(layer.now, this.targets(SET_SCOPE), this.compression);
    // Without excluded variables, the stored config is another image: its ID is that config's digest.
    const id = this.opts.excludeEnv.length > 0 ? image.config.contentDigest : layer.imageId;
    return { image: { ...image, id, ...index }, stats };
  }

  private async saveImage(
    imageId: string,
    name: string,
  ): Promise<{ image: Pick<ImageRecord, 'config' | 'layers'>; stats: { written: number; reused: number } }> {
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
    const base = {
      diffIds,
      layerMediaType: mediaType,
      configTargets: this.targets(SET_SCOPE),
      rewriteConfig,
      meter: (bytes: number) => this.meter(`${name}: layer ${n} of ${diffIds.length}`, bytes),
    };
    let n = 0;
    const onLayer = (bytes: number, known: boolean) =>
      this.ctx.log.info(`${name}: ${known ? 'checking' : 'storing'} layer ${++n} of ${diffIds.length} (${formatBytes(bytes)})`);
    this.ctx.log.info(`${name}: reading the image (${diffIds.length} layer(s)) from the engine`);
    let result = await storeSavedImage(await engine.saveImage(imageId, signal), targets, { ...base, known, onLayer });
    if ('retry' in result) {
      n = 0;
      result = await storeSavedImage(await engine.saveImage(imageId, signal), targets, { ...base, known: new Map(), onLayer });
    }
    if ('retry' in result) throw new BackupError(`${name}: could not read the committed image consistently`);
    return { image: result.image, stats: { written: result.written, reused: result.reused } };
  }
}

/** The writable layer as taken while held: committed whole, or what changed since `previous` spooled (absent: nothing did). */
export type TakenLayer = { kind: 'commit'; imageId: string; now?: LayerIndex } | { kind: 'delta'; previous: PreviousLayer; now: LayerIndex; spooled?: Spooled };
