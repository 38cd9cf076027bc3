import { posix } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { putEntry } from '../util/tar-entry.js';
import { constants, fstatSync, openSync } from 'node:fs';
import type { Engine } from '../engine/engine.js';
import type { UpperDir } from './layer-upper.js';
import { hostPaths, readCapabilities, type Header } from './volume-tar.js';
import { getfattrClause } from './getfattr.js';
import { isDir, sameEntry, type LayerIndex } from './layer-index.js';

/** What one delta layer holds: whiteouts for paths gone since the last snapshot, and the paths to read again. */
export interface DeltaPlan {
  /** Absolute paths to hide (OCI image-spec layer.md, Whiteouts: an entry `.wh.NAME` beside them). */
  whiteouts: string[];
  /** Absolute paths whose entry is taken again, parents before children; a directory is taken alone, without its subtree. */
  reads: string[];
  /**
   * Directories of `reads` opaque now and not before (LayerEntry.opaque): each gets an opaque
   * whiteout (`.wh..wh..opq`, OCI image-spec layer.md "Opaque Whiteout") after its entry, which
   * hides what the layers below hold under it; so every path under it is in `reads` too.
   */
  opaque: string[];
  /**
   * The directories above `reads` and `whiteouts` that are not in `reads` themselves, taken as their
   * header alone: a layer that lacks a parent of its entries gets one made when it is applied,
   * with mode 0755, owner root and the time of the load (moby pkg/archive UnpackLayer), and in an
   * overlay the topmost layer's directory wins: /tmp would come back 0755.
   */
  parents: string[];
}

/** The ancestors of an absolute path, nearest first ('/a/b/c' → '/a/b', '/a'). */
function ancestors(path: string): string[] {
  const out: string[] = [];
  for (let p = posix.dirname(path); p !== '/' && p !== '.'; p = posix.dirname(p)) out.push(p);
  return out;
}

const byPath = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * Why a delta from `prev` to `now` cannot be planned (a clause), or undefined when it can: an index
 * made from the upper directory (`source: 'upper'`) lists directories the engine's list leaves
 * out, so against a later index from the engine they would read as removed and be whited out.
 */
export function deltaBaseMismatch(prev: LayerIndex, now: LayerIndex): string | undefined {
  return prev.source === 'upper' && now.source !== 'upper'
    ? "the last snapshot's index was made from the upper directory on this host, this one by the engine"
    : undefined;
}

/**
 * The delta from the writable layer at `prev` to the one at `now` (both as `scanLayer` gives them;
 * deltaBaseMismatch first). A path whose stat differs (or is new) is read again; one deleted now,
 * or listed before and not now (a file the layer added, then removed), becomes a whiteout, unless
 * an ancestor is itself whited out or is no directory any more (applying the layer could not
 * descend into it). A directory opaque now and not before is read with everything under it, and
 * marked opaque (its whiteouts below are then left out: the marker hides the lower paths). Every
 * directory above what the delta holds is taken too (`parents`).
 */
export function planDelta(prev: LayerIndex, now: LayerIndex): DeltaPlan {
  // for…in, not Object.entries: no array a path (the plan is made while the container is held, ~14,000 paths).
  const { entries: nowEntries } = now;
  const { entries: prevEntries } = prev;
  const opaque = new Set<string>();
  for (const path in nowEntries) if (nowEntries[path].opaque && isDir(nowEntries[path]) && !prevEntries[path]?.opaque) opaque.add(path);
  const hiddenBelow = (path: string) => opaque.size > 0 && ancestors(path).some((a) => opaque.has(a));
  const gone = new Set<string>();
  const reads: string[] = [];
  for (const path in nowEntries) {
    const entry = nowEntries[path];
    const before = prevEntries[path];
    if (entry.whiteout) {
      if (!before?.whiteout) gone.add(path);
    } else if (!sameEntry(before, entry) || opaque.has(path) || hiddenBelow(path)) reads.push(path);
  }
  for (const path in prevEntries) if (!prevEntries[path].whiteout && !(path in nowEntries)) gone.add(path);
  const reachable = (path: string) =>
    !hiddenBelow(path) && ancestors(path).every((a) => !gone.has(a) && (now.entries[a] === undefined || isDir(now.entries[a])));
  const whiteouts = [...gone].filter(reachable).sort(byPath);
  const taken = new Set(reads);
  const parents = new Set<string>();
  for (const path of [...reads, ...whiteouts]) for (const a of ancestors(path)) if (!taken.has(a)) parents.add(a);
  return { whiteouts, reads: reads.sort(byPath), opaque: [...opaque].sort(byPath), parents: [...parents].sort(byPath) };
}

export function isEmpty(plan: DeltaPlan): boolean {
  return plan.whiteouts.length === 0 && plan.reads.length === 0 && plan.opaque.length === 0;
}

/** The whiteout entry's name in a layer tar: `dir/.wh.name`, relative to the root. */
export function whiteoutName(path: string): string {
  return posix.join(posix.dirname(path), `.wh.${posix.basename(path)}`).replace(/^\//, '');
}

async function addEntry(pack: tar.Pack, header: Partial<tar.Header> & { name: string }, content?: Readable): Promise<void> {
  if (!content) {
    // With a buffer, even an empty one: a file entry without one waits for content written into it.
    await putEntry(pack, header as tar.Header, Buffer.alloc(0));
    return;
  }
  await pipeline(content, pack.entry(header as tar.Header));
}

/**
 * `header` (an entry of the engine's archive of one path) under `name`, its mode kept as it is
 * (000 too), without the PAX `path` and
 * `linkpath` records the engine wrote for a long or non-ASCII name, which name the entry relative
 * to the path asked (its last component) and, written after the name, would win over it (POSIX.1-2017
 * pax: a later record of a keyword overrides an earlier one); tar-stream writes the name's own.
 */
function renamed(header: tar.Header, name: string): tar.Header {
  const pax = header.pax ? Object.fromEntries(Object.entries(header.pax).filter(([k]) => k !== 'path' && k !== 'linkpath')) : undefined;
  const { pax: _pax, ...rest } = header;
  // A bit above the 0o7777 tar-stream writes keeps a mode of 000 (/etc/shadow on RHEL-family
  // images) from reading as none given, which it would write as 0644 (as volume-tar.ts header).
  return { ...rest, name, mode: (header.mode ?? 0) | 0o100000, ...(pax && Object.keys(pax).length ? { pax } : {}) };
}

/**
 * Copies the first entry of `GET /containers/{id}/archive?path=` into `pack` under its path in
 * the layer: a file or symlink with its content and metadata as the engine's archive has them;
 * a directory as its header alone (the rest of its archive, its subtree, is not read). A mount's
 * destination is taken as the commit takes it, without what is mounted there: its header alone.
 * An empty archive (a unix socket: the engine's archive leaves sockets out, as its commit does)
 * adds nothing.
 */
async function copyPath(engine: Engine, id: string, path: string, pack: tar.Pack, mount: boolean, signal?: AbortSignal): Promise<void> {
  const archive = await engine.getArchive(id, path, signal);
  const extract = tar.extract();
  archive.on('error', (err) => extract.destroy(err));
  archive.pipe(extract);
  const entries = extract[Symbol.asyncIterator]();
  try {
    const first = await entries.next();
    if (first.done) return;
    const entry = first.value as unknown as Readable & { header: tar.Header };
    const header = renamed(entry.header, path.replace(/^\//, '') + (entry.header.type === 'directory' ? '/' : ''));
    const { name } = header;
    if (header.type === 'directory' || mount) {
      await addEntry(pack, { ...header, name, size: 0 });
      entry.resume();
      return;
    }
    await addEntry(pack, { ...header, name }, header.type === 'file' ? entry : undefined);
    if (header.type !== 'file') entry.resume();
    await entries.next();
  } finally {
    // A directory's archive goes on with its subtree, unread: closed, the engine stops sending it.
    archive.destroy();
    extract.destroy();
  }
}

/**
 * A layer tar of `plan`, streamed: the whiteouts first, then each path read (and each parent
 * directory, its header alone), parents first, from the container (an opaque directory's entry
 * followed by its opaque whiteout) as its archive gives it (numeric owner, mode, mtime to the second, link target, xattrs the
 * engine keeps). `mounts`: the container's mount destinations. Fails the stream on the first error.
 */
export function deltaTar(engine: Engine, id: string, plan: DeltaPlan, mounts: Set<string>, signal?: AbortSignal): Readable {
  const pack = tar.pack();
  const build = async () => {
    for (const path of plan.whiteouts) await addEntry(pack, whiteoutHeader(path));
    const opaque = new Set(plan.opaque);
    for (const path of [...plan.reads, ...plan.parents].sort(byPath)) {
      await copyPath(engine, id, path, pack, mounts.has(path), signal);
      // Right after the directory's entry, as the engine's own diff writes it (pkg/archive overlayWhiteoutConverter).
      if (opaque.has(path)) await addEntry(pack, opaqueMarker(path));
    }
    pack.finalize();
  };
  build().catch((err: Error) => pack.destroy(err));
  return pack as unknown as Readable;
}

/** The whiteout entry hiding `path` (an empty file `.wh.NAME` beside it). */
function whiteoutHeader(path: string): Header {
  return { name: whiteoutName(path), type: 'file', size: 0, mode: 0o644, mtime: new Date(0) };
}

/** The opaque whiteout of directory `path` (an empty file `.wh..wh..opq` in it). */
function opaqueMarker(path: string): Header {
  return { name: `${path.replace(/^\//, '')}/.wh..wh..opq`, type: 'file', size: 0, mode: 0o644, mtime: new Date(0) };
}

/**
 * The layer tar of `plan` made on this host from the container's upper directory `upper` (trusted
 * and read in this hold: layer-index.ts scanLayerOn), streamed, or why it is not made here (a
 * clause): the whiteouts first, then each path read and each parent directory as volume-tar.ts
 * hostPaths writes it — what the upper directory holds, which is what the engine's commit takes
 * (a mount's target too, where the engine's archive would give what is mounted there) — an opaque
 * directory followed by its opaque whiteout. An lstat and a read per path instead of one
 * `GET /containers/{id}/archive` each (~50 ms here, while the container is held). The stream
 * fails with HostReadError where a path cannot be read as the engine would, or with `signal`'s
 * reason once it is aborted; the promise rejects with that reason when the cancel comes while
 * getfattr reads the paths' capabilities (getfattr killed).
 */
export async function upperDeltaTar(upper: UpperDir, plan: DeltaPlan, signal?: AbortSignal): Promise<Readable | string> {
  const paths = [...plan.reads, ...plan.parents].sort(byPath);
  let caps: Map<string, Buffer>;
  try {
    caps = await readCapabilities(upper.root, paths, { signal });
  } catch (err) {
    signal?.throwIfAborted();
    return getfattrClause(err as NodeJS.ErrnoException);
  }
  let fd: number;
  try {
    fd = openSync(upper.root, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  } catch (err) {
    return `its upper directory cannot be opened (${(err as NodeJS.ErrnoException).code ?? String(err)})`;
  }
  const root = fstatSync(fd, { bigint: true });
  const opaque = new Set(plan.opaque);
  return hostPaths({ fd, root }, paths, caps, {
    prelude: plan.whiteouts.map(whiteoutHeader),
    after: (path) => (opaque.has(path) ? [opaqueMarker(path)] : undefined),
    signal,
  });
}

/**
 * The image config of a delta snapshot: the previous snapshot's config with the delta layer's
 * diff ID added to rootfs.diff_ids and a history entry (OCI image-spec config.md), created now.
 * The container's own config in it stays as it was: a container's config does not change.
 */
export function deltaConfig(previous: Buffer, diffId: string, created: string): Buffer {
  const config = JSON.parse(previous.toString('utf8')) as {
    created?: string;
    rootfs: { type: string; diff_ids: string[] };
    history?: Array<Record<string, unknown>>;
  };
  config.created = created;
  config.rootfs = { ...config.rootfs, diff_ids: [...config.rootfs.diff_ids, diffId] };
  config.history = [...(config.history ?? []), { created, created_by: 'container-snapshot: writable layer changes since the last snapshot' }];
  return Buffer.from(JSON.stringify(config));
}
