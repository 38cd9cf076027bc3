import { randomBytes } from 'node:crypto';
import type { RestoreOptions } from '../core/options.js';
import { errorMessage } from '../core/log.js';
import { ACTION_WORDS } from '../core/words.js';
import { repoComponent } from '../core/names.js';
import { heldLayers, loadContainerImage } from './held-layers.js';
import { NotFoundError } from '../engine/errors.js';
import type { ContainerInspect } from '../engine/containers.js';
import type { ContainerRecord, SnapshotSet } from './manifest.js';
import { apiAtLeast, containerReferences, createNetworkOptions, createOptions, renameReferences } from './spec.js';
import { Filler } from './fill.js';
import { localSymlink } from './host-path-aside.js';
import { hasChanges, type CreatedNetwork, type Leftovers, type RestoreTransaction } from './transaction.js';
import { removeLeftovers, rollBackTargets } from './restore-rollback.js';
import { mapPorts, willStart } from './target-check.js';
import { anonymousVolumes, inheritedMounts, isTmpfs, mountedSubpath } from './restore-mounts.js';
import { VolumeRestore } from './restore-volumes.js';
import { ImageLoads, type LoadedImage } from './image-loads.js';
import { LeftImages } from './left-images.js';
import { RestoreError, type RestoreContext, type RestoredContainer } from './restore-types.js';

/**
 * The local name of a restored image. Not the registry's reference: the image pushed there
 * carries OCI labels, so it is a different image from the one restored.
 */
export function localImageName(container: string): string {
  return `container-snapshot/${repoComponent(container)}`;
}

/**
 * Restores the containers of one run, one at a time, each as a transaction: every change (old
 * container set aside, volume created or replaced, network created, container created) is recorded
 * in `txn` before it is made, so that `rollBack` can put it back; `commit` ends it. Volumes are
 * restored through a `VolumeRestore`. Engine errors are passed on; a refusal is a `RestoreError`.
 */
export class ContainerRestore {
  private readonly volumes: VolumeRestore;
  private readonly loads = new ImageLoads();
  private readonly left: LeftImages;
  /** The engine's API version, asked once per run (`apiVersion`). */
  private api?: Promise<string>;
  private referrersRead?: Promise<Array<{ id: string; name: string; refs: string[] }>>;

  constructor(
    private readonly ctx: RestoreContext,
    private readonly opts: RestoreOptions,
    private readonly set: SnapshotSet,
    /** Names of the containers this run restores: their old instances may be replaced. */
    private readonly targets: Set<string>,
    private readonly txn: RestoreTransaction,
  ) {
    this.volumes = new VolumeRestore(ctx, opts, txn, (image) => this.filler(image));
    this.left = new LeftImages(ctx.engine, ctx.log, (id) => set.containers.some((c) => c.image.id === id));
  }

  private filler(image: string): Filler {
    return new Filler(this.ctx.engine, image, this.txn.pending.run, this.ctx.log, this.txn.signal, this.loads.ready(image));
  }

  /** The local reference the container's image is tagged with: `localImageName(c.name):<set tag>`. */
  imageRef(c: ContainerRecord): string {
    return `${localImageName(c.name)}:${this.set.tag}`;
  }

  /**
   * Starts loading the container's image (see loadImage) after the loads started before it; the
   * container's restore waits for it before creating the container (`restore`), while its new
   * volumes are filled. Rejects with loadImage's errors, or InterruptedError when cancelled first.
   */
  startLoad(c: ContainerRecord): Promise<LoadedImage> {
    // Asked now, while the image loads: creating the container needs it.
    this.apiVersion().catch(() => undefined);
    return this.loads.start(this.imageRef(c), () => {
      this.txn.checkpoint();
      return this.loadImage(c);
    });
  }

  /**
   * Whether restoring `c` as `target` changes something that exists (a container of that name, one
   * of its named volumes): then its image must be loaded first, so that a load that fails leaves it
   * untouched (stopped not even once) and a rollback has the image for its helpers.
   */
  async touchesExisting(c: ContainerRecord, target: string): Promise<boolean> {
    const { engine } = this.ctx;
    // Asked at once: each is a round trip to an engine that is busy loading the image meanwhile.
    const found = await Promise.all([
      engine.findContainer(target),
      ...this.volumes.namedVolumes(c).map((v) => engine.inspectVolume(this.volumes.volumeName(v))),
    ]);
    return found.some(Boolean);
  }

  /**
   * Loads the container's image unless the engine has it (the layers it holds are not read:
   * held-layers.ts), and tags it `imageRef(c)` (`ref`); `loaded` says whether this restore added it,
   * `previous` which image `ref` named before (kept for `commit` and `unload`). Throws RestoreError
   * when the engine loaded another image (its tag then put back as it was).
   */
  private async loadImage(c: ContainerRecord): Promise<LoadedImage> {
    const { engine, source } = this.ctx;
    const repo = localImageName(c.name);
    const ref = this.imageRef(c);
    // Asked while the engine is asked for the image: unused when it has it.
    const holding = heldLayers(engine, c, repo);
    holding.catch(() => undefined);
    // Asked before the tag moves: by `tagged`, or by the load itself (its archive names `ref`).
    const previous = await this.left.beforeTag(ref, c.image.id);
    if (await this.tagged(c)) return { ref, loaded: false, previous };
    const loaded = await loadContainerImage(engine, source, c, repo, ref, this.ctx.log, holding);
    if (!(await this.tagged(c))) {
      await this.unload(c, { ref, loaded: true, previous });
      throw new RestoreError(`${c.name}: the engine loaded ${loaded.join(', ') || 'nothing'}, not image ${c.image.id}`);
    }
    return { ref, loaded: true, previous };
  }

  /**
   * Undoes what loading `c`'s image did to the engine's tags, for a container this run does not
   * restore (`l` is what its load returned): an image the run loaded loses the tag `ref` (and goes,
   * unless a container uses it or it has another tag), and the image `ref` named before gets it back.
   * Never throws: a tag that cannot be put back is a warning.
   */
  async unload(c: ContainerRecord, l: LoadedImage): Promise<void> {
    const { engine, log } = this.ctx;
    this.left.forgetTag(l.ref);
    if (l.loaded) {
      const now = await engine.imageId(l.ref).catch(() => undefined);
      if (now && now !== l.previous) await engine.removeImage(l.ref).catch(() => undefined);
    }
    if (!l.previous) return;
    try {
      await engine.tagImage(l.previous, localImageName(c.name), this.set.tag);
    } catch (err) {
      if (!(err instanceof NotFoundError)) log.warning(`${c.name}: could not tag image ${l.previous} as ${l.ref} again: ${errorMessage(err)}`);
    }
  }

  /** Tags image `c.image.id` as `imageRef(c)`: false when the engine has no such image (one round trip, not two). */
  private async tagged(c: ContainerRecord): Promise<boolean> {
    try {
      await this.ctx.engine.tagImage(c.image.id, localImageName(c.name), this.set.tag);
      return true;
    } catch (err) {
      if (err instanceof NotFoundError) return false;
      throw err;
    }
  }

  /** Whether a container restored now mounts the volume `name` (after `rename`) whole, not a subpath of it. */
  private wholeInRun(name: string): boolean {
    return this.set.containers.some(
      (o) =>
        this.targets.has(this.opts.rename.get(o.name) ?? o.name) &&
        this.volumes.namedVolumes(o).some((v) => this.volumes.volumeName(v) === name && mountedSubpath(o, v.destination) === undefined),
    );
  }

  /**
   * Why the existing container `old` (named `target`) cannot be replaced so that a failed restore
   * puts it back as it was: it was started with --rm (HostConfig.AutoRemove: the stop that sets it
   * aside has the engine remove it and its anonymous volumes), or a container outside this restore
   * refers to it (a shared network, PID, IPC or UTS namespace, --volumes-from, a legacy link: the
   * engine resolved that to the old container's ID, and it would stay tied to the old one).
   */
  private async replaceRefusals(old: ContainerInspect, target: string, name: string, rename: string): Promise<string[]> {
    const found: string[] = [];
    if ((old.HostConfig as { AutoRemove?: boolean }).AutoRemove) {
      found.push(
        `container '${target}' was started with --rm (auto-remove): stopping it to replace it would have the engine remove it and its anonymous volumes, so a failed restore could not put it back (remove it first, or ${rename} ${name}=NEW restores it beside it)`,
      );
    }
    const id = old.Id;
    const refersToOld = (ref: string) => ref === target || ref === id || (ref.length >= 12 && id.startsWith(ref));
    for (const other of await this.referrers()) {
      if (other.id === id || this.targets.has(other.name)) continue;
      if (other.refs.some(refersToOld)) {
        found.push(
          `container '${other.name}' shares a namespace or volumes with '${target}' (container:…, --volumes-from or a link): replaced, '${target}' would leave it tied to the old container (restore '${other.name}' in the same run, or remove it first)`,
        );
      }
    }
    return found;
  }

  /** Every container on the engine with the containers it refers to (spec.ts containerReferences), read once a run. */
  private referrers(): Promise<Array<{ id: string; name: string; refs: string[] }>> {
    this.referrersRead ??= (async () => {
      const { engine } = this.ctx;
      const out: Array<{ id: string; name: string; refs: string[] }> = [];
      for (const summary of await engine.listContainers()) {
        // Removed since it was listed: it refers to nothing any more.
        const info = await engine.inspectContainer(summary.Id).catch((err: unknown) => {
          if (err instanceof NotFoundError) return undefined;
          throw err;
        });
        if (!info) continue;
        const refs = containerReferences(info.HostConfig as Record<string, unknown>);
        if (refs.length > 0) out.push({ id: info.Id, name: info.Name.replace(/^\//, ''), refs });
      }
      return out;
    })();
    return this.referrersRead;
  }

  /** Everything that would make this restore clobber something, or fail half-way, checked before any change. */
  async conflicts(c: ContainerRecord, target: string, image: string): Promise<string[]> {
    const { engine } = this.ctx;
    const filler = this.filler(image);
    const found: string[] = [];
    const w = this.opts.words ?? ACTION_WORDS;
    const [replace, rename] = [w.enable('replace'), w.name('rename')];
    const existing = await engine.findContainer(target);
    const containerExists = !this.opts.replace && existing !== undefined;
    if (this.opts.replace && existing) found.push(...(await this.replaceRefusals(existing, target, c.name, rename)));
    // Its named volumes already on the engine (not renamed): a copy beside it must rename them too.
    const besideToo: string[] = [];
    for (const ref of containerReferences(renameReferences(c.spec, this.opts.rename).hostConfig)) {
      if (!this.targets.has(ref) && !(await engine.findContainer(ref))) {
        found.push(`it needs container '${ref}' (volumes-from, links or a shared namespace), which is neither restored now nor on the engine`);
      }
    }
    for (const v of this.volumes.namedVolumes(c)) {
      const name = this.volumes.volumeName(v);
      if (!(await engine.inspectVolume(name))) {
        if (v.driverOptions?.device && !isTmpfs(v) && !this.opts.replace)
          found.push(`volume '${name}' would be created on ${v.driverOptions.device}, which may hold data (${replace} writes there)`);
        continue;
      }
      if (!this.opts.rename.has(v.name) && !besideToo.includes(v.name)) besideToo.push(v.name);
      const others = (await engine.volumeUsers(name)).filter((u) => !(this.opts.replace && this.targets.has(u.name)));
      // The set holds a subpath's content only, unless a container restored now mounts the whole volume.
      const subpath = mountedSubpath(c, v.destination);
      const partOnly = subpath !== undefined && !this.wholeInRun(name);
      if (subpath && !apiAtLeast(await this.apiVersion(), '1.45'))
        found.push(`it mounts volume '${name}' at its subpath ${subpath}, which this engine cannot (Engine API 1.45 or later mounts a subpath)`);
      if (others.length > 0) found.push(`volume '${name}' is in use by ${others.map((u) => u.name).join(', ')}`);
      else if ((!this.opts.replace || partOnly) && !isTmpfs(v) && (await filler.volumeHasData(name)))
        found.push(
          partOnly
            ? `volume '${name}' is not empty, and the set holds only its subpath ${subpath} (what the container mounts): replacing it would drop the rest (${rename} ${v.name}=NEW restores it beside it)`
            : `volume '${name}' exists and is not empty (${replace} replaces it, ${rename} ${v.name}=NEW restores it beside it)`,
        );
    }
    if (this.opts.includeVolumes) {
      const inherited = inheritedMounts(c);
      for (const v of c.volumes.filter((m) => m.type === 'bind' && m.source && !inherited.has(m.destination))) {
        const probe = await filler.probeHostPath(v.source!);
        // A symbolic link is never written (said when the container is filled).
        if (!probe.hasData || (await localSymlink(v.source!, probe))) continue;
        if (!this.opts.replace) found.push(`host path '${v.source}' ${probe.kind === 'directory' ? 'is not empty' : 'exists'} (${replace} replaces it)`);
        else {
          // Its old content is renamed aside (kept until the commit): a container outside the restore would keep it.
          const refusal = await this.volumes.hostPathRefusal(v.source!, probe, (u) => this.targets.has(u.name));
          if (refusal) found.push(refusal);
        }
      }
    }
    if (containerExists) {
      // One rename map serves containers and volumes: a volume named as its container is renamed with it.
      const beside = [...new Set([c.name, ...besideToo])].map((n) => `${n}=NEW`).join(',');
      found.unshift(`container '${target}' exists (${replace} replaces it, ${rename} ${beside} restores it beside it)`);
    }
    // Two mounts of one volume (two subpaths of it) find the same thing: said once.
    return [...new Set(found)];
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
    this.left.setAside(target, old, asideName);
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

  /** The engine's API version (`Engine.info`), asked once per run; rejects with its error (and asks again next time). */
  private apiVersion(): Promise<string> {
    if (!this.api) {
      const asked = this.ctx.engine.info().then((i) => i.apiVersion);
      asked.catch(() => {
        if (this.api === asked) this.api = undefined;
      });
      this.api = asked;
    }
    return this.api;
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
    await this.loads.ready(image);
    this.txn.checkpoint();
    await this.ensureNetworks(c, target);
    const spec = mapPorts(renameReferences(c.spec, this.opts.rename), this.opts.portMap ?? []);
    const { create, connect } = createOptions(spec, target, image, await this.apiVersion());
    if (!this.opts.includeVolumes) await this.keepAnonymousVolumes(c, target, create);
    this.txn.record(target, (e) => {
      e.image = image;
      e.creating = true;
    });
    const id = await engine.createContainer(create);
    this.txn.record(target, (e) => (e.created = id));
    await this.volumes.fillOwnMounts(c, target, id, image);
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
    // A helper still being removed holds its volume: a rollback may remove that volume.
    await this.volumes.settle().catch((e: unknown) => this.ctx.log.error(errorMessage(e)));
    for (const t of targets) this.left.putBack(t);
    const entries = this.txn.pending.targets.filter((t) => targets.includes(t.target));
    if (entries.length === 0) return;
    for (const e of entries) this.volumes.forget(e);
    const problems = await rollBackTargets(this.ctx.engine, this.txn.pending.run, this.txn.pending.helperImage, entries, this.ctx.log, () =>
      this.txn.persist(),
    );
    this.txn.committed(entries.filter((e) => !hasChanges(e)).map((e) => e.target));
    if (problems.length > 0) throw new RestoreError(`${targets.join(', ')}: could not put everything back: ${problems.join('; ')}`);
  }

  /**
   * The restores of `targets` succeeded (a consistency group's together): recorded as committed in
   * one journal write with what they kept aside, which is removed next (an interrupted run is
   * finished by the next one, never rolled back); then the image each tag moved off and the image an
   * earlier rollback made the old container from, each when nothing uses it (LeftImages.committed).
   */
  async commit(...targets: string[]): Promise<void> {
    const { engine } = this.ctx;
    const entries = this.txn.pending.targets.filter((t) => targets.includes(t.target));
    if (entries.length === 0) return;
    const leftovers: Leftovers = { containers: [], images: [], volumes: [], paths: [] };
    for (const e of entries) {
      const a = e.aside;
      if (a && !a.removed) leftovers.containers.push(a.id);
      if (a?.removed) leftovers.images.push(a.removed.image);
      leftovers.volumes.push(...(a?.removed?.anonymous.map((v) => v.volume) ?? []), ...e.replaced.flatMap((v) => (v.aside ? [v.aside] : [])));
      leftovers.paths!.push(...(e.replacedPaths ?? []).map((p) => p.aside));
    }
    this.txn.committed(
      entries.map((e) => e.target),
      leftovers,
    );
    this.txn.removed(await removeLeftovers(engine, leftovers, this.ctx.log));
    // Once the old container is gone: it was usually made from one of them. `e.image` is `imageRef`.
    for (const e of entries) await this.left.committed(e.target, e.image);
  }

  /** Restores one container; commits it unless `deferCommit` (a group member: committed with its group by the caller, or rolled back). */
  async restore(c: ContainerRecord, target: string, image: string, deferCommit = false): Promise<RestoredContainer> {
    const { engine } = this.ctx;
    let id: string;
    try {
      await this.volumes.prepareVolumes(c, target, image);
      id = await this.create(c, target, image);
      // The fill helpers were removed meanwhile; a removal that failed fails the restore, as before.
      await this.volumes.settle();
    } catch (err) {
      await this.rollBack(target).catch((e: unknown) => this.ctx.log.error(errorMessage(e)));
      throw err;
    }
    if (!deferCommit) await this.commit(target);
    const info = await engine.inspectContainer(id);
    return { name: target, from: c.name, id, state: info.State.Paused ? 'paused' : info.State.Status, status: 'ok' };
  }
}
