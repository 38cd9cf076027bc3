/**
 * A container's image stored once the container is back, as it was taken while held
 * (container-backup.ts): a delta layer on the last snapshot; the whole writable layer made on this
 * host (layer-upper-tar.ts) on top of the base image's layers; or a committed image. An image
 * (the base image, the committed one) is read from the engine's own store on this host where it
 * can be (host-image-store.ts), else with `docker save`.
 */
import { Readable } from 'node:stream';
import type { BackupOptions } from '../core/options.js';
import { SET_SCOPE } from '../destinations/types.js';
import { formatBytes } from '../util/format.js';
import { TarChecker } from '../util/tar-check.js';
import { errorMessage } from '../core/log.js';
import type { ContainerInspect } from '../engine/containers.js';
import { allHave, storeBlob, type StoreTarget } from './blobs.js';
import { storeSavedImage } from './image-archive.js';
import { HostStoreError, hostLayerSize, hostLayerTar, hostLayers, imageStoreRoot, readHostConfig } from './host-image-store.js';
import { ChecksumError } from '../oci/digest.js';
import { IMAGE_CONFIG_MEDIA_TYPE, layerMediaType, type BlobDescriptor, type Compression, type ImageRecord } from './manifest.js';
import { imageConfigWithoutEnv } from './secret-env.js';
import type { Spool, Spooled } from './spool.js';
import type { LayerIndex } from './layer-index.js';
import { storeDelta, storeFullIndex, type PreviousLayer } from './writable-layer.js';
import { type BackupContext, BackupError, runMeter, runTargets } from './backup-context.js';
import type { History } from './backup-history.js';

/**
 * The writable layer as taken while held: committed whole (`imageId`); what changed since
 * `previous` spooled (absent: nothing did); or the whole layer made on this host and spooled, to go
 * on the base image `base` (its ID) with the container's `config` (inspect Config).
 */
export type TakenLayer =
  | { kind: 'commit'; imageId: string; now?: LayerIndex; base: string }
  | { kind: 'delta'; previous: PreviousLayer; now: LayerIndex; spooled?: Spooled }
  | { kind: 'host'; now: LayerIndex; spooled: Spooled; base: string; config: unknown; baseConfig?: Buffer };

/** A stored image and how many blobs were written and reused for it. */
export interface StoredImage {
  image: Omit<ImageRecord, 'baseImage'>;
  stats: { written: number; reused: number };
}

/**
 * The raw config of the container's image from the engine's image store on this host
 * (host-image-store.ts readHostConfig; the store found from the container's overlay2 upper
 * directory); undefined when it is not there or its digest is not the ID. Read before the
 * container is held.
 */
export async function hostImageConfig(info: ContainerInspect): Promise<Buffer | undefined> {
  const root = imageStoreRoot(info.GraphDriver as Parameters<typeof imageStoreRoot>[0]);
  return root ? readHostConfig(root, info.Image ?? '') : undefined;
}

/**
 * The config of an image committed from a container on `base` (moby image.NewChildImage, as
 * `docker commit` makes it): the base's config with `config` the container's, the layer's diff ID
 * added to rootfs.diff_ids, a history entry (created_by: the container's command) and `created`
 * now; the base build's `container` and `container_config` left out.
 */
export function childConfig(base: Buffer, config: unknown, diffId: string, created: string): Buffer {
  const doc = JSON.parse(base.toString('utf8')) as Record<string, unknown> & {
    rootfs: { type: string; diff_ids: string[] };
    history?: Array<Record<string, unknown>>;
  };
  delete doc.container;
  delete doc.container_config;
  const cmd = (config as { Cmd?: string[] | null } | null)?.Cmd ?? [];
  doc.config = config;
  doc.created = created;
  doc.rootfs = { ...doc.rootfs, diff_ids: [...doc.rootfs.diff_ids, diffId] };
  doc.history = [...(doc.history ?? []), { created, created_by: cmd.join(' ') }];
  return Buffer.from(JSON.stringify(doc));
}

/** Stores a container's image once it is back, as ContainerBackup took it. */
export class LayerStore {
  constructor(
    private readonly ctx: BackupContext,
    private readonly opts: BackupOptions,
    private readonly history: History,
    private readonly compression: Compression,
    private readonly spool: Spool,
  ) {}

  private targets(scope: StoreTarget['scope']): StoreTarget[] {
    return runTargets(this.ctx, scope);
  }

  private rewriteConfig(): ((config: Buffer) => Buffer) | undefined {
    const exclude = this.opts.excludeEnv;
    return exclude.length > 0 ? (config: Buffer) => imageConfigWithoutEnv(config, exclude) : undefined;
  }

  private created(): string {
    return (this.ctx.now?.() ?? new Date()).toISOString();
  }

  /**
   * The layer as taken, stored. `imageStore`: the engine's data root where this host may read
   * its image store (host-image-store.ts): images are read there before `docker save` is asked.
   */
  store(name: string, layer: TakenLayer, imageStore?: string): Promise<StoredImage> {
    if (layer.kind === 'delta') return this.storeDeltaImage(name, layer);
    if (layer.kind === 'host') return this.storeHostImage(name, layer, imageStore);
    return this.saveCommit(layer, name, imageStore);
  }

  /** A spooled layer tar, checked as a whole tar as it is read. */
  private spooledTar(spooled: Spooled, what: string): Readable {
    const file = this.spool.read(spooled);
    // A layer that changed nothing (every entry of its upper directory left out) is an archive of no member.
    const tar = file.pipe(new TarChecker(what, true));
    file.on('error', (err) => tar.destroy(err));
    // A failed check (or a reader that stops) leaves the file open otherwise: pipe() only unpipes.
    tar.on('close', () => file.destroy());
    return tar;
  }

  /** The delta layer (checked as a whole tar), its config and the index stored. */
  private async storeDeltaImage(name: string, layer: TakenLayer & { kind: 'delta' }): Promise<StoredImage> {
    let tar: Readable | undefined;
    if (layer.spooled) {
      tar = this.spooledTar(layer.spooled, `${name}: writable layer changes`);
      this.ctx.log.info(`${name}: storing the writable layer's changes (${formatBytes(layer.spooled.bytes)} before compression)`);
    }
    const stored = await storeDelta(
      layer.previous,
      tar,
      layer.now,
      { layers: this.targets({ container: name }), set: this.targets(SET_SCOPE) },
      { layerMediaType: layerMediaType(this.compression), compression: this.compression, created: this.created(), rewriteConfig: this.rewriteConfig() },
    );
    return { image: stored.image, stats: { written: stored.written, reused: layer.previous.image.layers.length } };
  }

  /**
   * The whole writable layer made on this host: the base image's layers stored unless every target
   * holds them (the base image read then, saveImage, beside the new layer's storing), the
   * new layer from the spool, a config as the engine's commit makes it (childConfig), the index.
   */
  private async storeHostImage(name: string, layer: TakenLayer & { kind: 'host' }, imageStore: string | undefined): Promise<StoredImage> {
    const { engine, signal, log } = this.ctx;
    const targets = this.targets({ container: name });
    const mediaType = layerMediaType(this.compression);
    const diffIds = (await engine.inspectImage(layer.base, signal)).RootFS.Layers ?? [];
    const known = new Map<string, BlobDescriptor>();
    for (const diffId of diffIds) {
      const blob = this.history.layers.get(diffId);
      if (blob && blob.mediaType === mediaType && (await allHave(targets, blob.digest))) known.set(diffId, blob);
    }
    log.info(`${name}: storing the writable layer made on this host (${formatBytes(layer.spooled.bytes)} before compression)`);
    const storing = storeBlob(this.spooledTar(layer.spooled, `${name}: writable layer`), targets, mediaType);
    // Its failure is awaited below, once the base image's save has ended: never an unhandled rejection meanwhile.
    storing.catch(() => undefined);
    let base: { layers: BlobDescriptor[]; config: Buffer; written: number; reused: number };
    try {
      if (layer.baseConfig && diffIds.every((d) => known.has(d))) {
        log.info(`${name}: the base image's ${diffIds.length} layer(s) are already stored`);
        base = { layers: diffIds.map((d) => known.get(d)!), config: layer.baseConfig, written: 0, reused: diffIds.length };
      } else base = await this.saveBase(name, layer.base, diffIds, known, imageStore);
    } catch (err) {
      await storing.catch(() => undefined);
      throw err;
    }
    const blob = await storing;
    const config = childConfig(base.config, layer.config, blob.contentDigest, this.created());
    const rewrite = this.rewriteConfig();
    const configBlob = await storeBlob(Readable.from([rewrite?.(config) ?? config]), this.targets(SET_SCOPE), IMAGE_CONFIG_MEDIA_TYPE);
    const index = await storeFullIndex(layer.now, this.targets(SET_SCOPE), this.compression);
    return {
      image: { id: configBlob.contentDigest, config: configBlob, layers: [...base.layers, blob], baseLayers: base.layers.length, ...index },
      // Image layers, as the commit path counts them (image-archive.ts): the config and the index are not.
      stats: { written: base.written + 1, reused: base.reused },
    };
  }

  /** The base image read (saveImage): its layers stored where missing, its config kept (not stored). */
  private async saveBase(
    name: string,
    imageId: string,
    diffIds: string[],
    known: Map<string, BlobDescriptor>,
    imageStore: string | undefined,
  ): Promise<{ layers: BlobDescriptor[]; config: Buffer; written: number; reused: number }> {
    let config: Buffer | undefined;
    const keep = (bytes: Buffer) => (config = bytes);
    const result = await this.saveImage(imageId, name, diffIds, known, { configTargets: [], rewriteConfig: keep, what: 'base image', imageStore });
    if (!config) throw new BackupError(`${name}: the base image's save has no config`);
    return { layers: result.image.layers, config, ...result.stats };
  }

  /** The committed image stored, and the writable layer's index beside it. */
  private async saveCommit(layer: TakenLayer & { kind: 'commit' }, name: string, imageStore: string | undefined): Promise<StoredImage> {
    const { engine, signal } = this.ctx;
    const targets = this.targets({ container: name });
    const diffIds = (await engine.inspectImage(layer.imageId, signal)).RootFS.Layers ?? [];
    const known = new Map<string, BlobDescriptor>();
    for (const diffId of diffIds) {
      const blob = this.history.layers.get(diffId);
      if (blob && blob.mediaType === layerMediaType(this.compression) && (await allHave(targets, blob.digest))) known.set(diffId, blob);
    }
    const { image, stats } = await this.saveImage(layer.imageId, name, diffIds, known, {
      configTargets: this.targets(SET_SCOPE),
      rewriteConfig: this.rewriteConfig(),
      what: 'image',
      imageStore,
    });
    const index = await storeFullIndex(layer.now, this.targets(SET_SCOPE), this.compression);
    // Without excluded variables, the stored config is another image: its ID is that config's digest.
    const id = this.opts.excludeEnv.length > 0 ? image.config.contentDigest : layer.imageId;
    const baseLayers = await this.baseLayersOf(name, layer.base, diffIds);
    return { image: { ...image, id, ...(baseLayers !== undefined ? { baseLayers } : {}), ...index }, stats };
  }

  /**
   * How many of a committed image's layers (`diffIds`, bottom first) are those of `base`, the image
   * its container was made from: all of base's, when they are the committed image's first ones
   * (the commit then added one layer, or none when the container had changed nothing). Undefined
   * when base cannot be inspected (removed since with `docker rmi -f`) or is not below it.
   */
  private async baseLayersOf(name: string, base: string, diffIds: string[]): Promise<number | undefined> {
    const { engine, signal } = this.ctx;
    let below: string[];
    try {
      below = (await engine.inspectImage(base, signal)).RootFS.Layers ?? [];
    } catch (err) {
      signal?.throwIfAborted();
      this.ctx.log.info(
        `${name}: the image it was made from cannot be inspected (${errorMessage(err)}): ls, extract and diff take the top layer for its changes`,
      );
      return undefined;
    }
    return below.length <= diffIds.length && below.every((d, i) => diffIds[i] === d) ? below.length : undefined;
  }

  /**
   * Image `imageId` stored: read from the engine's store on this host (`how.imageStore`,
   * readFromStore), else (no store, or its read failed: the reason logged in one line) with
   * `docker save`, layers in `known` checked, not written, and saved again without reuse once if
   * one was not what it seemed.
   */
  private async saveImage(
    imageId: string,
    name: string,
    diffIds: string[],
    known: Map<string, BlobDescriptor>,
    how: { configTargets: StoreTarget[]; rewriteConfig?: (config: Buffer) => Buffer; what: string; imageStore?: string },
  ): Promise<SavedImage> {
    const { engine, signal } = this.ctx;
    if (how.imageStore) {
      // Layers stored from the store before a failure are not read again by the save.
      known = new Map(known);
      try {
        return await this.readFromStore(how.imageStore, imageId, name, diffIds, known, how);
      } catch (err) {
        signal?.throwIfAborted();
        const why = hostStoreFailure(err);
        if (!why) throw err;
        this.ctx.log.info(`${name}: the ${how.what} is read with docker save instead: ${why.message}`);
      }
    }
    const targets = this.targets({ container: name });
    const base = {
      diffIds,
      layerMediaType: layerMediaType(this.compression),
      configTargets: how.configTargets,
      rewriteConfig: how.rewriteConfig,
      meter: (bytes: number) => runMeter(this.ctx)(`${name}: layer ${n} of ${diffIds.length}`, bytes),
    };
    let n = 0;
    const onLayer = (bytes: number, known: boolean) =>
      this.ctx.log.info(`${name}: ${known ? 'checking' : 'storing'} layer ${++n} of ${diffIds.length} (${formatBytes(bytes)})`);
    this.ctx.log.info(`${name}: reading the ${how.what} (${diffIds.length} layer(s)) from the engine`);
    let result = await storeSavedImage(await engine.saveImage(imageId, signal), targets, { ...base, known, onLayer });
    if ('retry' in result) {
      n = 0;
      result = await storeSavedImage(await engine.saveImage(imageId, signal), targets, { ...base, known: new Map(), onLayer });
    }
    if ('retry' in result) throw new BackupError(`${name}: could not read the ${how.what === 'image' ? 'committed image' : how.what} consistently`);
    return { image: result.image, stats: { written: result.written, reused: result.reused } };
  }

  /**
   * Image `imageId` read from the engine's image store at `root` (host-image-store.ts): its
   * config (its digest the ID, its diff IDs `diffIds`), each layer in `known` taken as stored
   * (the chain of diff IDs names it exactly), each other one put together from the store and
   * stored, checked against its diff ID before any target keeps it, and added to `known`. Throws
   * a HostStoreError where the store does not give the image (the caller then saves it), the
   * destinations' errors, and the signal's reason once aborted.
   */
  private async readFromStore(
    root: string,
    imageId: string,
    name: string,
    diffIds: string[],
    known: Map<string, BlobDescriptor>,
    how: { configTargets: StoreTarget[]; rewriteConfig?: (config: Buffer) => Buffer; what: string },
  ): Promise<SavedImage> {
    const { log, signal } = this.ctx;
    const config = await readHostConfig(root, imageId);
    if (!config) throw new HostStoreError(`its config is not in the engine's store at ${root}`);
    const listed = (JSON.parse(config.toString('utf8')) as { rootfs?: { diff_ids?: string[] } }).rootfs?.diff_ids ?? [];
    if (listed.length !== diffIds.length || listed.some((d, i) => d !== diffIds[i])) {
      throw new HostStoreError(`its config in the engine's store lists other layers than the engine's inspect`);
    }
    const layers = await hostLayers(root, diffIds);
    log.info(`${name}: reading the ${how.what} (${diffIds.length} layer(s)) from the engine's image store on this host`);
    const targets = this.targets({ container: name });
    const blobs: BlobDescriptor[] = [];
    let written = 0;
    for (const [i, layer] of layers.entries()) {
      const what = `layer ${i + 1} of ${layers.length}`;
      const hit = known.get(layer.diffId);
      if (hit) {
        log.info(`${name}: ${what} is already stored`);
        blobs.push(hit);
        continue;
      }
      const bytes = await hostLayerSize(layer, signal);
      log.info(`${name}: storing ${what} (${formatBytes(bytes)})`);
      const meter = runMeter(this.ctx)(`${name}: ${what}`, bytes);
      let blob: BlobDescriptor;
      try {
        blob = await storeBlob(hostLayerTar(layer, signal), targets, layerMediaType(this.compression), meter, layer.diffId);
      } catch (err) {
        // storeBlob's check of the diff ID: this host did not reproduce the layer.
        if (err instanceof ChecksumError) throw new HostStoreError(`${what}: ${err.message}`, { cause: err });
        throw err;
      }
      // Known from now on: an image listing the same layer twice stores it once, a save after a failure does not store it again.
      known.set(layer.diffId, blob);
      blobs.push(blob);
      written++;
    }
    const configBlob = await storeBlob(Readable.from([how.rewriteConfig?.(config) ?? config]), how.configTargets, IMAGE_CONFIG_MEDIA_TYPE);
    return { image: { config: configBlob, layers: blobs }, stats: { written, reused: layers.length - written } };
  }
}

/** An image's config and layers as stored, and how many layer blobs were written and reused. */
type SavedImage = { image: Pick<ImageRecord, 'config' | 'layers'>; stats: { written: number; reused: number } };

/** The failure of a read of the engine's store on this host (a HostStoreError: a file not as recorded, a layer of another digest) in `err` or its causes. */
function hostStoreFailure(err: unknown): Error | undefined {
  for (let e = err; e instanceof Error; e = e.cause) if (e instanceof HostStoreError) return e;
  return undefined;
}
