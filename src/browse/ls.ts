import type { Destination } from '../destinations/types.js';
import type { SnapshotSet } from '../snapshot/manifest.js';
import type { FileEntry } from './entries.js';
import type { Target } from './paths.js';
import { sourcesOf } from './sources.js';
import { BrowseError, containerOf, visitUnder } from './view.js';

/** A listed entry and the archive it comes from (`layer`, `volume NAME`, `bind HOST-PATH`). */
export type ListedEntry = FileEntry & { source: string };

/** What `ls SNAPSHOT CONTAINER[:PATH]` prints: the entries at and below `path`, by path. */
export interface PathListing {
  snapshot: string;
  container: string;
  path: string;
  entries: ListedEntry[];
  /** Entry names that climb out of their archive, left out (`..`). */
  unsafe: string[];
}

/** What `ls SNAPSHOT` prints: each container and the archives it has, where they land, their sizes (bytes, uncompressed). */
export interface SetListing {
  snapshot: string;
  containers: Array<{
    name: string;
    status: string;
    image: string;
    sources: Array<{ kind: string; label: string; path: string; size: number }>;
  }>;
}

/** The containers of a set and their archives; reads nothing but the set document. */
export function listSet(set: SnapshotSet): SetListing {
  return {
    snapshot: set.tag,
    containers: set.containers.map((c) => ({
      name: c.name,
      status: c.state,
      image: c.image.baseImage,
      sources: sourcesOf(c).map((s) => ({ kind: s.kind, label: s.label, path: s.root, size: s.blob.contentSize })),
    })),
  };
}

/**
 * Every entry of a container at and below `target.path` (all of it without one): its writable
 * layer's changes, whiteouts as `deleted`, and its mounts' files, each read from `dest` and
 * checked against its digest. Throws BrowseError when the container is not in the set, or when
 * nothing of it lies at a path asked for.
 */
export async function listPath(dest: Destination, set: SnapshotSet, target: Target): Promise<PathListing> {
  const c = containerOf(set, target.container);
  const path = target.path ?? '/';
  const entries: ListedEntry[] = [];
  const unsafe: string[] = [];
  await visitUnder(
    dest,
    c,
    path,
    async (entry, source) => void entries.push({ ...entry, source: source.label }),
    (name) => void unsafe.push(name),
  );
  if (target.path !== undefined && entries.length === 0) {
    throw new BrowseError(`Snapshot ${set.tag}: ${c.name} has nothing at ${path} in its writable layer or mounts (files of its image are not in the set).`);
  }
  entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { snapshot: set.tag, container: c.name, path, entries, unsafe };
}
