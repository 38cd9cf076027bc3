import { randomBytes } from 'node:crypto';
import { posix } from 'node:path';
import tar from 'tar-stream';
import type { RestoreOptions } from '../core/options.js';
import { errorMessage, type Logger } from '../core/log.js';
import { repoComponent } from '../core/names.js';
import { ConflictError, type Engine } from '../engine/engine.js';
import { SET_SCOPE, type BlobScope, type Destination } from '../destinations/types.js';
import { openContent, verifyBlob } from './blobs.js';
import { loadArchive } from './image-archive.js';
import type { ContainerRecord, SnapshotSet, VolumeRecord } from './manifest.js';
import { containerReferences, createNetworkOptions, createOptions, renameReferences } from './spec.js';

export interface RestoreContext {
  engine: Engine;
  source: Destination;
  log: Logger;
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
  if (set) return set;
  const tags = (await source.listSets()).map((s) => s.tag);
  throw new RestoreError(
    snapshot === 'latest'
      ? `No complete snapshot set in ${source.label}.`
      : `Snapshot '${snapshot}' not found in ${source.label}. Expected one of: ${tags.slice(0, 10).join(', ') || '(none)'}.`,
  );
}

function chooseContainers(set: SnapshotSet, opts: RestoreOptions): ContainerRecord[] {
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

/** Reads every blob the restore will use and checks both of its checksums. */
export async function verifyContainers(source: Destination, containers: ContainerRecord[], includeVolumes: boolean, log: Logger): Promise<number> {
  let count = 0;
  for (const c of containers) {
    const scope = imageScope(c);
    await verifyBlob(source, SET_SCOPE, c.image.config, `${c.name} image config`);
    for (const [i, layer] of c.image.layers.entries()) await verifyBlob(source, scope, layer, `${c.name} layer ${i}`);
    count += 1 + c.image.layers.length;
    if (includeVolumes) {
      for (const v of c.volumes) await verifyBlob(source, SET_SCOPE, v.blob, `${c.name} volume ${v.name || v.destination}`);
      count += c.volumes.length;
    }
    log.info(`${c.name}: checksums verified`);
  }
  return count;
}

async function countEntries(stream: NodeJS.ReadableStream, limit: number): Promise<number> {
  const extract = tar.extract();
  stream.on('error', (err: Error) => extract.destroy(err));
  stream.pipe(extract);
  let n = 0;
  for await (const entry of extract) {
    entry.resume();
    if (++n >= limit) {
      extract.destroy();
      (stream as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.();
      break;
    }
  }
  return n;
}

type Mount = { Type: 'volume' | 'bind'; Source: string; Target: string; VolumeOptions?: { NoCopy: boolean } };

interface Aside {
  id: string;
  name: string;
  wasRunning: boolean;
  wasPaused: boolean;
}

/** What one container's restore changed, so a failure can put things back. */
interface Changes {
  createdVolumes: string[];
  container?: string;
}

class ContainerRestore {
  /** Volumes already filled by this run (two containers of a set may share one). */
  private readonly filled = new Set<string>();
  /** With replace: the old containers, stopped and renamed, by the name they are restored under. */
  private readonly asides = new Map<string, Aside>();

  constructor(
    private readonly ctx: RestoreContext,
    private readonly opts: RestoreOptions,
    private readonly set: SnapshotSet,
    /** Names of the containers this run restores: their old instances may be replaced. */
    private readonly targets: Set<string>,
  ) {}

  private volumeName(v: VolumeRecord): string {
    return this.opts.rename.get(v.name) ?? v.name;
  }

  private namedVolumes(c: ContainerRecord): VolumeRecord[] {
    return this.opts.includeVolumes ? c.volumes.filter((v) => v.type === 'volume' && !v.anonymous) : [];
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
    const loaded = await engine.loadImage(loadArchive(source, imageScope(c), c.image, ref));
    if (!(await engine.imageExists(c.image.id))) {
      throw new RestoreError(`${c.name}: the engine loaded ${loaded.join(', ') || 'nothing'}, not image ${c.image.id}`);
    }
    await engine.tagImage(c.image.id, repo, this.set.tag);
    return { ref, loaded: true };
  }

  /** Runs `fn` with a never-started container of `image` that mounts `mounts`. */
  private async withHelper<T>(image: string, mounts: Mount[], fn: (id: string) => Promise<T>): Promise<T> {
    const { engine } = this.ctx;
    const id = await engine.createContainer({ Image: image, Entrypoint: ['/csx-helper'], HostConfig: { Mounts: mounts } } as never);
    try {
      return await fn(id);
    } finally {
      // With its anonymous volumes: the snapshot image may declare VOLUMEs, which the helper gets.
      await engine.removeContainer(id, { force: true, volumes: true });
    }
  }

  /** Whether a volume or host path holds anything, seen through a helper that copies nothing into it. */
  private hasData(image: string, mount: Omit<Mount, 'Target'>): Promise<boolean> {
    const m: Mount = { ...mount, Target: '/csx-probe', ...(mount.Type === 'volume' ? { VolumeOptions: { NoCopy: true } } : {}) };
    return this.withHelper(image, [m], async (id) => (await countEntries(await this.ctx.engine.getArchive(id, '/csx-probe'), 2)) > 1);
  }

  /** Everything that would make this restore clobber something, checked before any change. */
  async conflicts(c: ContainerRecord, target: string, image: string): Promise<string[]> {
    const { engine } = this.ctx;
    const found: string[] = [];
    if (!this.opts.replace && (await engine.findContainer(target))) found.push(`container '${target}' exists`);
    for (const v of this.namedVolumes(c)) {
      const name = this.volumeName(v);
      if (!(await engine.inspectVolume(name))) {
        if (v.driverOptions?.device && !this.opts.replace) found.push(`volume '${name}' would be created on ${v.driverOptions.device}, which may hold data`);
        continue;
      }
      const others = (await engine.volumeUsers(name)).filter((u) => !(this.opts.replace && this.targets.has(u.name)));
      if (others.length > 0) found.push(`volume '${name}' is in use by ${others.map((u) => u.name).join(', ')}`);
      else if (!this.opts.replace && (await this.hasData(image, { Type: 'volume', Source: name }))) found.push(`volume '${name}' exists and is not empty`);
    }
    if (this.opts.includeVolumes && !this.opts.replace) {
      for (const v of c.volumes.filter((m) => m.type === 'bind' && m.source)) {
        if (await this.hasData(image, { Type: 'bind', Source: v.source! })) found.push(`host path '${v.source}' is not empty`);
      }
    }
    return found;
  }

  /**
   * With replace, before any other change: each old container is stopped and kept aside under
   * another name until its replacement runs (all of them first, since they may share volumes).
   */
  async setAside(target: string): Promise<void> {
    const { engine, log } = this.ctx;
    const old = await engine.findContainer(target);
    if (!old) return;
    const wasRunning = old.State.Running;
    const wasPaused = old.State.Paused;
    if (wasPaused) await engine.unpause(old.Id);
    if (wasRunning) await engine.stop(old.Id); // its own stop signal and timeout
    const name = `${target}-replaced-${randomBytes(3).toString('hex')}`;
    await engine.renameContainer(old.Id, name);
    this.asides.set(target, { id: old.Id, name, wasRunning, wasPaused });
    log.info(`${target}: the existing container is stopped and kept as '${name}' until the restore succeeds`);
  }

  /** Removes old containers set aside that still hold a volume about to be replaced. */
  private async releaseVolume(c: ContainerRecord, volume: string): Promise<void> {
    const { engine, log } = this.ctx;
    const users = new Set((await engine.volumeUsers(volume)).map((u) => u.id));
    for (const [target, aside] of this.asides) {
      if (!users.has(aside.id)) continue;
      // Its data is replaced by the verified snapshot; it can no longer be put back.
      await engine.removeContainer(aside.id, { force: true, volumes: true });
      this.asides.delete(target);
      log.info(`${c.name}: removed the replaced container '${aside.name}' to replace volume '${volume}'`);
    }
  }

  private async prepareVolumes(c: ContainerRecord, image: string, changes: Changes): Promise<void> {
    const { engine } = this.ctx;
    const toFill: VolumeRecord[] = [];
    for (const v of this.namedVolumes(c)) {
      const name = this.volumeName(v);
      if (this.filled.has(name)) continue;
      if (await engine.inspectVolume(name)) {
        if (!this.opts.replace) {
          toFill.push(v);
          continue;
        }
        await this.releaseVolume(c, name);
        try {
          await engine.removeVolume(name);
        } catch (err) {
          if (err instanceof ConflictError) throw new RestoreError(`${c.name}: volume '${name}' is in use by another container; cannot replace it`);
          throw err;
        }
        await engine.createVolume({ name, driver: v.driver, driverOpts: v.driverOptions, labels: v.labels });
      } else {
        await engine.createVolume({ name, driver: v.driver, driverOpts: v.driverOptions, labels: v.labels });
        changes.createdVolumes.push(name);
      }
      toFill.push(v);
    }
    if (toFill.length === 0) return;
    // Filled before the container exists, so the engine finds them not empty and copies no image content in.
    const mounts: Mount[] = toFill.map((v) => ({ Type: 'volume', Source: this.volumeName(v), Target: v.destination, VolumeOptions: { NoCopy: true } }));
    await this.withHelper(image, mounts, async (id) => {
      for (const v of toFill) {
        await this.fill(c, id, v);
        this.filled.add(this.volumeName(v));
      }
    });
  }

  private async fill(c: ContainerRecord, id: string, v: VolumeRecord): Promise<void> {
    const content = await openContent(this.ctx.source, SET_SCOPE, v.blob, `${c.name} volume ${v.name || v.destination}`);
    await this.ctx.engine.putArchive(id, posix.dirname(v.destination), content);
  }

  private async ensureNetworks(c: ContainerRecord): Promise<void> {
    const { engine, log } = this.ctx;
    for (const n of c.spec.networks) {
      if (!n.definition || (await engine.inspectNetwork(n.name))) continue;
      await engine.createNetwork(createNetworkOptions(n.name, n.definition) as never);
      log.info(`${c.name}: created network ${n.name}`);
    }
  }

  private shouldStart(c: ContainerRecord): boolean {
    if (this.opts.start === 'always') return true;
    if (this.opts.start === 'never') return false;
    return ['running', 'paused', 'restarting'].includes(c.status);
  }

  private async create(c: ContainerRecord, target: string, image: string, changes: Changes): Promise<string> {
    const { engine } = this.ctx;
    await this.ensureNetworks(c);
    const { create, connect } = createOptions(renameReferences(c.spec, this.opts.rename), target, image);
    const id = await engine.createContainer(create);
    changes.container = id;
    if (this.opts.includeVolumes) {
      for (const v of c.volumes.filter((m) => m.type === 'bind' || m.anonymous)) await this.fill(c, id, v);
    }
    for (const n of connect) await engine.connectNetwork(n.network, id, n.endpoint);
    if (this.shouldStart(c)) {
      await engine.start(id);
      if (c.status === 'paused' && this.opts.start === 'auto') await engine.pause(id);
    }
    return id;
  }

  /** Puts back what a failed restore changed; volumes that now hold the snapshot's data are kept. */
  private async rollBack(target: string, changes: Changes): Promise<void> {
    const { engine, log } = this.ctx;
    if (changes.container) await engine.removeContainer(changes.container, { force: true, volumes: true }).catch(() => undefined);
    for (const v of changes.createdVolumes) await engine.removeVolume(v).catch(() => undefined);
    const aside = this.asides.get(target);
    if (!aside) return;
    this.asides.delete(target);
    await engine.renameContainer(aside.id, target);
    if (aside.wasRunning) await engine.start(aside.id);
    if (aside.wasPaused) await engine.pause(aside.id);
    log.info(`${target}: put the previous container back`);
  }

  async restore(c: ContainerRecord, target: string, image: string): Promise<RestoredContainer> {
    const { engine } = this.ctx;
    const changes: Changes = { createdVolumes: [] };
    let id: string;
    try {
      await this.prepareVolumes(c, image, changes);
      id = await this.create(c, target, image, changes);
    } catch (err) {
      await this.rollBack(target, changes).catch((e: unknown) => this.ctx.log.error(`${target}: could not put things back: ${errorMessage(e)}`));
      throw err;
    }
    const aside = this.asides.get(target);
    if (aside) {
      await engine.removeContainer(aside.id, { force: true, volumes: true });
      this.asides.delete(target);
    }
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

export async function runRestore(opts: RestoreOptions, ctx: RestoreContext): Promise<RestoreResult> {
  const { log } = ctx;
  const set = await findSet(ctx.source, opts.snapshot);
  log.info(`Restoring snapshot ${set.tag} (created ${set.created}) from ${ctx.source.label}`);
  const chosen = chooseContainers(set, opts);
  const blobs = await verifyContainers(ctx.source, chosen, opts.includeVolumes, log);
  log.info(`All ${blobs} blob(s) verified`);
  const worker = new ContainerRestore(ctx, opts, set, new Set(chosen.map((c) => opts.rename.get(c.name) ?? c.name)));
  const results: RestoredContainer[] = [];
  const fail = (c: ContainerRecord, target: string, err: unknown) => {
    const r: RestoredContainer = { name: target, from: c.name, id: '', state: '', status: 'failed', error: errorMessage(err) };
    log.warning(`${c.name}: ${r.error}`);
    results.push(r);
  };
  const ready: Array<{ c: ContainerRecord; target: string; image: string }> = [];
  // Images this run loaded for containers it then did not restore are removed again.
  const loadedFor = new Map<ContainerRecord, string>();
  const dropImage = async (c: ContainerRecord) => {
    const ref = loadedFor.get(c);
    if (ref) await ctx.engine.removeImage(ref).catch(() => undefined);
  };
  for (const c of restoreOrder(chosen, opts.rename)) {
    const target = opts.rename.get(c.name) ?? c.name;
    try {
      const { ref: image, loaded } = await worker.loadImage(c);
      if (loaded) loadedFor.set(c, image);
      const conflicts = await worker.conflicts(c, target, image);
      if (conflicts.length > 0) {
        throw new RestoreError(`not restored: ${conflicts.join('; ')}. Set replace: true to replace, or rename it.`);
      }
      ready.push({ c, target, image });
    } catch (err) {
      await dropImage(c);
      fail(c, target, err);
    }
  }
  if (opts.replace) {
    for (const { c, target } of [...ready]) {
      try {
        await worker.setAside(target);
      } catch (err) {
        ready.splice(ready.findIndex((r) => r.c === c), 1);
        await dropImage(c);
        fail(c, target, err);
      }
    }
  }
  for (const { c, target, image } of ready) {
    try {
      const r = await log.group(`Restore ${c.name}${target !== c.name ? ` as ${target}` : ''}`, () => worker.restore(c, target, image));
      log.info(`${target}: restored (${r.state})`);
      results.push(r);
    } catch (err) {
      await dropImage(c);
      fail(c, target, err);
    }
  }
  return { tag: set.tag, containers: results, failed: results.filter((r) => r.status === 'failed').length };
}
