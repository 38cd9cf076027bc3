import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { RestoreOptions } from '../core/options.js';
import { errorMessage, type Logger } from '../core/log.js';
import { ACTION_WORDS } from '../core/words.js';
import { repoComponent } from '../core/names.js';
import type { ContainerInspect } from '../engine/containers.js';
import type { Engine } from '../engine/engine.js';
import { ConflictError } from '../engine/errors.js';
import { SET_SCOPE, type BlobScope, type Destination } from '../destinations/types.js';
import { openContent, verifyBlob as verifyStored } from './blobs.js';
import { loadArchive } from './image-archive.js';
import { isChunked, storedBlobs, type BlobDescriptor, type ContainerRecord, type SnapshotSet, type VolumeRecord } from './manifest.js';
import { captureSpec, containerReferences, createNetworkOptions, createOptions, renameReferences } from './spec.js';
import { Filler, RUN_LABEL } from './fill.js';
import { InterruptedError, RestoreTransaction, hasChanges, type CreatedNetwork, type ReplacedVolume } from './transaction.js';
import { rollBackTargets } from './restore-rollback.js';
import { mountsToTake } from './volumes.js';
import { mergedWith, readMetadataRecord } from './metadata-merge.js';
import { sparseOf, type MetadataRecord, type SparseFiles } from './volume-metadata.js';
import { warnEngineCompat } from './engine-compat.js';
import { checkTarget, mapPorts, willStart } from './target-check.js';
import { refuseClearWithKey } from './sealed-sets.js';

export interface RestoreContext {
  engine: Engine;
  source: Destination;
  log: Logger;
  /** Records each change before it is made, so an interruption can be put back (one in memory by default). */
  txn?: RestoreTransaction;
}

export interface RestoredContainer {
  name: string;
  from: string;
  id: string;
  state: string;
  status: 'ok' | 'failed';
  error?: string;
}

export interface RestoreResult {
  tag: string;
  containers: RestoredContainer[];
  failed: number;
  /** The engine the set was taken on, as the set records it. */
  sourceEngine?: SnapshotSet['source']['engine'];
}

export class RestoreError extends Error {
  override name = 'RestoreError';
}

/**
 * The local name of a restored image. Not the registry's reference: the image pushed there
 * carries OCI labels, so it is a different image from the one restored.
 */
export function localImageName(container: string): string {
  return `container-snapshot/${repoComponent(container)}`;
}

function imageScope(c: ContainerRecord): BlobScope {
  return { container: c.name };
}

export async function findSet(source: Destination, snapshot: string): Promise<SnapshotSet> {
  await source.check('read');
  const set = await source.readSet(snapshot);
  if (set) refuseClearWithKey(set, source.keyring, source.label);
  if (set) return set;
  const tags = (await source.listSets()).map((s) => s.tag);
  throw new RestoreError(
    snapshot === 'latest'
      ? `No complete snapshot set in ${source.label}.`
      : `Snapshot '${snapshot}' not found in ${source.label}. Expected one of: ${tags.slice(0, 10).join(', ') || '(none)'}.`,
  );
}

/** The containers of `set` that `opts.containers` names (all when empty); throws RestoreError on a name the set lacks or a stray rename. */
export function chooseContainers(set: SnapshotSet, opts: RestoreOptions): ContainerRecord[] {
  const names = set.containers.map((c) => c.name);
  const unknown = opts.containers.filter((n) => !names.includes(n));
  if (unknown.length > 0) {
    throw new RestoreError(`Snapshot ${set.tag} has no container ${unknown.join(', ')}. Expected one of: ${names.join(', ')}.`);
  }
  const chosen = opts.containers.length === 0 ? set.containers : set.containers.filter((c) => opts.containers.includes(c.name));
  const renamable = new Set(chosen.flatMap((c) => [c.name, ...c.volumes.filter((v) => v.type === 'volume' && !v.anonymous).map((v) => v.name)]));
  const stray = [...opts.rename.keys()].filter((k) => !renamable.has(k));
  if (stray.length > 0) {
    throw new RestoreError(`Cannot rename ${stray.join(', ')}: not a container or named volume being restored. Expected one of: ${[...renamable].join(', ')}.`);
  }
  return chosen;
}

/**
 * Reads every blob the restore will use and checks both of its checksums. A blob already in `seen`
 * (by scope and digest) is not read again, and each one that passes is added: a verification of
 * several sets reads the blobs they share once.
 */
export async function verifyContainers(source: Destination, containers: ContainerRecord[], includeVolumes: boolean, log: Logger, seen = new Set<string>()): Promise<number> {
  const verifyBlob = async (dest: Destination, scope: BlobScope, blob: BlobDescriptor, what: string) => {
    const key = `${JSON.stringify(scope)} ${blob.digest}`;
    if (seen.has(key)) return;
    await verifyStored(dest, scope, blob, what);
    seen.add(key);
  };
  let count = 0;
  const volumeBlobs = (c: ContainerRecord) => c.volumes.reduce((n, v) => n + storedBlobs(v.blob).length + (v.metadata?.record ? 1 : 0), 0);
  const blobs = containers.reduce((n, c) => n + 1 + c.image.layers.length + (includeVolumes ? volumeBlobs(c) : 0), 0);
  log.info(`Verifying ${blobs} blob(s) of ${containers.length} container(s) (each read in full)`);
  for (const c of containers) {
    const scope = imageScope(c);
    await verifyBlob(source, SET_SCOPE, c.image.config, `${c.name} image config`);
    for (const [i, layer] of c.image.layers.entries()) await verifyBlob(source, scope, layer, `${c.name} layer ${i}`);
    count += 1 + c.image.layers.length;
    if (includeVolumes) {
      for (const v of c.volumes) {
        const what = `${c.name} volume ${v.name || v.destination}`;
        // Each chunk on its own: sets share most of them, and `seen` reads each once.
        if (isChunked(v.blob)) for (const [i, chunk] of v.blob.chunks.entries()) await verifyBlob(source, SET_SCOPE, chunk, `${what} chunk ${i}`);
        else await verifyBlob(source, SET_SCOPE, v.blob, what);
        if (v.metadata?.record) await verifyBlob(source, SET_SCOPE, v.metadata.record, `${what} side record`);
      }
      count += volumeBlobs(c);
    }
    log.info(`${c.name}: checksums verified`);
  }
  return count;
}

/**
 * Mount points of `c` that come from another container through `--volumes-from`: those it does
 * not declare itself (its binds, mounts and `Config.Volumes`). They belong to that container and
 * are restored through it, never through `c`.
 */
export function inheritedMounts(c: ContainerRecord): Set<string> {
  const hc = c.spec.hostConfig;
  if (!((hc.VolumesFrom as string[] | null) ?? []).length) return new Set();
  const declared = new Set<string>([
    ...((hc.Binds as string[] | null) ?? []).map((b) => b.split(':')[1]),
    ...((hc.Mounts as Array<{ Target?: string }> | null) ?? []).map((m) => m.Target ?? ''),
    ...Object.keys((c.spec.config.Volumes as Record<string, unknown> | null) ?? {}),
  ]);
  return new Set(c.volumes.filter((v) => !declared.has(v.destination)).map((v) => v.destination));
}

/** A local-driver volume mounted as tmpfs: its content lives in memory only, and nothing on disk can be clobbered. */
export function isTmpfs(v: VolumeRecord): boolean {
  return v.driverOptions?.type === 'tmpfs' || v.driverOptions?.device === 'tmpfs';
}

/**
 * A container's own anonymous volumes: those its configuration or image declares, not those it
 * takes from another container with `--volumes-from` (they are that container's).
 */
function anonymousVolumes(info: ContainerInspect): Array<{ destination: string; volume: string }> {
  const declared = new Set([
    ...Object.keys((info.Config?.Volumes as Record<string, unknown> | null) ?? {}),
    ...((info.HostConfig?.Mounts as Array<{ Type?: string; Source?: string; Target?: string }> | null) ?? []).filter((m) => m.Type === 'volume' && !m.Source).map((m) => m.Target ?? ''),
  ]);
  return mountsToTake(info, { includeVolumes: true, includeBindMounts: false })
    .filter((m) => m.anonymous && declared.has(m.destination))
    .map((m) => ({ destination: m.destination, volume: m.name }));
}

class ContainerRestore {
  /** Volumes already filled by this run (two containers of a set may share one). */
  private readonly filled = new Set<string>();

  constructor(
    private readonly ctx: RestoreContext,
    private readonly opts: RestoreOptions,
    private readonly set: SnapshotSet,
    /** Names of the containers this run restores: their old instances may be replaced. */
    private readonly targets: Set<string>,
    private readonly txn: RestoreTransaction,
  ) {}

  private volumeName(v: VolumeRecord): string {
    return this.opts.rename.get(v.name) ?? v.name;
  }

  /** The container's own named volumes to restore (inherited ones belong to their owner). */
  private namedVolumes(c: ContainerRecord): VolumeRecord[] {
    if (!this.opts.includeVolumes) return [];
    const inherited = inheritedMounts(c);
    return c.volumes.filter((v) => v.type === 'volume' && !v.anonymous && !inherited.has(v.destination));
  }

  private filler(image: string): Filler {
    return new Filler(this.ctx.engine, image, this.txn.pending.run, this.ctx.log, this.txn.signal);
  }

  /**
   * Opens a volume's verified content, with the metadata the engine's archive dropped (its side
   * record) merged back in; a cancelled restore destroys it.
   */
  private content(c: ContainerRecord, v: VolumeRecord): () => Promise<Readable> {
    const what = `${c.name} volume ${v.name || v.destination}`;
    if (v.metadata?.notKept) this.ctx.log.warning(`${what}: not in the set: ${v.metadata.notKept}`);
    let record: Promise<MetadataRecord> | undefined;
    return async () => {
      this.txn.checkpoint();
      if (v.metadata?.record) record ??= readMetadataRecord(this.ctx.source, v.metadata.record, what);
      const merging = record && (await record);
      const stream = await openContent(this.ctx.source, SET_SCOPE, v.blob, what);
      return this.txn.track(merging ? mergedWith(stream, merging) : stream);
    };
  }

  /** The sparse files a volume's side record names (see `sparseOf`), read before the volume is filled. */
  private sparse(c: ContainerRecord, v: VolumeRecord): () => Promise<SparseFiles> {
    const record = v.metadata?.record;
    return async () => sparseOf(record && (await readMetadataRecord(this.ctx.source, record, `${c.name} volume ${v.name || v.destination}`)));
  }

  /** Loads the container's image unless the engine has it; `loaded` says whether this restore added it. */
  async loadImage(c: ContainerRecord): Promise<{ ref: string; loaded: boolean }> {
    const { engine, source } = this.ctx;
    const repo = localImageName(c.name);
    const ref = `${repo}:${this.set.tag}`;
    if (await engine.imageExists(c.image.id)) {
      await engine.tagImage(c.image.id, repo, this.set.tag);
      return { ref, loaded: false };
    }
    this.ctx.log.info(`${c.name}: loading image ${c.image.id.slice(0, 19)} (${c.image.layers.length} layer(s)) into the engine`);
    const loaded = await engine.loadImage(loadArchive(source, imageScope(c), c.image, ref));
    if (!(await engine.imageExists(c.image.id))) {
      throw new RestoreError(`${c.name}: the engine loaded ${loaded.join(', ') || 'nothing'}, not image ${c.image.id}`);
    }
    await engine.tagImage(c.image.id, repo, this.set.tag);
    return { ref, loaded: true };
  }

  /** Everything that would make this restore clobber something, or fail half-way, checked before any change. */
  async conflicts(c: ContainerRecord, target: string, image: string): Promise<string[]> {
    const { engine } = this.ctx;
    const filler = this.filler(image);
    const found: string[] = [];
    const w = this.opts.words ?? ACTION_WORDS;
    const [replace, rename] = [w.enable('replace'), w.name('rename')];
    if (!this.opts.replace && (await engine.findContainer(target))) found.push(`container '${target}' exists (${replace} replaces it, ${rename} ${c.name}=NEW restores it beside it)`);
    for (const ref of containerReferences(renameReferences(c.spec, this.opts.rename).hostConfig)) {
      if (!this.targets.has(ref) && !(await engine.findContainer(ref))) {
        found.push(`it needs container '${ref}' (volumes-from, links or a shared namespace), which is neither restored now nor on the engine`);
      }
    }
    for (const v of this.namedVolumes(c)) {
      const name = this.volumeName(v);
      if (!(await engine.inspectVolume(name))) {
        if (v.driverOptions?.device && !isTmpfs(v) && !this.opts.replace) found.push(`volume '${name}' would be created on ${v.driverOptions.device}, which may hold data (${replace} writes there)`);
        continue;
      }
      const others = (await engine.volumeUsers(name)).filter((u) => !(this.opts.replace && this.targets.has(u.name)));
      if (others.length > 0) found.push(`volume '${name}' is in use by ${others.map((u) => u.name).join(', ')}`);
      else if (!this.opts.replace && !isTmpfs(v) && (await filler.volumeHasData(name))) found.push(`volume '${name}' exists and is not empty (${replace} replaces it, ${rename} ${v.name}=NEW restores it beside it)`);
    }
    if (this.opts.includeVolumes && !this.opts.replace) {
      const inherited = inheritedMounts(c);
      for (const v of c.volumes.filter((m) => m.type === 'bind' && m.source && !inherited.has(m.destination))) {
        const probe = await filler.probeHostPath(v.source!);
        if (probe.hasData) found.push(`host path '${v.source}' ${probe.kind === 'directory' ? 'is not empty' : 'exists'}`);
      }
    }
    return found;
  }

  /**
   * With replace, before any other change: each old container is stopped and kept aside under
   * another name until its replacement runs (all of them first, since they may share volumes).
   */
  async setAside(target: string, image: string): Promise<void> {
    const { engine, log } = this.ctx;
    const old = await engine.findContainer(target);
    if (!old) return;
    const asideName = `${target}-replaced-${randomBytes(3).toString('hex')}`;
    this.txn.record(target, (e) => {
      e.image = image;
      e.aside = { id: old.Id, asideName, wasRunning: old.State.Running, wasPaused: old.State.Paused };
    });
    if (old.State.Paused) await engine.unpause(old.Id);
    if (old.State.Running) {
      log.info(`${target}: stopping the existing container (its own stop timeout)`);
      await engine.stop(old.Id); // its own stop signal and timeout
    }
    await engine.renameContainer(old.Id, asideName);
    log.info(`${target}: the existing container is stopped and kept as '${asideName}' until the restore succeeds`);
  }

  /**
   * Old containers set aside that still use a volume about to be emptied are removed, their
   * writable layer committed first so that a rollback can create them again.
   */
  private async releaseVolume(volume: string): Promise<void> {
    const { engine, log } = this.ctx;
    for (const user of await engine.volumeUsers(volume)) {
      const owner = this.txn.asideOf(user.id);
      if (!owner?.aside) throw new RestoreError(`volume '${volume}' is in use by ${user.name}; cannot replace it`);
      const info = await engine.inspectContainer(user.id);
      const ref = { repo: `container-snapshot-aside/${user.id.slice(0, 12)}`, tag: `p${process.pid}-${randomBytes(3).toString('hex')}` };
      // Without its environment (passwords): the committed image carries it, and the journal must not.
      const { Env: _env, ...config } = captureSpec(info, new Map()).config;
      const spec = { ...captureSpec(info, new Map()), config };
      this.txn.record(owner.target, (e) => {
        e.aside!.removed = { image: `${ref.repo}:${ref.tag}`, spec, anonymous: anonymousVolumes(info) };
      });
      await engine.commit(user.id, { pause: false, ...ref });
      await engine.removeContainer(user.id, { force: true, volumes: false });
      log.info(`${owner.target}: the replaced container '${owner.aside.asideName}' is removed to replace volume '${volume}' (committed, to be put back if the restore fails)`);
    }
  }

  /** Empties an existing volume for the snapshot's content, keeping its old content aside until the restore commits. */
  private async replaceVolume(c: ContainerRecord, target: string, v: VolumeRecord, image: string): Promise<void> {
    const { engine } = this.ctx;
    const name = this.volumeName(v);
    const old = (await engine.inspectVolume(name))!;
    const hasData = !isTmpfs(v) && (await this.filler(image).volumeHasData(name));
    const aside = hasData ? `${name}-aside-${randomBytes(3).toString('hex')}` : undefined;
    const record: ReplacedVolume = { name, aside, kept: false, emptied: false, driver: old.Driver, driverOpts: (old.Options as Record<string, string> | null) ?? {}, labels: (old.Labels as Record<string, string> | null) ?? {} };
    this.txn.record(target, (e) => {
      e.image = image;
      e.replaced.push(record);
    });
    if (aside) {
      await engine.createVolume({ name: aside, labels: { [RUN_LABEL]: this.txn.pending.run } });
      await this.filler(image).copyVolume(name, aside);
    }
    this.txn.record(target, () => (record.kept = true));
    await this.releaseVolume(name);
    this.txn.record(target, () => (record.emptied = true));
    try {
      await engine.removeVolume(name);
    } catch (err) {
      if (err instanceof ConflictError) throw new RestoreError(`${c.name}: volume '${name}' is in use by another container; cannot replace it`);
      throw err;
    }
    await engine.createVolume({ name, driver: v.driver, driverOpts: v.driverOptions, labels: v.labels });
  }

  private async prepareVolumes(c: ContainerRecord, target: string, image: string): Promise<void> {
    const { engine, log } = this.ctx;
    for (const v of this.namedVolumes(c)) {
      const name = this.volumeName(v);
      if (this.filled.has(name)) continue;
      if (await engine.inspectVolume(name)) {
        if (this.opts.replace) await this.replaceVolume(c, target, v, image);
        else {
          // Empty and unused (checked): a rollback empties it again.
          const old = (await engine.inspectVolume(name))!;
          this.txn.record(target, (e) => e.replaced.push({ name, kept: true, emptied: true, driver: old.Driver, driverOpts: (old.Options as Record<string, string> | null) ?? {}, labels: (old.Labels as Record<string, string> | null) ?? {} }));
        }
      } else {
        this.txn.record(target, (e) => e.createdVolumes.push(name));
        await engine.createVolume({ name, driver: v.driver, driverOpts: v.driverOptions, labels: v.labels });
      }
      this.filled.add(name);
      if (isTmpfs(v)) {
        log.info(`${c.name}: volume '${name}' is a tmpfs volume: created as it was; its content lived in memory only and starts empty, as after any restart`);
        continue;
      }
      // Filled before the container exists, so the engine finds it not empty and copies no image content in.
      log.info(`${c.name}: filling volume '${name}'`);
      await this.filler(image).fillVolume(name, v.destination, this.content(c, v), this.sparse(c, v));
    }
  }

  /** Creates the user-defined networks the container needs and the engine lacks, each recorded first (a rollback removes them). */
  private async ensureNetworks(c: ContainerRecord, target: string): Promise<void> {
    const { engine, log } = this.ctx;
    for (const n of c.spec.networks) {
      if (!n.definition || (await engine.inspectNetwork(n.name))) continue;
      const created: CreatedNetwork = { name: n.name };
      this.txn.record(target, (e) => (e.createdNetworks ??= []).push(created));
      const id = await engine.createNetwork(createNetworkOptions(n.name, n.definition) as never);
      this.txn.record(target, () => (created.id = id));
      log.info(`${c.name}: created network ${n.name}`);
    }
  }

  private shouldStart(c: ContainerRecord): boolean {
    return willStart(c, this.opts.start);
  }

  /** Fills the container's own anonymous volumes and bind mounts, each through a helper of its own. */
  private async fillOwnMounts(c: ContainerRecord, id: string, image: string): Promise<void> {
    if (!this.opts.includeVolumes) return;
    const inherited = inheritedMounts(c);
    const mounts = ((await this.ctx.engine.inspectContainer(id)).Mounts ?? []) as Array<{ Type?: string; Name?: string; Destination: string }>;
    for (const v of c.volumes.filter((m) => (m.type === 'bind' || m.anonymous) && !inherited.has(m.destination))) {
      if (v.type === 'bind') {
        this.ctx.log.info(`${c.name}: filling bind mount ${v.source}`);
        await this.filler(image).fillHostPath(v.source!, v.destination, this.content(c, v));
        continue;
      }
      const volume = mounts.find((m) => m.Type === 'volume' && m.Destination === v.destination)?.Name;
      if (!volume) throw new RestoreError(`${c.name}: the new container has no volume at ${v.destination}`);
      this.ctx.log.info(`${c.name}: filling anonymous volume at ${v.destination}`);
      await this.filler(image).fillVolume(volume, v.destination, this.content(c, v), this.sparse(c, v));
    }
  }

  /**
   * Without volumes, the container replacing an old one mounts the old one's anonymous volumes at
   * the same mount points: no volume is written, and none is lost when the old container goes.
   */
  private async keepAnonymousVolumes(c: ContainerRecord, target: string, create: { HostConfig?: { Mounts?: unknown[] } }): Promise<void> {
    const old = this.txn.pending.targets.find((t) => t.target === target)?.aside;
    if (!old || old.removed) return;
    const inherited = inheritedMounts(c);
    const wanted = new Set(c.volumes.filter((v) => v.anonymous && !inherited.has(v.destination)).map((v) => v.destination));
    const keep = anonymousVolumes(await this.ctx.engine.inspectContainer(old.id)).filter((v) => wanted.has(v.destination));
    if (keep.length === 0) return;
    const targets = new Set(keep.map((v) => v.destination));
    const mounts = ((create.HostConfig?.Mounts as Array<{ Target?: string }> | undefined) ?? []).filter((m) => !targets.has(m.Target ?? ''));
    create.HostConfig = { ...create.HostConfig, Mounts: [...mounts, ...keep.map((v) => ({ Type: 'volume', Source: v.volume, Target: v.destination }))] };
  }

  private async create(c: ContainerRecord, target: string, image: string): Promise<string> {
    const { engine } = this.ctx;
    await this.ensureNetworks(c, target);
    const spec = mapPorts(renameReferences(c.spec, this.opts.rename), this.opts.portMap ?? []);
    const { create, connect } = createOptions(spec, target, image, (await engine.info()).apiVersion);
    if (!this.opts.includeVolumes) await this.keepAnonymousVolumes(c, target, create);
    this.txn.record(target, (e) => {
      e.image = image;
      e.creating = true;
    });
    const id = await engine.createContainer(create);
    this.txn.record(target, (e) => (e.created = id));
    await this.fillOwnMounts(c, id, image);
    for (const n of connect) await engine.connectNetwork(n.network, id, n.endpoint);
    this.txn.checkpoint();
    if (this.shouldStart(c)) {
      await engine.start(id);
      if (c.state === 'paused' && this.opts.start === 'auto') await engine.pause(id);
    }
    return id;
  }

  /** Puts back what the restores of `targets` changed, and forgets them. */
  async rollBack(...targets: string[]): Promise<void> {
    const entries = this.txn.pending.targets.filter((t) => targets.includes(t.target));
    if (entries.length === 0) return;
    for (const e of entries) {
      for (const v of e.replaced) this.filled.delete(v.name);
      for (const v of e.createdVolumes) this.filled.delete(v);
    }
    const problems = await rollBackTargets(this.ctx.engine, this.txn.pending.run, this.txn.pending.helperImage, entries, this.ctx.log, () => this.txn.persist());
    for (const e of entries) if (!hasChanges(e)) this.txn.committed(e.target);
    if (problems.length > 0) throw new RestoreError(`${targets.join(', ')}: could not put everything back: ${problems.join('; ')}`);
  }

  /** The restore of `target` succeeded: what it kept aside is removed. */
  async commit(target: string): Promise<void> {
    const { engine } = this.ctx;
    const e = this.txn.pending.targets.find((t) => t.target === target);
    if (!e) return;
    const a = e.aside;
    if (a && !a.removed) await engine.removeContainer(a.id, { force: true, volumes: true }).catch(() => undefined);
    if (a?.removed) {
      await engine.removeImage(a.removed.image, { force: true });
      for (const v of a.removed.anonymous) await engine.removeVolume(v.volume).catch(() => undefined);
    }
    for (const v of e.replaced) if (v.aside) await engine.removeVolume(v.aside).catch(() => undefined);
    this.txn.committed(target);
  }

  /** Restores one container; commits it unless `deferCommit` (a group member: committed with its group by the caller, or rolled back). */
  async restore(c: ContainerRecord, target: string, image: string, deferCommit = false): Promise<RestoredContainer> {
    const { engine } = this.ctx;
    let id: string;
    try {
      await this.prepareVolumes(c, target, image);
      id = await this.create(c, target, image);
    } catch (err) {
      await this.rollBack(target).catch((e: unknown) => this.ctx.log.error(errorMessage(e)));
      throw err;
    }
    if (!deferCommit) await this.commit(target);
    const info = await engine.inspectContainer(id);
    return { name: target, from: c.name, id, state: info.State.Paused ? 'paused' : info.State.Status, status: 'ok' };
  }
}

/** Containers that others refer to (links, volumes-from, shared namespaces) come first. */
export function restoreOrder(containers: ContainerRecord[], rename: Map<string, string>): ContainerRecord[] {
  const byTarget = new Map(containers.map((c) => [rename.get(c.name) ?? c.name, c]));
  const ordered: ContainerRecord[] = [];
  const state = new Map<ContainerRecord, 'visiting' | 'done'>();
  const visit = (c: ContainerRecord) => {
    if (state.get(c)) return;
    state.set(c, 'visiting');
    for (const ref of containerReferences(renameReferences(c.spec, rename).hostConfig)) {
      const dep = byTarget.get(ref);
      if (dep && dep !== c) visit(dep);
    }
    state.set(c, 'done');
    ordered.push(c);
  };
  containers.forEach(visit);
  return ordered;
}

/**
 * Ends the groups' transactions: each member of a group that was restored whole is committed; one
 * of a group with a failed member is put back, and its result says why.
 */
async function settleGroups(
  worker: ContainerRestore,
  ready: Array<{ c: ContainerRecord; target: string }>,
  results: RestoredContainer[],
  failedGroups: Map<string, string>,
  dropImage: (c: ContainerRecord) => Promise<void>,
  log: Logger,
): Promise<void> {
  const putBack: Array<{ c: ContainerRecord; target: string; i: number; why: string }> = [];
  for (const { c, target } of ready) {
    const i = results.findIndex((r) => r.name === target && r.status === 'ok');
    if (!c.group || i === -1) continue;
    const why = failedGroups.get(c.group);
    if (why) putBack.push({ c, target, i, why });
    else await worker.commit(target);
  }
  if (putBack.length === 0) return;
  // In one rollback: a network one member created may be in use by another's new container.
  for (const { target, why } of putBack) log.info(`${target}: put back (${why})`);
  await worker.rollBack(...putBack.map((p) => p.target)).catch((e: unknown) => log.error(errorMessage(e)));
  for (const { c, target, i, why } of putBack) {
    await dropImage(c);
    results[i] = { name: target, from: c.name, id: '', state: '', status: 'failed', error: why };
  }
}

/**
 * Restores the chosen containers of a set. Each container's restore is a transaction, and so is
 * each consistency group's (the chosen containers the set records in one group): a failure puts
 * back what it (and its group) changed and the others go on; a cancellation (`ctx.txn.abort()`) stops at the
 * next step, puts back everything not committed and throws `InterruptedError`.
 */
export async function runRestore(opts: RestoreOptions, ctx: RestoreContext): Promise<RestoreResult> {
  const { log } = ctx;
  const txn = ctx.txn ?? new RestoreTransaction(`memory/${process.pid}/${randomBytes(3).toString('hex')}`);
  const set = await findSet(ctx.source, opts.snapshot);
  log.info(`Restoring snapshot ${set.tag} (created ${set.created}) from ${ctx.source.label}`);
  await warnEngineCompat(set, ctx.engine, log);
  const chosen = chooseContainers(set, opts);
  await checkTarget(ctx.engine, set, chosen, opts);
  // Each blob is read once, checked as it streams into the engine (a Verifier keeps a blob's end
  // back until its digest matches): a container whose blob is damaged fails and its changes are
  // put back, as for any failure. `verify` reads a set without restoring it.
  log.info(`Restoring ${chosen.length} container(s); each blob is checked as it is read`);
  const worker = new ContainerRestore(ctx, opts, set, new Set(chosen.map((c) => opts.rename.get(c.name) ?? c.name)), txn);
  const results: RestoredContainer[] = [];
  // A group whose member failed: why, for its other members (which are then put back too).
  const failedGroups = new Map<string, string>();
  const fail = (c: ContainerRecord, target: string, err: unknown) => {
    if (err instanceof InterruptedError) throw err;
    if (c.group && !failedGroups.has(c.group)) failedGroups.set(c.group, `group ${c.group} not restored: ${c.name} failed: ${errorMessage(err)}`);
    const r: RestoredContainer = { name: target, from: c.name, id: '', state: '', status: 'failed', error: errorMessage(err) };
    // The reason is said once, in the caller's final error line that lists every failed container.
    log.info(`${c.name}: not restored`);
    results.push(r);
  };
  const ready: Array<{ c: ContainerRecord; target: string; image: string }> = [];
  // Images this run loaded for containers it then did not restore are removed again.
  const loadedFor = new Map<ContainerRecord, string>();
  const dropImage = async (c: ContainerRecord) => {
    const ref = loadedFor.get(c);
    if (ref) await ctx.engine.removeImage(ref).catch(() => undefined);
  };
  try {
    for (const c of restoreOrder(chosen, opts.rename)) {
      const target = opts.rename.get(c.name) ?? c.name;
      try {
        txn.checkpoint();
        const { ref: image, loaded } = await worker.loadImage(c);
        if (loaded) loadedFor.set(c, image);
        const conflicts = await worker.conflicts(c, target, image);
        if (conflicts.length > 0) throw new RestoreError(`refused: ${conflicts.join('; ')}`);
        ready.push({ c, target, image });
      } catch (err) {
        await dropImage(c);
        fail(c, target, err);
      }
    }
    if (opts.replace) {
      for (const { c, target, image } of [...ready]) {
        try {
          await worker.setAside(target, image);
        } catch (err) {
          ready.splice(ready.findIndex((r) => r.c === c), 1);
          await worker.rollBack(target).catch((e: unknown) => log.error(errorMessage(e)));
          await dropImage(c);
          fail(c, target, err);
        }
      }
    }
    for (const { c, target, image } of ready) {
      try {
        txn.checkpoint();
        if (c.group && failedGroups.has(c.group)) throw new RestoreError(failedGroups.get(c.group) ?? '');
        const r = await log.group(`Restore ${c.name}${target !== c.name ? ` as ${target}` : ''}`, () => worker.restore(c, target, image, c.group !== undefined));
        log.info(`${target}: restored (${r.state})`);
        results.push(r);
      } catch (err) {
        if (c.group && failedGroups.has(c.group)) await worker.rollBack(target).catch((e: unknown) => log.error(errorMessage(e)));
        if (!(err instanceof InterruptedError)) await dropImage(c);
        fail(c, target, err);
      }
    }
    await settleGroups(worker, ready, results, failedGroups, dropImage, log);
  } catch (err) {
    if (!(err instanceof InterruptedError)) throw err;
    log.error(`${err.message}: putting back what this restore changed`);
    await worker.rollBack(...txn.pending.targets.map((t) => t.target)).catch((e: unknown) => log.error(errorMessage(e)));
    throw err;
  }
  return { tag: set.tag, containers: results, failed: results.filter((r) => r.status === 'failed').length, sourceEngine: set.source.engine };
}
