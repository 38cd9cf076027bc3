import { createHash } from 'node:crypto';
import type { Destination } from '../destinations/types.js';
import type { ContainerRecord, SnapshotSet } from '../snapshot/manifest.js';
import { diffEntries, type Change, type DiffEntry } from './diff.js';
import { sourcesOf, type Source } from './sources.js';
import { visitSource } from './view.js';

/** One archive of a container compared: the layer (`/`) or a mount, by where it lands. */
export interface SourceDiff {
  path: string;
  label: string;
  /** `unchanged` without reading when both sets hold the same content. */
  status: 'added' | 'removed' | 'unchanged' | 'changed';
  changes: Change[];
}

export interface ContainerDiff {
  name: string;
  /** `added`/`removed`: in one set only (its archives are not listed file by file). */
  status: 'added' | 'removed' | 'compared';
  sources: SourceDiff[];
}

/** What `diff SNAPSHOT1 SNAPSHOT2` prints. */
export interface SetDiff {
  from: string;
  to: string;
  containers: ContainerDiff[];
}

/** Every entry the container shows from `source`, with the sha256 of each file's content. */
async function entriesOf(dest: Destination, c: ContainerRecord, source: Source): Promise<Map<string, DiffEntry>> {
  const entries = new Map<string, DiffEntry>();
  await visitSource(
    dest,
    c,
    source,
    async (entry, _from, content) => {
      if (entry.type !== 'file') return void entries.set(entry.path, entry);
      const hash = createHash('sha256');
      for await (const chunk of content) hash.update(chunk as Buffer);
      entries.set(entry.path, { ...entry, digest: `sha256:${hash.digest('hex')}` });
    },
    () => undefined,
  );
  return entries;
}

async function compareSource(dest: Destination, a: ContainerRecord, b: ContainerRecord, x: Source | undefined, y: Source | undefined): Promise<SourceDiff> {
  const { root: path, label } = (y ?? x)!;
  if (!x) return { path, label, status: 'added', changes: [] };
  if (!y) return { path, label, status: 'removed', changes: [] };
  if (x.blob.contentDigest === y.blob.contentDigest) return { path, label, status: 'unchanged', changes: [] };
  const changes = diffEntries(await entriesOf(dest, a, x), await entriesOf(dest, b, y));
  return { path, label, status: changes.length > 0 ? 'changed' : 'unchanged', changes };
}

async function compareContainer(dest: Destination, a: ContainerRecord, b: ContainerRecord): Promise<ContainerDiff> {
  const xs = sourcesOf(a);
  const ys = sourcesOf(b);
  const roots = [...new Set([...xs, ...ys].map((s) => s.root))].sort();
  const sources: SourceDiff[] = [];
  for (const root of roots)
    sources.push(
      await compareSource(
        dest,
        a,
        b,
        xs.find((s) => s.root === root),
        ys.find((s) => s.root === root),
      ),
    );
  return { name: b.name, status: 'compared', sources };
}

/**
 * The files added, changed and removed from set `a` to set `b` (both read from `dest`), per
 * container (by name) and per archive (the writable layer, each mount by destination). Archives
 * with the same content digest are not read; the others are read whole, each file hashed.
 */
export async function diffSets(dest: Destination, a: SnapshotSet, b: SnapshotSet): Promise<SetDiff> {
  const names = [...new Set([...a.containers, ...b.containers].map((c) => c.name))].sort();
  const containers: ContainerDiff[] = [];
  for (const name of names) {
    const x = a.containers.find((c) => c.name === name);
    const y = b.containers.find((c) => c.name === name);
    if (x && y) containers.push(await compareContainer(dest, x, y));
    else containers.push({ name, status: x ? 'removed' : 'added', sources: [] });
  }
  return { from: a.tag, to: b.tag, containers };
}
