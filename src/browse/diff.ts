import type { FileEntry } from './entries.js';

/** An entry as diff compares it: with the sha256 of its content (files). */
export type DiffEntry = FileEntry & { digest?: string };

/** What differs in a changed entry, in words: `type`, `size`, `mode`, `owner`, `mtime`, `target`, `device`, `content`. */
export type Field = 'type' | 'size' | 'mode' | 'owner' | 'mtime' | 'target' | 'device' | 'content';

export interface Change {
  path: string;
  change: 'added' | 'changed' | 'removed';
  /** For `changed`: what differs. */
  fields?: Field[];
}

/** The fields in which two entries of one path differ; empty when they are the same. */
export function differences(a: DiffEntry, b: DiffEntry): Field[] {
  const fields: Field[] = [];
  if (a.type !== b.type) fields.push('type');
  if (a.size !== b.size) fields.push('size');
  if (a.mode !== b.mode) fields.push('mode');
  if (a.uid !== b.uid || a.gid !== b.gid) fields.push('owner');
  if (a.mtime !== b.mtime) fields.push('mtime');
  if ((a.linkname ?? '') !== (b.linkname ?? '')) fields.push('target');
  if (a.device?.major !== b.device?.major || a.device?.minor !== b.device?.minor) fields.push('device');
  if (a.type === 'file' && b.type === 'file' && a.digest !== b.digest && !fields.includes('size')) fields.push('content');
  return fields;
}

const present = (e: DiffEntry | undefined) => e !== undefined && e.type !== 'deleted';

/**
 * The changes from archive listing `a` to `b` of one mount or writable layer, by path. In a
 * layer a whiteout (`deleted`) marks a path gone: a path deleted in `b` that `a` had is removed,
 * one `a` deleted and `b` has (or no longer deletes) is added. Opaque markers are left out: the
 * directory's own entry says what changed.
 */
export function diffEntries(a: Map<string, DiffEntry>, b: Map<string, DiffEntry>): Change[] {
  const changes: Change[] = [];
  const paths = [...new Set([...a.keys(), ...b.keys()])].sort();
  for (const path of paths) {
    const x = a.get(path);
    const y = b.get(path);
    if (x?.type === 'opaque' || y?.type === 'opaque') continue;
    if (present(x) && present(y)) {
      const fields = differences(x!, y!);
      if (fields.length > 0) changes.push({ path, change: 'changed', fields });
    } else if (present(x)) changes.push({ path, change: 'removed' });
    else if (present(y) || (x?.type === 'deleted' && y === undefined)) changes.push({ path, change: 'added' });
    else if (x === undefined && y?.type === 'deleted') changes.push({ path, change: 'removed' });
  }
  return changes;
}
