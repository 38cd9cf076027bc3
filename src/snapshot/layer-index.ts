import { Readable } from 'node:stream';
import type { PathStat } from '../engine/container-io.js';
import type { Engine } from '../engine/engine.js';
import type { Destination } from '../destinations/types.js';
import { SET_SCOPE } from '../destinations/types.js';
import { readSmall } from '../util/streams.js';
import { openContent, storeBlob, type StoreTarget } from './blobs.js';
import { trustedUpperDir, upperEntry, type UpperDir } from './layer-upper.js';
import type { BlobDescriptor, Compression } from './manifest.js';

/** Media type of a writable layer's index (JSON, compressed as the set's blobs). */
export function layerIndexMediaType(compression: Compression): string {
  return `application/vnd.container-snapshot.layer-index.v1+json+${compression}`;
}

/** A path of a writable layer as the engine stats it, or a whiteout (deleted from the image below). */
export interface LayerEntry {
  /** Go's os.FileMode as the engine gives it (type and permission bits); 0 for a whiteout. */
  mode: number;
  size: number;
  /** RFC 3339 with nanoseconds, as the engine gives it; '' for a whiteout. */
  mtime: string;
  whiteout?: true;
  /** Its change time (ns since the epoch, decimal), where this host stat it in the upper directory. */
  ctimeNs?: string;
}

/**
 * What a container's writable layer held at one snapshot: every path of
 * `GET /containers/{id}/changes`, by absolute path. The next backup compares with it.
 */
export interface LayerIndex {
  entries: Record<string, LayerEntry>;
}

/** Go os.FileMode type bits (io/fs): ModeDir 1<<31, ModeSymlink 1<<27; every type bit is in 0xFFF80000. */
const GO_DIR = 0x80000000;
const GO_SYMLINK = 0x08000000;
const GO_TYPE = 0xfff80000;

export function isDir(e: LayerEntry): boolean {
  return !e.whiteout && (e.mode & GO_DIR) !== 0;
}

export function isSymlink(e: LayerEntry): boolean {
  return !e.whiteout && (e.mode & GO_SYMLINK) !== 0;
}

/** A regular file (no type bit set). */
export function isRegular(e: LayerEntry): boolean {
  return !e.whiteout && (e.mode & GO_TYPE) === 0;
}

export function entryOf(stat: PathStat): LayerEntry {
  return { mode: stat.mode, size: stat.size, mtime: stat.mtime };
}

/**
 * Same path content and metadata as far as the stats tell (ownership they do not tell): mode, size
 * and mtime, and the ctime too where this host stat both (a same-size rewrite with its mtime put
 * back, a chown, a new hard link change only the ctime).
 */
export function sameEntry(a: LayerEntry | undefined, b: LayerEntry): boolean {
  if (!a) return false;
  if (a.whiteout || b.whiteout) return Boolean(a.whiteout && b.whiteout);
  if (a.ctimeNs !== undefined && b.ctimeNs !== undefined && a.ctimeNs !== b.ctimeNs) return false;
  return a.mode === b.mode && a.size === b.size && a.mtime === b.mtime;
}

/**
 * The most paths a layer index holds (each ~100 bytes in memory and ~20 bytes compressed in the
 * stored index): a layer with more is committed whole at every backup.
 */
export const MAX_LAYER_PATHS = 200_000;

/** Stats taken at once against one engine (each a HEAD request of ~1 ms, measured here; the engine runs them one at a time per container). */
const STAT_CONCURRENCY = 8;

/**
 * The index of a container's writable layer: `GET /containers/{id}/changes`, then a stat of each
 * path not deleted: an lstat in the container's overlay2 upper directory when this host reads it
 * and it answers as the engine does (layer-upper.ts: the same mode, size and mtime, to the
 * nanosecond; ~5 µs a path), else the engine's (`HEAD /containers/{id}/archive`, ~1.2 ms a path,
 * serialised by the engine). Undefined when more than `maxPaths` paths would go to the engine
 * (stat'ing them would hold the container longer than a commit), or the layer has more than
 * `maxTotal` paths in all (default MAX_LAYER_PATHS: the index is held in memory and stored). A
 * path that vanished between the two calls (a container not held) is left out. `hostReads`: the
 * upper directory may be read at all — only while the container is at rest (paused, stopped, not
 * running), since a running process could swap a directory for a symlink between the list and the
 * lstat (default false: the engine only).
 */
export async function scanLayer(
  engine: Engine,
  id: string,
  maxPaths: number,
  signal?: AbortSignal,
  opts: { hostReads?: boolean; maxTotal?: number } = {},
): Promise<LayerIndex | undefined> {
  return (await scanLayerOn(engine, id, maxPaths, signal, opts)).index;
}

/**
 * scanLayer, and the upper directory it read on this host (trusted as layer-upper.ts trusts it:
 * probes equal to the engine's stat) when it read one: undefined when every path went to the
 * engine, or the layer had no path to probe.
 */
export async function scanLayerOn(
  engine: Engine,
  id: string,
  maxPaths: number,
  signal?: AbortSignal,
  { hostReads = false, maxTotal = MAX_LAYER_PATHS }: { hostReads?: boolean; maxTotal?: number } = {},
): Promise<{ index?: LayerIndex; upper?: UpperDir }> {
  const changes = await engine.containerChanges(id, signal);
  if (changes.length > maxTotal || (!hostReads && changes.length > maxPaths)) return {};
  const upper =
    hostReads &&
    (await trustedUpperDir(
      engine,
      id,
      changes.filter((c) => c.Kind !== 2).map((c) => c.Path),
      signal,
    ));
  if (!upper && changes.length > maxPaths) return {};
  const entries: Record<string, LayerEntry> = {};
  const queue: typeof changes = [];
  for (const c of changes) {
    const host = c.Kind !== 2 && upper ? upperEntry(upper, c.Path) : undefined;
    if (c.Kind === 2) entries[c.Path] = { mode: 0, size: 0, mtime: '', whiteout: true };
    else if (host) entries[c.Path] = host;
    else queue.push(c);
  }
  if (queue.length > maxPaths) return {};
  const worker = async () => {
    for (let c = queue.shift(); c; c = queue.shift()) {
      const stat = await engine.statPath(id, c.Path, signal);
      if (stat) entries[c.Path] = entryOf(stat);
    }
  };
  await Promise.all(Array.from({ length: STAT_CONCURRENCY }, worker));
  const index = { entries: Object.fromEntries(Object.entries(entries).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) };
  return { index, ...(upper ? { upper } : {}) };
}

/** Stores the index as a set-scope blob (JSON, compressed). */
export function storeLayerIndex(index: LayerIndex, targets: StoreTarget[], compression: Compression): Promise<BlobDescriptor> {
  return storeBlob(Readable.from([Buffer.from(JSON.stringify(index))]), targets, layerIndexMediaType(compression));
}

export class LayerIndexError extends Error {
  override name = 'LayerIndexError';
}

/** Reads a stored index back (its digests checked); throws LayerIndexError when it is not one. */
export async function readLayerIndex(dest: Destination, blob: BlobDescriptor): Promise<LayerIndex> {
  const text = (await readSmall(await openContent(dest, SET_SCOPE, blob, 'writable layer index'))).toString('utf8');
  const index = JSON.parse(text) as LayerIndex;
  if (!index || typeof index.entries !== 'object' || index.entries === null) throw new LayerIndexError('the writable layer index has no entries');
  return index;
}
