import { posix } from 'node:path';
import tar from 'tar-stream';
import type { RestoreOptions } from '../core/options.js';
import { errorMessage, type Logger } from '../core/log.js';
import { repoComponent } from '../core/names.js';
import { ConflictError, type Engine } from '../engine/engine.js';
import type { BlobScope, Destination } from '../destinations/types.js';
import { openContent, verifyBlob } from './blobs.js';
import { loadArchive } from './image-archive.js';
import type { ContainerRecord, SnapshotSet, VolumeRecord } from './manifest.js';
import { createNetworkOptions, createOptions } from './spec.js';

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
    await verifyBlob(source, scope, c.image.config, `${c.name} image config`);
    for (const [i, layer] of c.image.layers.entries()) await verifyBlob(source, scope, layer, `${c.name} layer ${i}`);
    count += 1 + c.image.layers.length;
    if (includeVolumes) {
      for (const v of c.volumes) await verifyBlob(source, { set: true }, v.blob, `${c.name} volume ${v.name || v.destination}`);
      count += c.volumes.length;
    }
    log.info(`${c.name}: checksums verified`);
  }
  return count;
}

async function countEntries(stream: NodeJS.ReadableStream, limit: number): Promise<number> {
  const extract = tar.extract();
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

class ContainerRestore {
  constructor(
    private readonly ctx: RestoreContext,
    private readonly opts: RestoreOptions,
    private readonly set: SnapshotSet,
  ) {}

  private volumeName(v: VolumeRecord): string {
    return this.opts.rename.get(v.name) ?? v.name;
  }

  private namedVolumes(c: ContainerRecord): VolumeRecord[] {
    return c.volumes.filter((v) => v.type === 'volume' && !v.anonymous);
  }

  async loadImage(c: ContainerRecord): Promise<string> {
    const { engine, source } = this.ctx;
    const repo = localImageName(c.name);
    if (!(await engine.imageExists(c.image.id))) {
      const loaded = await engine.loadImage(loadArchive(source, imageScope(c), c.image, `${repo}:${this.set.tag}`));
      if (!(await engine.imageExists(c.image.id))) {
        throw new RestoreError(`${c.name}: the engine loaded ${loaded.join(', ') || 'nothing'}, not image ${c.image.id}`);
      }
    }
    await engine.tagImage(c.image.id, repo, this.set.tag);
    return `${repo}:${this.set.tag}`;
  }

  /** A volume that exists and holds anything, seen through a never-started probe container. */
  private async volumeHasData(volume: string, image: string): Promise<boolean> {
    const { engine } = this.ctx;
    const probe = await engine.createContainer({
      Image: image,
      Entrypoint: ['/csx-probe'],
      HostConfig: { Mounts: [{ Type: 'volume', Source: volume, Target: '/csx-probe', VolumeOptions: { NoCopy: true } }] },
    } as never);
    try {
      return (await countEntries(await engine.getArchive(probe, '/csx-probe'), 2)) > 1;
    } finally {
      await engine.removeContainer(probe, { force: true });
    }
  }

  /** Everything that would make this restore clobber something, checked before any change. */
  async conflicts(c: ContainerRecord, target: string, image: string): Promise<string[]> {
    const { engine } = this.ctx;
    const found: string[] = [];
    if (!this.opts.replace && (await engine.containerExists(target))) found.push(`container '${target}' exists`);
    if (this.opts.includeVolumes) {
      for (const v of this.namedVolumes(c)) {
        const name = this.volumeName(v);
        if ((await engine.inspectVolume(name)) && !this.opts.replace && (await this.volumeHasData(name, image))) {
          found.push(`volume '${name}' exists and is not empty`);
        }
      }
    }
    return found;
  }

  private async prepareVolumes(c: ContainerRecord, created: string[]): Promise<void> {
    const { engine } = this.ctx;
    for (const v of this.namedVolumes(c)) {
      const name = this.volumeName(v);
      if (await engine.inspectVolume(name)) {
        if (!this.opts.replace || !this.opts.includeVolumes) continue;
        try {
          await engine.removeVolume(name);
        } catch (err) {
          if (err instanceof ConflictError) throw new RestoreError(`${c.name}: volume '${name}' is in use by another container; cannot replace it`);
          throw err;
        }
      }
      await engine.createVolume({ name, driver: v.driver, driverOpts: v.driverOptions, labels: v.labels });
      created.push(name);
    }
  }

  private specWithRenames(c: ContainerRecord): ContainerRecord['spec'] {
    if (this.opts.rename.size === 0) return c.spec;
    const hostConfig = { ...c.spec.hostConfig };
    const rename = (source: string) => this.opts.rename.get(source) ?? source;
    if (Array.isArray(hostConfig.Binds)) {
      hostConfig.Binds = (hostConfig.Binds as string[]).map((b) => {
        const [source, ...rest] = b.split(':');
        return source.startsWith('/') ? b : [rename(source), ...rest].join(':');
      });
    }
    if (Array.isArray(hostConfig.Mounts)) {
      hostConfig.Mounts = (hostConfig.Mounts as Array<{ Type?: string; Source?: string }>).map((m) =>
        m.Type === 'volume' && m.Source ? { ...m, Source: rename(m.Source) } : m,
      );
    }
    return { ...c.spec, hostConfig };
  }

  private async ensureNetworks(c: ContainerRecord): Promise<void> {
    const { engine, log } = this.ctx;
    for (const n of c.spec.networks) {
      if (await engine.inspectNetwork(n.name)) continue;
      if (!n.definition) throw new RestoreError(`${c.name}: network '${n.name}' is missing and the snapshot has no definition of it`);
      await engine.createNetwork(createNetworkOptions(n.name, n.definition) as never);
      log.info(`${c.name}: created network ${n.name}`);
    }
  }

  private async fillVolumes(c: ContainerRecord, id: string): Promise<void> {
    const { engine, source } = this.ctx;
    for (const v of c.volumes) {
      const content = await openContent(source, { set: true }, v.blob, `${c.name} volume ${v.name || v.destination}`);
      await engine.putArchive(id, posix.dirname(v.destination), content);
    }
  }

  private shouldStart(c: ContainerRecord): boolean {
    if (this.opts.start === 'always') return true;
    if (this.opts.start === 'never') return false;
    return ['running', 'paused', 'restarting'].includes(c.status);
  }

  async restore(c: ContainerRecord, target: string, image: string): Promise<RestoredContainer> {
    const { engine, log } = this.ctx;
    if (this.opts.replace && (await engine.containerExists(target))) {
      await engine.removeContainer(target, { force: true });
      log.info(`${c.name}: removed the existing container '${target}' (replace)`);
    }
    const createdVolumes: string[] = [];
    let id: string | undefined;
    try {
      if (this.opts.includeVolumes) await this.prepareVolumes(c, createdVolumes);
      await this.ensureNetworks(c);
      const { create, connect } = createOptions(this.specWithRenames(c), target, image);
      id = await engine.createContainer(create);
      if (this.opts.includeVolumes) await this.fillVolumes(c, id);
      for (const n of connect) await engine.connectNetwork(n.network, id, n.endpoint);
      if (this.shouldStart(c)) {
        await engine.start(id);
        if (c.status === 'paused' && this.opts.start === 'auto') await engine.pause(id);
      }
    } catch (err) {
      if (id) await engine.removeContainer(id, { force: true, volumes: true }).catch(() => undefined);
      for (const v of createdVolumes) await engine.removeVolume(v).catch(() => undefined);
      throw err;
    }
    const info = await engine.inspectContainer(id);
    return { name: target, from: c.name, id, state: info.State.Paused ? 'paused' : info.State.Status, status: 'ok' };
  }
}

export async function runRestore(opts: RestoreOptions, ctx: RestoreContext): Promise<RestoreResult> {
  const { log } = ctx;
  const set = await findSet(ctx.source, opts.snapshot);
  log.info(`Restoring snapshot ${set.tag} (created ${set.created}) from ${ctx.source.label}`);
  const chosen = chooseContainers(set, opts);
  const blobs = await verifyContainers(ctx.source, chosen, opts.includeVolumes, log);
  log.info(`All ${blobs} blob(s) verified`);
  const worker = new ContainerRestore(ctx, opts, set);
  const results: RestoredContainer[] = [];
  const fail = (c: ContainerRecord, target: string, err: unknown) => {
    const r: RestoredContainer = { name: target, from: c.name, id: '', state: '', status: 'failed', error: errorMessage(err) };
    log.error(`${c.name}: ${r.error}`);
    results.push(r);
  };
  const ready: Array<{ c: ContainerRecord; target: string; image: string }> = [];
  for (const c of chosen) {
    const target = opts.rename.get(c.name) ?? c.name;
    try {
      const image = await worker.loadImage(c);
      const conflicts = await worker.conflicts(c, target, image);
      if (conflicts.length > 0) {
        throw new RestoreError(`not restored: ${conflicts.join('; ')}. Set replace: true to replace, or rename it.`);
      }
      ready.push({ c, target, image });
    } catch (err) {
      fail(c, target, err);
    }
  }
  for (const { c, target, image } of ready) {
    try {
      const r = await log.group(`Restore ${c.name}${target !== c.name ? ` as ${target}` : ''}`, () => worker.restore(c, target, image));
      log.info(`${target}: restored (${r.state})`);
      results.push(r);
    } catch (err) {
      fail(c, target, err);
    }
  }
  return { tag: set.tag, containers: results, failed: results.filter((r) => r.status === 'failed').length };
}
