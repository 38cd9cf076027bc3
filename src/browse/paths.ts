import { posix } from 'node:path';
import { InputError } from '../core/input-error.js';

/** A container of a set and, optionally, an absolute path inside it (normalized, no trailing slash). */
export interface Target {
  container: string;
  path?: string;
}

/**
 * `CONTAINER[:PATH]` as the CLI takes it (container names have no colon, so the first one splits).
 * PATH must be absolute; `..` is resolved against `/` and can climb no higher. Throws InputError
 * naming `what` (the argument, as the command's usage spells it).
 */
export function parseTarget(raw: string, what: string, needPath = false): Target {
  const colon = raw.indexOf(':');
  const container = (colon === -1 ? raw : raw.slice(0, colon)).trim();
  const path = colon === -1 ? undefined : raw.slice(colon + 1);
  const example = 'web:/var/lib/data';
  if (container === '') throw new InputError(`Invalid ${what} '${raw}'. Expected CONTAINER${needPath ? ':PATH' : '[:PATH]'}, as in ${example}.`);
  if (path === undefined) {
    if (needPath) throw new InputError(`Invalid ${what} '${raw}'. Expected CONTAINER:PATH, as in ${example}.`);
    return { container };
  }
  if (!path.startsWith('/')) throw new InputError(`Invalid ${what} '${raw}'. Expected an absolute PATH after the colon, as in ${example}.`);
  return { container, path: normalizePath(path) };
}

/** An absolute path with `.`, `..` and repeated or trailing slashes resolved: `/a/b`, or `/`. */
export function normalizePath(path: string): string {
  const n = posix.normalize(`/${path}`);
  return n.length > 1 && n.endsWith('/') ? n.slice(0, -1) : n;
}

/** Whether `path` is `top` or below it (both normalized). */
export function within(path: string, top: string): boolean {
  return top === '/' || path === top || path.startsWith(`${top}/`);
}

/**
 * The relative name of a tar entry as a list of segments: leading `./` and `/` dropped, `.`
 * segments and empty ones skipped. Undefined when a segment is `..`: such a name could point
 * outside the archive's root, and is never trusted.
 */
export function entrySegments(name: string): string[] | undefined {
  const segments = name.split('/').filter((s) => s !== '' && s !== '.');
  return segments.includes('..') ? undefined : segments;
}

/** The whiteout prefix of OCI image layers (image-spec layer.md, "Whiteouts"), and the opaque marker. */
export const WHITEOUT = '.wh.';
export const OPAQUE = '.wh..wh..opq';

/** What a layer entry's name says: a file at `path`, a deletion of `path`, or `path`'s earlier content hidden (opaque). */
export type LayerName = { kind: 'file' | 'deleted' | 'opaque'; path: string };

/** A layer entry's name read as the image spec reads it, as a container path; undefined for an unsafe name. */
export function layerName(name: string): LayerName | undefined {
  const segments = entrySegments(name);
  if (!segments || segments.length === 0) return segments && { kind: 'file', path: '/' };
  const base = segments[segments.length - 1];
  const dir = `/${segments.slice(0, -1).join('/')}`;
  if (base === OPAQUE) return { kind: 'opaque', path: normalizePath(dir) };
  if (base.startsWith(WHITEOUT)) return { kind: 'deleted', path: normalizePath(posix.join(dir, base.slice(WHITEOUT.length))) };
  return { kind: 'file', path: normalizePath(`/${segments.join('/')}`) };
}

/**
 * A volume archive entry's name as a container path. The engine's archive of a mount point
 * (`GET /containers/{id}/archive?path=DEST`) names its entries under DEST's basename, so they sit
 * at DEST's parent. Undefined for an unsafe name or one that falls outside DEST.
 */
export function mountName(name: string, destination: string): string | undefined {
  const segments = entrySegments(name);
  if (!segments || segments.length === 0) return undefined;
  const path = normalizePath(posix.join(posix.dirname(destination), ...segments));
  return within(path, destination) ? path : undefined;
}
