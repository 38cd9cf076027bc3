import { Readable } from 'node:stream';
import { SET_SCOPE, type Destination } from '../destinations/types.js';
import { readSmall } from '../util/streams.js';
import { allHave, openContent, storeBlob, type StoreTarget } from './blobs.js';
import { deltaConfig } from './layer-delta.js';
import { layerIndexJson, readLayerIndex, storeLayerIndex, type LayerIndex } from './layer-index.js';
import { IMAGE_CONFIG_MEDIA_TYPE, type BlobDescriptor, type Compression, type ImageRecord } from './manifest.js';

export { DEFAULT_LAYER_COMPACTION } from '../core/backup-input.js';
/**
 * A writable layer with more paths than this for the engine to stat is committed whole and not
 * indexed: each is stat'ed while the container is held (~0.6 ms a path measured here, 8 at once).
 * Paths this host stats in the layer's upper directory (layer-upper.ts) do not count; a layer's
 * index holds at most MAX_LAYER_PATHS (layer-index.ts) in all.
 */
export const MAX_INDEXED_PATHS = 4000;

/**
 * A delta that would read more changed paths than this is not taken: the whole layer is committed
 * instead. Each path is one `GET /containers/{id}/archive` while the container is held.
 */
export const MAX_DELTA_READS = 2000;

/** The container's last snapshot in the destinations, which a delta layer goes on top of. */
export interface PreviousLayer {
  image: ImageRecord & { layerIndex: BlobDescriptor };
  deltas: number;
  index: LayerIndex;
  config: Buffer;
}

/**
 * The last snapshot's image of this container as a base for a delta: taken by the same container
 * under the same name, indexed, its layers stored with `layerMediaType` in every target and its
 * config and index in every destination. Reads its index and config (before the container is
 * held: no destination is waited on while it is). Undefined when it cannot serve.
 */
export async function previousLayer(
  image: ImageRecord | undefined,
  layerTargets: StoreTarget[],
  setTargets: StoreTarget[],
  layerMediaType: string,
): Promise<PreviousLayer | undefined> {
  if (!image?.layerIndex || !image.config) return undefined;
  const indexBlob = image.layerIndex;
  if (image.layers.some((l) => l.mediaType !== layerMediaType || l.encryption) || image.config.encryption || indexBlob.encryption) return undefined;
  for (const l of image.layers) if (!(await allHave(layerTargets, l.digest))) return undefined;
  if (!(await allHave(setTargets, image.config.digest)) || !(await allHave(setTargets, indexBlob.digest))) return undefined;
  const source: Destination = setTargets[0].dest;
  const index = await readLayerIndex(source, indexBlob);
  const config = await readSmall(await openContent(source, SET_SCOPE, image.config, 'image config'));
  return { image: { ...image, layerIndex: indexBlob }, deltas: image.deltas ?? 0, index, config };
}

/** Whether the next snapshot may be a delta on `previous`: there is one, and it has fewer than `compaction` deltas (0: never). */
export function deltaAllowed(previous: PreviousLayer | undefined, compaction: number): previous is PreviousLayer {
  return previous !== undefined && compaction > 0 && previous.deltas < compaction;
}

/** What storing a delta image stored: the image record, and how many blobs were written. */
export interface StoredDelta {
  image: Pick<ImageRecord, 'id' | 'config' | 'layers' | 'deltas' | 'layerIndex' | 'baseLayers'>;
  written: number;
}

/**
 * Stores a delta snapshot: the delta layer (`layer`, a tar; absent when nothing changed: the
 * previous image serves again), the config with its diff ID added, and the index `now`.
 */
export async function storeDelta(
  previous: PreviousLayer,
  layer: Readable | undefined,
  now: LayerIndex,
  targets: { layers: StoreTarget[]; set: StoreTarget[] },
  opts: { layerMediaType: string; compression: Compression; created: string; rewriteConfig?: (config: Buffer) => Buffer },
): Promise<StoredDelta> {
  if (!layer) {
    const { id, config, layers, deltas, baseLayers } = previous.image;
    const same = layerIndexJson(now) === layerIndexJson(previous.index);
    const layerIndex = same ? previous.image.layerIndex : await storeLayerIndex(now, targets.set, opts.compression);
    return { image: { id, config, layers, deltas, layerIndex, ...(baseLayers !== undefined ? { baseLayers } : {}) }, written: same ? 0 : 1 };
  }
  const layerIndex = await storeLayerIndex(now, targets.set, opts.compression);
  const delta = await storeBlob(layer, targets.layers, opts.layerMediaType);
  const configBytes = deltaConfig(opts.rewriteConfig?.(previous.config) ?? previous.config, delta.contentDigest, opts.created);
  const config = await storeBlob(Readable.from([configBytes]), targets.set, IMAGE_CONFIG_MEDIA_TYPE);
  return {
    image: {
      id: config.contentDigest,
      config,
      layers: [...previous.image.layers, delta],
      deltas: previous.deltas + 1,
      layerIndex,
      ...(previous.image.baseLayers !== undefined ? { baseLayers: previous.image.baseLayers } : {}),
    },
    written: 3,
  };
}

/** Stores the index of a committed (whole) writable layer: the base the next backup's delta compares with. */
export async function storeFullIndex(
  now: LayerIndex | undefined,
  targets: StoreTarget[],
  compression: Compression,
): Promise<Pick<ImageRecord, 'deltas' | 'layerIndex'>> {
  return now ? { deltas: 0, layerIndex: await storeLayerIndex(now, targets, compression) } : {};
}
