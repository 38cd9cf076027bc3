import type { Engine } from '../engine/engine.js';
import { errorMessage, type Logger } from '../core/log.js';
import type { Destination } from '../destinations/types.js';
import { loadArchive } from './image-archive.js';
import type { ContainerRecord } from './manifest.js';
import { imageScope } from './restore-set.js';
import { openLayerContent } from './restore-content.js';

/** At most this many local tags of the container's repository are inspected for held layers. */
const TAGS_INSPECTED = 20;

/**
 * How many leading layers of `layers` the engine holds as `held` says (an image's diff IDs, bottom
 * first): the length of the common prefix of their content digests (a layer's content digest is its
 * diff ID). A layer is the same in the engine only with every layer below it the same (its chain ID,
 * image-spec config.md "Layer ChainID"), hence a prefix.
 */
export function leadingMatch(layers: ReadonlyArray<{ contentDigest: string }>, held: readonly string[]): number {
  let n = 0;
  while (n < layers.length && n < held.length && layers[n].contentDigest === held[n]) n++;
  return n;
}

/**
 * How many leading layers of container `c`'s image the engine already holds: the longest prefix
 * shared with the base image the set names or with a local tag of `repo` (an earlier restore of
 * the container); 0 with the containerd image store, whose load imports every blob listed. Engine
 * errors are thrown (the caller loads every layer then).
 */
export async function heldLayers(engine: Engine, c: ContainerRecord, repo: string): Promise<number> {
  // Asked at once: each is a round trip before the load's first byte.
  const base = c.image.baseImage ? engine.imageDiffIds(c.image.baseImage) : Promise.resolve(undefined);
  base.catch(() => undefined);
  const [containerd, tags] = await Promise.all([engine.containerdImageStore(), engine.imageTags(repo)]);
  if (containerd) return 0;
  const others = tags.slice(0, TAGS_INSPECTED).filter((t) => t !== c.image.baseImage);
  const found = await Promise.all([base, ...others.map((ref) => engine.imageDiffIds(ref))]);
  return Math.max(0, ...found.map((diffIds) => (diffIds ? leadingMatch(c.image.layers, diffIds) : 0)));
}

/** The engine's load failed for want of a layer.tar left out of the archive (Engine 20.10 and 26.1 say "open …/layer.tar: no such file or directory"). */
function missingLayerFile(err: unknown): boolean {
  return /layer\.tar: no such file or directory/.test(errorMessage(err));
}

/**
 * Loads container `c`'s image from `source` into the engine tagged `ref` (`POST /images/load`),
 * leaving out of the archive the leading layers the engine holds (`heldLayers`): their blobs are
 * not read. The engine opens a layer.tar only for a layer whose chain ID it lacks
 * (moby image/tarexport/load.go), and computes the diff ID of each layer it reads, so the loaded
 * image is the set's whole. When the held layers went away before the load (it then fails naming
 * a missing layer.tar and registers nothing), it loads again with every layer. `holding` is
 * `heldLayers` when the caller started it already. Returns what `Engine.loadImage` returns; throws its errors.
 */
export async function loadContainerImage(
  engine: Engine,
  source: Destination,
  c: ContainerRecord,
  repo: string,
  ref: string,
  log: Logger,
  holding: Promise<number> = heldLayers(engine, c, repo),
): Promise<string[]> {
  const held = await holding.catch(() => 0);
  const total = c.image.layers.length;
  const onEngine = held > 0 ? `, ${held === total ? 'all' : `the first ${held}`} on the engine already, not read` : '';
  log.info(`${c.name}: loading image ${c.image.id.slice(0, 19)} (${total} layer(s)${onEngine}) into the engine`);
  const archive = loadArchive(source, imageScope(c), c.image, ref, held, openLayerContent);
  try {
    return await engine.loadImage(archive);
  } catch (err) {
    // What the engine did not take of it is not read on.
    archive.destroy();
    if (held === 0 || !missingLayerFile(err)) throw err;
    log.info(`${c.name}: the engine no longer holds those layers (${errorMessage(err)}): loading every layer`);
    const whole = loadArchive(source, imageScope(c), c.image, ref, 0, openLayerContent);
    try {
      return await engine.loadImage(whole);
    } catch (again) {
      whole.destroy();
      throw again;
    }
  }
}
