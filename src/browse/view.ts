import type { Readable } from 'node:stream';
import type { Destination } from '../destinations/types.js';
import type { ContainerRecord, SnapshotSet } from '../snapshot/manifest.js';
import { walk, type FileEntry } from './entries.js';
import { within } from './paths.js';
import { ownerOf, sourcesOf, sourcesUnder, type Source } from './sources.js';

export class BrowseError extends Error {
  override name = 'BrowseError';
}

/** The container `name` of `set`; throws BrowseError naming the containers it has. */
export function containerOf(set: SnapshotSet, name: string): ContainerRecord {
  const found = set.containers.find((c) => c.name === name);
  if (found) return found;
  const names = set.containers.map((c) => c.name);
  throw new BrowseError(`Snapshot ${set.tag} has no container ${name}. Expected one of: ${names.join(', ') || '(none)'}.`);
}

/** Called for each entry the container shows at or below a path, with the archive it comes from and its content. */
export type Visit = (entry: FileEntry, source: Source, content: Readable) => Promise<void>;

/**
 * Reads, one archive after the other (the layer first), every entry the container shows at or
 * below `top`: an entry of the layer below a mount point is hidden by the mount, as in the running
 * container. Entries whose names climb out of their archive are passed to `unsafe`, never visited.
 */
export async function visitUnder(
  dest: Destination,
  c: ContainerRecord,
  top: string,
  visit: Visit,
  unsafe: (name: string, source: Source) => void,
): Promise<void> {
  for (const source of sourcesUnder(top, sourcesOf(c))) {
    await visitSource(dest, c, source, (entry, from, content) => (within(entry.path, top) ? visit(entry, from, content) : Promise.resolve()), unsafe);
  }
}

/** Reads one archive of the container: the entries of it the container shows (see visitUnder). */
export async function visitSource(
  dest: Destination,
  c: ContainerRecord,
  source: Source,
  visit: Visit,
  unsafe: (name: string, source: Source) => void,
): Promise<void> {
  const sources = sourcesOf(c);
  const mine = sources.find((s) => s.root === source.root) ?? source;
  await walk(dest, source, `${c.name} ${source.label}`, async (read, content) => {
    if ('unsafe' in read) return unsafe(read.unsafe, source);
    if (ownerOf(read.entry.path, sources) === mine) await visit(read.entry, source, content);
  });
}
