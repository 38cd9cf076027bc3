/**
 * The values only a restore (or verify, list) reads: the set to restore, container paths, renames.
 * The whole RestoreOptions object is put together in inputs.ts.
 */
import { posix } from 'node:path';
import { isTag } from '../oci/reference.js';
import { parseContainerName } from './selection-input.js';
import { InputError } from './input-error.js';

/**
 * The snapshot input: a tag or `latest`. An empty value is refused (InputError naming `name`): it comes
 * from an expression that found nothing (the input's default is latest).
 */
export function parseSnapshotRef(raw: string, name = 'snapshot'): string {
  const value = raw.trim();
  if (value === '') throw new InputError(`Invalid ${name} ''. Expected a tag or latest; an empty value never means latest.`);
  if (value === 'latest') return 'latest';
  if (!isTag(value)) {
    throw new InputError(`Invalid ${name} '${raw}'. Expected a tag or latest.`);
  }
  return value;
}

/** An absolute path inside a container, normalized (`..` cannot climb above `/`, which itself is refused, as is a relative path: InputError naming `what`). */
export function parseContainerPath(raw: string, what: string): string {
  const value = raw.trim();
  const path = posix.normalize(value).replace(/\/+$/, '');
  if (!value.startsWith('/') || path === '') throw new InputError(`Invalid ${what} '${raw}'. Expected an absolute path below /, as in /var/lib/data/uploads.`);
  return path;
}

/**
 * The rename input: old=new items as a map old → new (container names). Throws InputError naming
 * `name` for an item without =, a bad name, an old name given twice or two items with one new name.
 */
export function parseRename(items: string[], name = 'rename'): Map<string, string> {
  const map = new Map<string, string>();
  const targets = new Set<string>();
  for (const item of items) {
    const eq = item.indexOf('=');
    if (eq === -1) throw new InputError(`Invalid ${name} '${item}'. Expected old=new.`);
    const from = parseContainerName(item.slice(0, eq), 'rename source');
    const to = parseContainerName(item.slice(eq + 1), 'rename target');
    if (map.has(from)) throw new InputError(`Invalid ${name} '${item}': '${from}' is renamed twice. Expected each old name once.`);
    if (targets.has(to)) throw new InputError(`Invalid ${name} '${item}': two containers would be named '${to}'. Expected distinct new names.`);
    map.set(from, to);
    targets.add(to);
  }
  return map;
}
