import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { RestoreOptions } from '../core/options.js';
import { ConflictError } from '../engine/errors.js';
import { SET_SCOPE } from '../destinations/types.js';
import { openContent } from './blobs.js';
import type { ContainerRecord, VolumeRecord } from './manifest.js';
import { captureSpec } from './spec.js';
import { RUN_LABEL, type Filler, type PathProbe } from './fill.js';
import type { RestoreTransaction, ReplacedVolume, TargetPending } from './transaction.js';
import { mergedWith, readMetadataRecord } from './metadata-merge.js';
import { sparseOf, type MetadataRecord, type SparseFiles } from './volume-metadata.js';
import { anonymousVolumes, inheritedMounts, isTmpfs, mountedSubpath } from './restore-mounts.js';
import { RestoreError, type RestoreContext } from './restore-types.js';
import { asideBlocker, asidePathOf, filledPathRecord, inodeOf, localSymlink, moveAside, usersOf, type ReplacedHostPath } from './host-path-aside.js';
import { errorMessage } from '../core/log.js';

/**
 * The repository of the image an old container set aside is committed as, before it is removed to
 * replace a volume it uses (`releaseVolume`); a rollback creates the container again from it.
 */
export const ASIDE_IMAGE_REPOSITORY = 'container-snapshot-aside';

/**
 * The volume part of a restore run: creates, empties (with `replace`) and fills the named volumes
 * of the containers it restores, and fills their own anonymous volumes and bind mounts. Each change
 * is recorded in `txn` before it is made, so that a rollback can put it back. A volume that cannot
 * be replaced (in use by a container not set aside) is a `RestoreError`; engine errors are passed on.
 */
export class VolumeRestore {
  /** Volumes made by this run (created, or emptied with replace), by name: once each, whoever mounts them. */
  private readonly prepared = new Set<string>();
  /**
   * What this run filled (two containers of a set may share one): a volume mounted whole by its
   * name, a subpath of one as `NAME:SUBPATH`, a host path as `bind:PATH`.
   */
  private readonly filled = new Set<string>();
  /** Side records being read or read, by volume record, until its volume is filled: each is read from the store once. */
  private readonly records = new Map<VolumeRecord, Promise<MetadataRecord>>();
  /** Removals of the helpers that filled volumes, not waited for while the restore goes on (see `settle`). */
  private removals: Array<Promise<void>> = [];
  private readonly later = (removal: Promise<void>) => void this.removals.push(removal);
  private engineDataRoot?: Promise<string | undefined>;

  constructor(
    private readonly ctx: RestoreContext,
    private readonly opts: RestoreOptions,
    private readonly txn: RestoreTransaction,
    /** A helper that writes volumes and host paths, run from `image` (the restored container's image). */
    private readonly filler: (image: string) => Filler,
  ) {}

  /** The name `v` is restored under (`opts.rename` may give it a new one). */
  volumeName(v: VolumeRecord): string {
    return this.opts.rename.get(v.name) ?? v.name;
  }

  /** The container's own named volumes to restore (inherited ones belong to their owner); none without `includeVolumes`. */
  namedVolumes(c: ContainerRecord): VolumeRecord[] {
    if (!this.opts.includeVolumes) return [];
    const inherited = inheritedMounts(c);
    return c.volumes.filter((v) => v.type === 'volume' && !v.anonymous && !inherited.has(v.destination));
  }

  /**
   * Waits for the removals of the fill helpers started so far (a helper is removed while the
   * container is created and started: ~0.3–0.6 s of each restore's tail measured here); rejects
   * with the first removal's error, after every one has settled.
   */
  async settle(): Promise<void> {
    const removals = this.removals.splice(0);
    const failed = (await Promise.allSettled(removals)).find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** Forgets that the volumes (and their subpaths) and host paths `e` changed were made and filled (its restore was put back): a later restore does it again. */
  forget(e: TargetPending): void {
    const volumes = [...e.replaced.map((r) => r.name), ...e.createdVolumes];
    for (const v of volumes) this.prepared.delete(v);
    for (const key of [...this.filled]) if (volumes.some((v) => key === v || key.startsWith(`${v}:`))) this.filled.delete(key);
    for (const p of [...(e.replacedPaths ?? []), ...(e.filledPaths ?? [])]) this.filled.delete(`bind:${p.path}`);
  }

  /**
   * Opens a volume's verified content, with the metadata the engine's archive dropped (its side
   * record) merged back in; a cancelled restore destroys it.
   */
  private content(c: ContainerRecord, v: VolumeRecord): () => Promise<Readable> {
    const what = `${c.name} volume ${v.name || v.destination}`;
    if (v.metadata?.notKept) this.ctx.log.warning(`${what}: not in the set: ${v.metadata.notKept}`);
    return async () => {
      this.txn.checkpoint();
      const merging = await this.record(c, v);
      const stream = await openContent(this.ctx.source, SET_SCOPE, v.blob, what);
      return this.txn.track(merging ? mergedWith(stream, merging) : stream);
    };
  }

  /** The sparse files a volume's side record names (see `sparseOf`), read before the volume is filled. */
  private sparse(c: ContainerRecord, v: VolumeRecord): () => Promise<SparseFiles> {
    return async () => sparseOf(await this.record(c, v));
  }

  /**
   * A volume's side record (none when the set has none), read from the store once for both of its
   * uses, its sparse files and the metadata merged into the volume's archive; a failed read is not kept.
   */
  private record(c: ContainerRecord, v: VolumeRecord): Promise<MetadataRecord | undefined> {
    const blob = v.metadata?.record;
    if (!blob) return Promise.resolve(undefined);
    let read = this.records.get(v);
    if (!read) {
      read = readMetadataRecord(this.ctx.source, blob, `${c.name} volume ${v.name || v.destination}`);
      this.records.set(v, read);
      read.catch(() => this.records.delete(v));
    }
    return read;
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
      const ref = { repo: `${ASIDE_IMAGE_REPOSITORY}/${user.id.slice(0, 12)}`, tag: `p${process.pid}-${randomBytes(3).toString('hex')}` };
      // Without its environment (passwords): the committed image carries it, and the journal must not.
      const { Env: _env, ...config } = captureSpec(info, new Map()).config;
      const spec = { ...captureSpec(info, new Map()), config };
      this.txn.record(owner.target, (e) => {
        e.aside!.removed = { image: `${ref.repo}:${ref.tag}`, spec, anonymous: anonymousVolumes(info) };
      });
      await engine.commit(user.id, { pause: false, ...ref });
      await engine.removeContainer(user.id, { force: true, volumes: false });
      log.info(
        `${owner.target}: the replaced container '${owner.aside.asideName}' is removed to replace volume '${volume}' (committed, to be put back if the restore fails)`,
      );
    }
  }

  /** Empties an existing volume for the snapshot's content, keeping its old content aside until the restore commits. */
  private async replaceVolume(c: ContainerRecord, target: string, v: VolumeRecord, image: string): Promise<void> {
    const { engine } = this.ctx;
    const name = this.volumeName(v);
    const old = (await engine.inspectVolume(name))!;
    const hasData = !isTmpfs(v) && (await this.filler(image).volumeHasData(name));
    const aside = hasData ? `${name}-aside-${randomBytes(3).toString('hex')}` : undefined;
    const record: ReplacedVolume = { name, aside, kept: false, emptied: false, ...settingsOf(old) };
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

  /**
   * Creates, or with `replace` empties, each of the container's own named volumes and fills it with
   * the set's content, before the container exists; a volume this run already filled is skipped.
   */
  async prepareVolumes(c: ContainerRecord, target: string, image: string): Promise<void> {
    const { log } = this.ctx;
    for (const v of this.namedVolumes(c)) {
      const name = this.volumeName(v);
      // A subpath mount holds that part of its volume only: two of them fill one volume twice, in two places.
      const subpath = mountedSubpath(c, v.destination);
      const part = subpath ? `${name}:${subpath}` : name;
      if (this.filled.has(part)) continue;
      // Made (created, or emptied with replace) once per run; each part of it that a container mounts is filled.
      const fresh = !this.prepared.has(name);
      if (fresh) await this.prepareVolume(c, target, v, name, image);
      this.filled.add(part);
      if (isTmpfs(v)) {
        if (fresh)
          log.info(`${c.name}: volume '${name}' is a tmpfs volume: created as it was; its content lived in memory only and starts empty, as after any restart`);
        continue;
      }
      // Filled before the container exists, so the engine finds it not empty and copies no image content in.
      log.info(`${c.name}: filling ${subpath ? `subpath ${subpath} of ` : ''}volume '${name}'`);
      await this.filler(image).fillVolume(name, v.destination, this.content(c, v), this.sparse(c, v), this.later, subpath);
      this.records.delete(v);
    }
  }

  /** Creates the volume `name`, or with `replace` empties it (keeping its old content aside), or records an existing empty one; once per run. */
  private async prepareVolume(c: ContainerRecord, target: string, v: VolumeRecord, name: string, image: string): Promise<void> {
    const { engine } = this.ctx;
    if (await engine.inspectVolume(name)) {
      if (this.opts.replace) await this.replaceVolume(c, target, v, image);
      else {
        // Empty and unused (checked): a rollback empties it again.
        const old = (await engine.inspectVolume(name))!;
        this.txn.record(target, (e) => e.replaced.push({ name, kept: true, emptied: true, ...settingsOf(old) }));
      }
    } else {
      this.txn.record(target, (e) => e.createdVolumes.push(name));
      await engine.createVolume({ name, driver: v.driver, driverOpts: v.driverOptions, labels: v.labels });
    }
    this.prepared.add(name);
  }

  /** The engine's data directory (Engine.dataRoot), asked once per run. */
  private dataRoot(): Promise<string | undefined> {
    this.engineDataRoot ??= this.ctx.engine.dataRoot();
    return this.engineDataRoot;
  }

  /**
   * Why the host path `path` (which holds data: `probe`) cannot be replaced, or undefined when its
   * old content can be moved aside (asideBlocker) and no container but those `ours` accepts mounts
   * it or a path inside it (usersOf; Engine.hostPathMounts: bind mounts and volumes that bind a host
   * path, restore helpers left out). A phrase for a message.
   */
  async hostPathRefusal(path: string, probe: PathProbe, ours: (u: { id: string; name: string }) => boolean): Promise<string | undefined> {
    const blocker = await asideBlocker(path, probe, await this.dataRoot());
    if (blocker) return `host path '${path}' holds data that cannot be kept aside while it is replaced: ${blocker}; move or empty it first`;
    const others = usersOf(path, await this.ctx.engine.hostPathMounts(RUN_LABEL)).filter((u) => !ours(u));
    return others.length > 0 ? `host path '${path}' is in use by ${others.map((u) => u.name).join(', ')}` : undefined;
  }

  /**
   * Makes a bind mount's host path ready to be filled for the new container `id`; false when it is
   * not to be written at all: a symbolic link on this host (/etc/localtime, say) is left as it is,
   * with a warning. A path that holds data is moved aside (see host-path-aside.ts), recorded in
   * `txn` first, so that a rollback renames it back and a commit removes it; an empty or missing
   * one is filled in place. Throws `RestoreError` when a path that holds data cannot be moved aside,
   * or another container than `id` and the old containers this run set aside mounts it (the
   * conflict check refuses both earlier; this is for a path that changed since, or a container of
   * this run that was not set aside).
   */
  private async prepareHostPath(c: ContainerRecord, target: string, id: string, path: string, image: string): Promise<boolean> {
    const probe = await this.filler(image).probeHostPath(path);
    if (probe.exists) {
      const link = await localSymlink(path, probe);
      if (link) {
        this.ctx.log.warning(
          `${c.name}: host path '${path}' is a symbolic link (to ${link}): left as it is, not written; the container mounts what it leads to`,
        );
        return false;
      }
    }
    if (!probe.hasData) {
      // Filled in place: recorded first, so that a rollback removes or empties it again (where this host sees it:
      // a missing path only with an engine on this host, and confirmed once the fill made it, fillOwnMounts).
      const filled = probe.exists || this.ctx.engine.describe().startsWith('unix://') ? await filledPathRecord(path, probe) : undefined;
      if (filled) this.txn.record(target, (e) => (e.filledPaths ??= []).push(filled));
      return true;
    }
    if (!this.opts.replace) throw new RestoreError(`${c.name}: host path '${path}' is not empty`);
    const refusal = await this.hostPathRefusal(path, probe, (u) => u.id === id || this.txn.asideOf(u.id) !== undefined);
    if (refusal) throw new RestoreError(`${c.name}: ${refusal}`);
    const moved: ReplacedHostPath = { path, aside: asidePathOf(path) };
    this.txn.record(target, (e) => (e.replacedPaths ??= []).push(moved));
    try {
      await moveAside(moved);
    } catch (err) {
      // Nothing was moved: nothing to put back.
      this.txn.record(target, (e) => e.replacedPaths?.splice(e.replacedPaths.indexOf(moved), 1));
      throw new RestoreError(`${c.name}: host path '${path}' could not be moved aside to ${moved.aside}: ${errorMessage(err)}`);
    }
    this.ctx.log.info(`${c.name}: host path ${path} moved aside to ${moved.aside} (removed once the restore succeeds, put back if it fails)`);
    return true;
  }

  /**
   * A missing host path the fill just made (a FilledHostPath record of `target` without its inode):
   * its inode recorded, so that a rollback removes that directory and nothing put there later; the
   * record dropped when this host does not see the path after all (another mount namespace).
   */
  private async madeByFill(target: string, path: string): Promise<void> {
    const made = this.txn.pending.targets.find((t) => t.target === target)?.filledPaths?.find((p) => p.path === path && !p.existed && !p.inode);
    if (!made) return;
    const inode = await inodeOf(path);
    this.txn.record(target, (e) => {
      if (inode) made.inode = inode;
      else e.filledPaths?.splice(e.filledPaths.indexOf(made), 1);
    });
  }

  /**
   * Fills the new container `id`'s own anonymous volumes and bind mounts, each through a helper of
   * its own; a bind mount's host path that holds data is first moved aside (`prepareHostPath`), so it holds the
   * set's content only, and filled once when two containers of the run share it. Throws
   * `RestoreError` when the container has no volume at a recorded mount point.
   */
  async fillOwnMounts(c: ContainerRecord, target: string, id: string, image: string): Promise<void> {
    if (!this.opts.includeVolumes) return;
    const inherited = inheritedMounts(c);
    const own = c.volumes.filter((m) => (m.type === 'bind' || m.anonymous) && !inherited.has(m.destination));
    // Nothing of its own to fill: the new container need not be inspected.
    if (own.length === 0) return;
    const mounts = ((await this.ctx.engine.inspectContainer(id)).Mounts ?? []) as Array<{ Type?: string; Name?: string; Destination: string }>;
    for (const v of own) {
      if (v.type === 'bind') {
        const key = `bind:${v.source!}`;
        if (this.filled.has(key) || !(await this.prepareHostPath(c, target, id, v.source!, image))) continue;
        this.ctx.log.info(`${c.name}: filling bind mount ${v.source}`);
        await this.filler(image).fillHostPath(v.source!, v.destination, this.content(c, v));
        await this.madeByFill(target, v.source!);
        this.filled.add(key);
        this.records.delete(v);
        continue;
      }
      const volume = mounts.find((m) => m.Type === 'volume' && m.Destination === v.destination)?.Name;
      if (!volume) throw new RestoreError(`${c.name}: the new container has no volume at ${v.destination}`);
      this.ctx.log.info(`${c.name}: filling anonymous volume at ${v.destination}`);
      await this.filler(image).fillVolume(volume, v.destination, this.content(c, v), this.sparse(c, v), this.later);
      this.records.delete(v);
    }
  }
}

/** What a volume is made again with when a rollback puts it back (ReplacedVolume): its driver, options and labels, from its inspect. */
function settingsOf(old: { Driver: string; Options?: unknown; Labels?: unknown }): Pick<ReplacedVolume, 'driver' | 'driverOpts' | 'labels'> {
  return {
    driver: old.Driver,
    driverOpts: (old.Options as Record<string, string> | null) ?? {},
    labels: (old.Labels as Record<string, string> | null) ?? {},
  };
}
