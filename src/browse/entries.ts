import type { Readable } from 'node:stream';
import tar from 'tar-stream';
import type { Destination } from '../destinations/types.js';
import { openContent } from '../snapshot/blobs.js';
import { layerName, mountName, normalizePath, entrySegments } from './paths.js';
import type { Source } from './sources.js';
import { stackWinners, type StackEntry } from './layer-stack.js';

/** A tar entry's kind, or what a layer's whiteout says: `deleted` (`.wh.NAME`), `opaque` (`.wh..wh..opq`). */
export type EntryType = 'file' | 'directory' | 'symlink' | 'link' | 'fifo' | 'character-device' | 'block-device' | 'deleted' | 'opaque' | 'other';

/** One file of a set, as its archive records it, at its path in the container. */
export interface FileEntry {
  /** Absolute, normalized path in the container. */
  path: string;
  type: EntryType;
  /** Bytes of content (files only; 0 otherwise). */
  size: number;
  /** Permission bits, with setuid, setgid and sticky (0 to 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  /** Modification time, whole seconds since the epoch (what the archive keeps). */
  mtime: number;
  /** A symlink's target as written; a hard link's target as a container path. */
  linkname?: string;
  /** Device numbers, devices only. */
  device?: { major: number; minor: number };
}

/** A tar header as tar-stream reads it; only the name is sure to be there. */
export type TarHeader = Partial<tar.Header> & Pick<tar.Header, 'name'>;

/** What a header says, at its container path; `unsafe` when its name (or a hard link's target) climbs out of the archive. */
export type ReadEntry = { entry: FileEntry } | { unsafe: string };

function pathIn(source: Source, name: string): { path: string; kind: 'file' | 'deleted' | 'opaque' } | undefined {
  if (source.kind === 'layer') return layerName(name);
  const path = mountName(name, source.root);
  return path === undefined ? undefined : { kind: 'file', path };
}

function linkTarget(source: Source, header: TarHeader): string | undefined {
  const link = header.linkname ?? '';
  if (header.type !== 'link') return link || undefined;
  if (source.kind === 'layer') {
    const segments = entrySegments(link);
    return segments && normalizePath(`/${segments.join('/')}`);
  }
  return mountName(link, source.root);
}

/** A tar header of `source`'s archive as a FileEntry (pure). */
export function toEntry(source: Source, header: TarHeader): ReadEntry {
  const at = pathIn(source, header.name);
  if (!at) return { unsafe: header.name };
  const type: EntryType =
    at.kind !== 'file' ? at.kind : header.type && KNOWN.has(header.type) ? (header.type as EntryType) : header.type === 'contiguous-file' ? 'file' : 'other';
  const linkname = at.kind === 'file' ? linkTarget(source, header) : undefined;
  if (header.type === 'link' && at.kind === 'file' && linkname === undefined) return { unsafe: `${header.name} -> ${header.linkname ?? ''}` };
  const entry: FileEntry = {
    path: at.path,
    type,
    size: type === 'file' ? (header.size ?? 0) : 0,
    mode: (header.mode ?? 0) & 0o7777,
    uid: paxId((header.pax as Record<string, string> | undefined)?.uid) ?? header.uid ?? 0,
    gid: paxId((header.pax as Record<string, string> | undefined)?.gid) ?? header.gid ?? 0,
    mtime: Math.floor((header.mtime?.getTime() ?? 0) / 1000),
  };
  if (linkname) entry.linkname = linkname;
  if (type === 'character-device' || type === 'block-device') entry.device = { major: header.devmajor ?? 0, minor: header.devminor ?? 0 };
  return { entry };
}

/** An owner from a PAX record (POSIX.1-2008 pax, `uid`/`gid`: decimal), which wins over the header's field (too short above 0o7777777, or 0o777777 in some writers). */
function paxId(value: string | undefined): number | undefined {
  return value !== undefined && /^\d+$/.test(value) ? Number(value) : undefined;
}

const KNOWN = new Set(['file', 'directory', 'symlink', 'link', 'fifo', 'character-device', 'block-device']);

/** Files the engine bind-mounts into every container; it makes them as empty files in the rootfs. */
const ENGINE_MOUNT_POINTS = new Set(['/etc/hostname', '/etc/hosts', '/etc/resolv.conf']);

/**
 * An empty file the engine made in the writable layer as the mount point of a file it manages:
 * Engine 26.1 commits them once a container has been started twice (20.10 does not). Not the
 * container's change, so never listed, compared or extracted.
 */
function isEngineMountPoint(read: ReadEntry): boolean {
  return 'entry' in read && read.entry.type === 'file' && read.entry.size === 0 && ENGINE_MOUNT_POINTS.has(read.entry.path);
}

/**
 * Reads `source`'s archive from `dest` once (decompressed, its digests checked as it streams) and
 * calls `visit` with each entry and its content stream, which `visit` must consume or resume.
 * Throws the archive's or the store's error (a digest mismatch among them).
 */
export async function walk(dest: Destination, source: Source, what: string, visit: (read: ReadEntry, content: Readable) => Promise<void>): Promise<void> {
  if (source.below?.length) return walkStack(dest, source, what, visit);
  await walkOne(dest, source, source.blob, what, visit);
}

/**
 * A writable layer of several layers (a full one and deltas): their headers read first, to know
 * which layer shows each path (layer-stack.ts), then each layer again, bottom first, visiting the
 * entries it shows. Entries whose names climb out are visited from every layer (as unsafe).
 */
async function walkStack(dest: Destination, source: Source, what: string, visit: (read: ReadEntry, content: Readable) => Promise<void>): Promise<void> {
  const layers = [...(source.below ?? []), source.blob];
  const listed: StackEntry[][] = [];
  for (const [i, blob] of layers.entries()) {
    const entries: StackEntry[] = [];
    await walkOne(dest, source, blob, `${what} (layer ${i + 1} of ${layers.length})`, async (read) => {
      if ('entry' in read) entries.push({ path: read.entry.path, type: read.entry.type });
    });
    listed.push(entries);
  }
  const winners = stackWinners(listed);
  for (const [i, blob] of layers.entries()) {
    await walkOne(dest, source, blob, `${what} (layer ${i + 1} of ${layers.length})`, async (read, content) => {
      if (!('entry' in read)) return visit(read, content);
      const shown = winners.get(read.entry.path) === i && (read.entry.type !== 'opaque' || i === 0);
      if (shown) await visit(read, content);
    });
  }
}

async function walkOne(
  dest: Destination,
  source: Source,
  blob: Source['blob'],
  what: string,
  visit: (read: ReadEntry, content: Readable) => Promise<void>,
): Promise<void> {
  const content = await openContent(dest, source.scope, blob, what);
  const extract = tar.extract();
  content.on('error', (err: Error) => extract.destroy(err));
  content.pipe(extract);
  try {
    for await (const item of extract) {
      const stream = item as unknown as Readable & { header: tar.Header };
      const read = toEntry(source, stream.header);
      if (!(source.kind === 'layer' && isEngineMountPoint(read))) await visit(read, stream);
      stream.resume();
    }
  } finally {
    content.destroy();
  }
}
