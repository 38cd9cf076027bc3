import { SET_SCOPE, type BlobScope } from '../destinations/types.js';
import type { BlobDescriptor, ContainerRecord } from '../snapshot/manifest.js';
import { within } from './paths.js';

/**
 * One archive of a container in a set, and where its entries land in the container: the
 * writable layer at `/`, a volume or bind mount at its mount destination.
 */
export interface Source {
  kind: 'layer' | 'volume' | 'bind';
  /** Where the archive's entries land: `/` for the layer, the mount destination for a mount. */
  root: string;
  /** In words: `layer`, `volume NAME`, `bind HOST-PATH`. */
  label: string;
  blob: BlobDescriptor;
  /**
   * The layer only: the layers `blob` goes on top of when the writable layer is a stack (the full
   * layer, then each delta before the top; ImageRecord.deltas), bottom first, in the same scope.
   */
  below?: BlobDescriptor[];
  scope: BlobScope;
}

/**
 * The container's writable layer: the layers of its snapshot image above those of the image it was
 * made from (ImageRecord.baseLayers): the whole writable layer, then each delta layer
 * (ImageRecord.deltas) on it. Undefined when there are none: the container had changed nothing
 * (a commit that finds nothing changed adds no layer). A set written before baseLayers was
 * recorded: the top layer and the `deltas` layers below it (a commit adds one layer at most).
 */
export function layerSource(c: ContainerRecord): Source | undefined {
  const { layers, baseLayers, deltas } = c.image;
  const stack = baseLayers !== undefined ? layers.slice(baseLayers) : layers.slice(-((deltas ?? 0) + 1));
  const top = stack.at(-1);
  const below = stack.slice(0, -1);
  return top && { kind: 'layer', root: '/', label: 'layer', blob: top, scope: { container: c.name }, ...(below.length > 0 ? { below } : {}) };
}

/** Every archive of a container: its layer first, then its mounts by destination. */
export function sourcesOf(c: ContainerRecord): Source[] {
  const mounts: Source[] = c.volumes.map((v) => ({
    kind: v.type,
    root: v.destination,
    label: v.type === 'bind' ? `bind ${v.source ?? ''}` : `volume ${v.name}`,
    blob: v.blob,
    scope: SET_SCOPE,
  }));
  const layer = layerSource(c);
  return [...(layer ? [layer] : []), ...mounts.sort((a, b) => a.root.localeCompare(b.root))];
}

/** The source a container path comes from: the deepest mount above it, else the layer. */
export function ownerOf(path: string, sources: Source[]): Source | undefined {
  let best: Source | undefined;
  for (const s of sources) if (within(path, s.root) && (!best || s.root.length > best.root.length)) best = s;
  return best;
}

/** The sources that can hold something at or below `top`: those above it and those below it. */
export function sourcesUnder(top: string, sources: Source[]): Source[] {
  const owner = ownerOf(top, sources);
  return sources.filter((s) => s === owner || within(s.root, top));
}
