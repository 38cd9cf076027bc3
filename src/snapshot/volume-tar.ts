/**
 * A volume's archive made on this host from its directory (volume-host.ts says when), with the
 * entries the engine's archive gives (moby pkg/archive TarWithOptions, Engine 20.10 and 26.1):
 * the top directory named after the mount point, then each path depth first in byte order,
 * numeric owners, permission bits with setuid/setgid/sticky, mtimes to the second, symlinks,
 * later names of a hard-linked inode as tar links to the first, empty directories, fifos and
 * devices, `security.capability` as a PAX `SCHILY.xattr` record; unix sockets skipped. A sparse
 * file's holes are read with O_DIRECT (no page cache to fill with zeros) and passed on as shared
 * zero buffers (zeros.ts), which the spool leaves as holes.
 */
import { execFile } from 'node:child_process';
import { closeSync, constants, fstatSync, lstatSync, openSync, readSync, readdirSync, readlinkSync, type BigIntStats } from 'node:fs';
import type { Readable } from 'node:stream';
import { allZero, zeroBytes, ZERO_BYTES_MAX } from '../util/zeros.js';
import { TarWriter, TAR_COPY_MAX, type TarHeader } from '../util/tar-writer.js';
import { DirectSlab } from '../util/direct-read.js';
import { atDir, utf8, type HostDir } from './volume-host.js';
import { SPARSE_MIN } from './volume-metadata.js';
import { capabilitiesFrom, cLocale } from './getfattr.js';
import { vanishedScratchOnly } from './engine-scratch.js';
import type { DeferredReads } from './deferred-read.js';
import { runDataBytes, runEndsAfter, runKey, RUN_MIN, type RunFile } from './file-runs.js';
import { paddedSize } from '../util/tar-header.js';

/** A volume the host could not read as the engine would (a name not in UTF-8, a file that changed, …): the engine reads it instead. */
export class HostReadError extends Error {
  override name = 'HostReadError';
}

/** Bytes per read of a file (a multiple of any O_DIRECT block size). */
const CHUNK = ZERO_BYTES_MAX;
/** Bytes the archive holds before the walk waits for the spool to take them. */
const PACK_BUFFER = 4 << 20;
/** Entries walked between two turns of the event loop. */
const YIELD_EVERY = 32;
/** Deepest directory nesting read here (one descriptor open per level); deeper, the engine reads the volume. */
const MAX_DEPTH = 200;
/** Largest mtime (seconds) the header writes (truncated to 32 bits, as tar-stream did); later ones go to the engine. */
const MAX_MTIME = 2 ** 31 - 1;
/** Largest owner the header field holds (6 octal digits); above it the owner goes in a PAX record, as the engine's does above 7. */
const MAX_USTAR_ID = 0o777777;

/**
 * `security.capability` of every file under `root`, or of `paths` alone (absolute below `root`,
 * UTF-8) when given (the one extended attribute the engine's archive keeps), keyed by path
 * relative to `root` (bytes as latin1), read with `getfattr`
 * (Debian package attr). Rejects when getfattr is missing or fails: then what the engine keeps
 * cannot be told here. `containerRoot`: `root` is a container's upper directory, where a failure
 * on nothing but an engine's directory of a moment gone mid-walk (engine-scratch.ts) is none.
 * `signal`: aborted, getfattr is killed and the promise rejects with an AbortError (a run read while
 * its container is held must not keep it held past a cancel).
 */
export function readCapabilities(
  root: string,
  paths?: string[],
  { containerRoot = false, signal }: { containerRoot?: boolean; signal?: AbortSignal } = {},
): Promise<Map<string, Buffer>> {
  if (paths?.length === 0) return Promise.resolve(new Map());
  return new Promise((resolve, reject) => {
    // `paths` (absolute below `root`): those alone, not their subtrees.
    const which = paths ? paths.map((p) => `${root}${p}`) : ['-R', root];
    const args = ['--absolute-names', '-P', '-h', '-d', '-m', '^security\\.capability$', '-e', 'base64', ...which];
    execFile('getfattr', args, { maxBuffer: 1 << 28, encoding: 'latin1', env: cLocale(), ...(signal ? { signal } : {}) }, (err, stdout, stderr) =>
      err && !(containerRoot && err.code === 1 && vanishedScratchOnly(stderr, root)) ? reject(err) : resolve(capabilitiesFrom(stdout, root)),
    );
  });
}

/** An entry's header; `pax`: records written in a PAX header before it. */
export type Header = TarHeader;

/**
 * How hostTar may change an entry before it is written (an image layer's whiteouts: layer-upper-tar.ts).
 * `replace`: written instead of the entry, as a header with no data and no hard-link lookup;
 * `after`: headers with no data written right after the entry (before a directory's children).
 */
export interface EntryChange {
  replace?: Header;
  after?: Header[];
}

/**
 * hostTar's options. `bare`: no entry for the top directory itself, and names relative to it
 * (`etc/`, `etc/passwd`), as an image layer's tar has them (moby pkg/archive TarWithOptions
 * without IncludeSourceDir). `change`: called for each entry below the top with its lstat, its
 * header as made and its path below the top (bytes as latin1); may throw HostReadError.
 */
export interface HostTarOptions {
  bare?: boolean;
  change?: (st: BigIntStats, h: Header, rel: string) => EntryChange | undefined;
  /** Told of large regular files, and may have their data left unread (FileTracker). */
  files?: FileTracker;
  /** Regular files it may leave as zeros, to be read once the container is back (deferred-read.ts), recorded there; large ones not settled copied while held, where it copies. */
  defer?: DeferredReads;
  /** Told of every entry as it is met, the top ('.') and unix sockets included: its path below the top (bytes as latin1) and its lstat. */
  observe?: (rel: string, st: BigIntStats) => void;
  /** Once aborted, the walk stops at its next entry or MiB read and the stream fails with the signal's reason (the container is held meanwhile). */
  signal?: AbortSignal;
  /** Paths below the top (bytes as latin1) left out unread, not even lstat'ed: they may be gone (engine-scratch.ts). */
  skip?: (rel: string) => boolean;
}

/**
 * Told by hostTar of each regular file of `min` bytes or more with one link (file-index.ts): its
 * member number (the archive's members counted from 0 in order, as chunker.ts counts them), its
 * path below the top (bytes as latin1) and its lstat. Answers true to leave its data unread:
 * hostTar then writes as many zero bytes in its place (which the spool leaves as holes), for the
 * caller to put the data's chunks from an earlier archive in their place (chunksOf's `reuse`).
 */
export interface FileTracker {
  readonly min: number;
  file(member: number, rel: string, st: BigIntStats): boolean;
  /** Whether a file of lstat `st` has a content its identity may be trusted for, as `file` trusts a large one's (a run of small files is taken unread or indexed only when all of its are). */
  settled(st: BigIntStats): boolean;
  /**
   * A run about to be written: `first`, its first file's path below the top (latin1); `key`,
   * runKey of its files; `files` and `bytes`, how many and their data (padded); `settled`, whether
   * every file of it is (`settled`): else it is cut apart all the same, but neither indexed nor
   * left unread. To leave its files unread, the bytes the run takes in the archive (headers, data,
   * padding: an earlier archive's run of the same key, so the same bytes): hostTar then leaves that
   * many zero bytes (a hole, its headers written there once the container is back: writeRunHeaders),
   * for the caller to put the run's chunks from an earlier archive in its place (chunksOf's `ranges`).
   * Undefined to have them read.
   */
  runStarts(first: string, key: string, files: number, bytes: number, settled: boolean): number | undefined;
  /**
   * Where the run runStarts told of lies in the archive: byte offsets of its first header and of the
   * end of its last file's padding; `later`: its files, when it was left as a hole whose headers
   * writeRunHeaders writes afterwards.
   */
  runEnds(start: number, end: number, later?: readonly LaterFile[]): void;
}

/** What the walk keeps between entries. */
interface Walk {
  tar: TarWriter;
  caps: Map<string, Buffer>;
  /** dev:ino → the tar name of its first path. */
  links: Map<string, string>;
  /** Entries walked so far. */
  entries: number;
  /** Where sparse files are read with O_DIRECT. */
  slab: DirectSlab;
  change?: HostTarOptions['change'];
  files?: FileTracker;
  defer?: DeferredReads;
  observe?: HostTarOptions['observe'];
  skip?: HostTarOptions['skip'];
  /** Members written so far (the next one's number). */
  members: number;
  signal?: AbortSignal;
}

/**
 * The archive of `dir` as the engine would give it for a mount at a path whose last component is
 * `base`, streamed; `caps`: readCapabilities of it. The stream fails with HostReadError where the
 * host cannot answer as the engine would, or with the error met. `dir.fd` is closed when it ends.
 */
export function hostTar(dir: Pick<HostDir, 'fd' | 'root'>, base: string, caps: Map<string, Buffer>, opts: HostTarOptions = {}): Readable {
  // Room for many small entries ahead of the spool's writes: the walk waits on the spool less often.
  const writer = new TarWriter(PACK_BUFFER);
  const walk: Walk = {
    tar: writer,
    caps,
    links: new Map(),
    entries: 0,
    slab: new DirectSlab(),
    change: opts.change,
    files: opts.files,
    defer: opts.defer,
    observe: opts.observe,
    skip: opts.skip,
    members: 0,
    signal: opts.signal,
  };
  const build = async () => {
    try {
      walk.observe?.('.', dir.root);
      if (!opts.bare) await add(walk, header(`${base}/`, dir.root, '.', walk), { type: 'directory' });
      await walkDir(walk, dir.fd, opts.bare ? '' : `${base}/`, '', 1);
    } finally {
      closeSync(dir.fd);
    }
    await writer.finalize();
  };
  build().catch((err: Error) => writer.destroy(err));
  // The reader's pipeline reports the error; once it has ended (failed on its own side), a late one
  // from the walk must not reach the process as an uncaught 'error' event.
  writer.stream.on('error', () => undefined);
  return writer.stream;
}

/** The common header of an entry from its lstat; `rel`: its path below the root (for its capability). */
function header(name: string, st: BigIntStats, rel: string, walk: Walk): Header {
  const mtime = Number(st.mtimeNs / 1_000_000_000n);
  if (st.mtimeNs < 0n) throw new HostReadError(`${name}: its modification time is out of the range read here (before 1970)`);
  if (mtime > MAX_MTIME) throw new HostReadError(`${name}: its modification time is out of the range read here (after 2038)`);
  const uid = Number(st.uid);
  const gid = Number(st.gid);
  const pax: Record<string, string> = {};
  if (uid > MAX_USTAR_ID) pax.uid = String(uid);
  if (gid > MAX_USTAR_ID) pax.gid = String(gid);
  const cap = walk.caps.get(rel);
  if (cap) {
    const text = utf8(cap);
    if (text === undefined) throw new HostReadError(`${name}: its security.capability is not text a PAX record written here can carry`);
    pax['SCHILY.xattr.security.capability'] = text;
  }
  // The whole st_mode, file type bits included: tar-stream writes only its 0o7777 bits, but takes a
  // mode of 0 for "none given" and writes 0644 (0755 for a directory) instead: a file of mode 000
  // (/etc/shadow on RHEL-family images) would come back readable by all.
  return { name, mode: Number(st.mode), uid, gid, mtime: new Date(mtime * 1000), ...(Object.keys(pax).length ? { pax } : {}) };
}

/**
 * Adds one entry, with `data` when given; resolves once the archive's reader has room (at once
 * while it has), rejects with the error its stream was destroyed with (its reader failed: the
 * spool full, the disk out of room).
 */
function add(walk: Walk, h: Header, extra: Partial<Header>, data?: Buffer): Promise<void> | undefined {
  walk.members++;
  return walk.tar.entry({ ...h, ...extra }, data);
}

/** Linux's major and minor of a device number (glibc sys/sysmacros.h). */
function device(rdev: bigint): { devmajor: number; devminor: number } {
  return { devmajor: Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn)), devminor: Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn)) };
}

async function walkDir(walk: Walk, fd: number, prefix: string, relPrefix: string, depth: number): Promise<void> {
  if (depth > MAX_DEPTH) throw new HostReadError(`${prefix}: nested deeper than ${MAX_DEPTH} directories`);
  const names = (readdirSync(atDir(fd), { encoding: 'buffer' }) as Buffer[]).sort(Buffer.compare);
  // Small settled files met one after the other, written together once their run ends (addRun).
  const run: RunMember[] = [];
  let runBytes = 0;
  for (const raw of names) {
    walk.signal?.throwIfAborted();
    // The walk's calls are synchronous: every YIELD_EVERY entries the event loop turns, so that the
    // spool's writes and the metadata scan's lstat calls (thread pool) go on beside it.
    if (++walk.entries % YIELD_EVERY === 0) await new Promise((resolve) => setImmediate(resolve));
    const name = utf8(raw);
    if (name === undefined) throw new HostReadError(`${prefix}${raw.toString('latin1')}: a name that is not UTF-8`);
    const path = atDir(fd, raw);
    const rel = `${relPrefix}${raw.toString('latin1')}`;
    if (walk.skip?.(rel)) continue;
    const st = lstatSync(path, { bigint: true });
    walk.observe?.(rel, st);
    if (st.isSocket()) continue;
    const h = header(`${prefix}${name}${st.isDirectory() ? '/' : ''}`, st, rel, walk);
    const change = walk.change?.(st, h, rel);
    if (!change && inRun(walk, st)) {
      run.push({ h, st, path, rel });
      runBytes += paddedSize(Number(st.size));
      if (runEndsAfter(raw, run.length, runBytes)) {
        await addRun(walk, run.splice(0));
        runBytes = 0;
      }
      continue;
    }
    if (run.length > 0) {
      await addRun(walk, run.splice(0));
      runBytes = 0;
    }
    if (change?.replace) {
      await add(walk, change.replace, {}, Buffer.alloc(0));
      continue;
    }
    if (await addedAsLink(walk, h, st)) continue;
    if (st.isDirectory()) {
      const child = openSame(path, constants.O_DIRECTORY, st);
      try {
        await add(walk, h, { type: 'directory' });
        for (const extra of change?.after ?? []) await add(walk, extra, {}, Buffer.alloc(0));
        await walkDir(walk, child, h.name, `${rel}/`, depth + 1);
      } finally {
        closeSync(child);
      }
    } else await addNonDirectory(walk, h, path, st, rel);
  }
  if (run.length > 0) await addRun(walk, run);
}

/** A file of a run left as a hole (FileTracker.runEnds): its header as the walk made it and its data bytes. */
export interface LaterFile {
  h: Header;
  size: number;
}

/** A file of a run being gathered: its header, lstat, path below the open directory and path below the top (latin1). */
interface RunMember extends RunFile {
  path: Buffer;
  rel: string;
}

/**
 * Whether a file of lstat `st` joins a run of small files (file-runs.ts): a regular file below the
 * large-member size, with one link, not sparse. Settled or not: where runs are cut must not move
 * when files settle, or the same bytes would be cut otherwise at the next backup and stored again.
 */
function inRun(walk: Walk, st: BigIntStats): boolean {
  return walk.files !== undefined && st.isFile() && st.nlink === 1n && st.size < BigInt(walk.files.min) && !isSparse(st);
}

/**
 * Writes a run of small files. One of RUN_MIN bytes of data or more is told to the tracker
 * (runStarts, runEnds): when it answers that the set before's chunks stand for it, the run is left
 * as a hole of the length it answers, no file read and no header written (writeRunHeaders writes
 * them once the container is back: a header and a hole a file took ~90 ms of a 12,000-file hold);
 * else each is added as usual (read now, or left for later). A shorter run is added as usual and
 * told to no one.
 */
async function addRun(walk: Walk, files: RunMember[]): Promise<void> {
  const bytes = runDataBytes(files);
  if (bytes < RUN_MIN) {
    for (const f of files) await addNonDirectory(walk, f.h, f.path, f.st, f.rel);
    return;
  }
  const settled = files.every((f) => walk.files!.settled(f.st));
  const unread = walk.files!.runStarts(files[0].rel, runKey(files), files.length, bytes, settled);
  const start = walk.tar.offset;
  if (unread !== undefined) {
    // Only each file's header and size are kept (its lstat is let go while held).
    const later = files.map((f) => ({ h: f.h, size: Number(f.st.size) }));
    // The length its headers and data take, checked now: where it is not the earlier run's (an index
    // not true to its key), runEnds throws, the walk fails and the engine reads the volume, as before.
    const length = later.reduce((n, f) => n + TarWriter.fileHeaderBytes(f.h, f.size) + paddedSize(f.size), 0);
    if (length !== unread) walk.files!.runEnds(start, start + length);
    // Its members are counted as the chunker will count them once the headers are in place.
    walk.members += files.length;
    await walk.tar.skip(unread);
    walk.files!.runEnds(start, walk.tar.offset, later);
    return;
  }
  for (const f of files) await addNonDirectory(walk, f.h, f.path, f.st, f.rel);
  walk.files!.runEnds(start, walk.tar.offset);
}

/**
 * Writes the headers of runs hostTar left as holes (`runs`: each with its offset, length and files,
 * as runEnds was told) into the spooled archive through `patch` (spool.ts SpoolPatch), once the
 * container is back: each file's header where the run's bytes put it, its data the zeros already
 * there. Headers of one run less than HEADER_GAP_MAX bytes apart go in one write, the zeros of
 * their data between them with them (an encrypting spool reads and encrypts each block a write
 * touches again). The event loop turns every HEADERS_PER_TURN headers; once `signal` is aborted it
 * stops with the signal's reason. Throws an Error naming the run when its headers and data do not take the length left for them
 * (hostTar checked it while held), or what `patch` throws.
 */
export async function writeRunHeaders(
  runs: Iterable<{ rel: string; start: number; end: number; later?: readonly LaterFile[] }>,
  patch: { write(at: number, data: Buffer): void },
  signal?: AbortSignal,
): Promise<void> {
  // The write being gathered: its pieces, and the bytes of the file it starts and ends at.
  let pieces: Buffer[] = [];
  let from = 0;
  let to = 0;
  let headers = 0;
  const flush = () => {
    if (pieces.length > 0) patch.write(from, pieces.length === 1 ? pieces[0] : Buffer.concat(pieces, to - from));
    pieces = [];
  };
  for (const { rel, start, end, later } of runs) {
    if (!later) continue;
    const notItsLength = () => new Error(`${rel}: a run of files left unread does not take the ${end - start} bytes its chunks hold`);
    let at = start;
    for (const { h, size } of later) {
      if (++headers % HEADERS_PER_TURN === 0) {
        flush();
        await new Promise((resolve) => setImmediate(resolve));
        signal?.throwIfAborted();
      }
      const header = TarWriter.fileHeader(h, size);
      if (at + header.length + paddedSize(size) > end) throw notItsLength();
      if (pieces.length > 0 && at - to < HEADER_GAP_MAX && at + header.length - from <= ZERO_BYTES_MAX) {
        if (at > to) pieces.push(zeroBytes(at - to));
      } else {
        flush();
        from = at;
      }
      pieces.push(header);
      to = at + header.length;
      at += header.length + paddedSize(size);
    }
    if (at !== end) throw notItsLength();
    // Only a run's own data lies between its headers: what follows it (a directory's header, say) is never written over.
    flush();
  }
}

/** Headers writeRunHeaders writes between turns of the event loop (~1 ms of work). */
const HEADERS_PER_TURN = 512;
/** Headers of runs left unread (writeRunHeaders) closer than this (bytes: the spool's block) go in one write, with the zeros between them. */
const HEADER_GAP_MAX = 4096;

/** True when `st` is an inode of more than one link already written under another name: it is then added as a hard link to that name. */
async function addedAsLink(walk: Walk, h: Header, st: BigIntStats): Promise<boolean> {
  if (st.isDirectory() || st.nlink <= 1n) return false;
  const key = `${st.dev}:${st.ino}`;
  const first = walk.links.get(key);
  if (first === undefined) {
    walk.links.set(key, h.name);
    return false;
  }
  await add(walk, h, { type: 'link', linkname: first, size: 0 });
  return true;
}

/** Adds an entry that is not a directory (`path`: below an open directory; `rel`: below the top, latin1): its link target, device numbers or data. */
async function addNonDirectory(walk: Walk, h: Header, path: Buffer, st: BigIntStats, rel: string): Promise<void> {
  if (st.isSymbolicLink()) {
    const target = utf8(readlinkSync(path, { encoding: 'buffer' }));
    if (target === undefined) throw new HostReadError(`${h.name}: a link target that is not UTF-8`);
    await add(walk, h, { type: 'symlink', linkname: target });
  } else if (st.isFIFO()) await add(walk, h, { type: 'fifo' });
  else if (st.isCharacterDevice()) await add(walk, h, { type: 'character-device', ...device(st.rdev) });
  else if (st.isBlockDevice()) await add(walk, h, { type: 'block-device', ...device(st.rdev) });
  else if (st.isFile()) {
    const tracked = walk.files && st.nlink === 1n && st.size >= BigInt(walk.files.min);
    if (tracked && walk.files!.file(walk.members, rel, st)) await addUnread(walk, h, Number(st.size));
    else if (walk.defer?.takes(st, rel) && !isSparse(st)) await addDeferred(walk, h, rel, st);
    else if (!(walk.defer?.copies(st) && !isSparse(st) && (await addHeldCopy(walk, h, path, rel, st)))) await addFile(walk, h, path, st);
  } else throw new HostReadError(`${h.name}: a file of a kind not read here`);
}

/** hostPaths' options: headers with no data written before the paths (`prelude`), and after a path's entry (`after`, given its path). */
export interface HostPathsOptions {
  prelude?: Header[];
  after?: (path: string) => Header[] | undefined;
  /** As hostTar's: the paths stop at the next one or MiB read once it is aborted, the stream failing with its reason. */
  signal?: AbortSignal;
}

/**
 * The entries of `paths` (absolute paths below the top of `dir`, UTF-8, parents before children)
 * each alone, a directory as its header without its subtree, streamed as hostTar writes them
 * (numeric owners, mode bits, mtimes to the second, symlink targets, device numbers,
 * `security.capability` from `caps`; a later path of an inode written before as a hard link to
 * it), named below the top as an image layer names them (`etc/`, `etc/passwd`); a unix socket is
 * left out, as the engine's archive leaves it. Each path's directories are opened one by one
 * from the top without following a symlink: one swapped for a symlink fails the stream with
 * HostReadError, as a whiteout (a character device 0:0) among `paths` does. `dir.fd` is closed
 * when it ends.
 */
export function hostPaths(dir: Pick<HostDir, 'fd' | 'root'>, paths: string[], caps: Map<string, Buffer>, opts: HostPathsOptions = {}): Readable {
  const writer = new TarWriter(PACK_BUFFER);
  const walk: Walk = { tar: writer, caps, links: new Map(), entries: 0, slab: new DirectSlab(), members: 0, signal: opts.signal };
  const opened = new Map<string, number>();
  /** The directory `parts` name below the top, opened (once) component by component. */
  const directory = (parts: Buffer[]): number => {
    let fd = dir.fd;
    let key = '';
    for (const part of parts) {
      key += `/${part.toString('latin1')}`;
      let next = opened.get(key);
      if (next === undefined) {
        const path = atDir(fd, part);
        const st = lstatSync(path, { bigint: true });
        if (!st.isDirectory()) throw new HostReadError(`${key}: not a directory here`);
        next = openSame(path, constants.O_DIRECTORY, st);
        opened.set(key, next);
      }
      fd = next;
    }
    return fd;
  };
  const build = async () => {
    try {
      for (const h of opts.prelude ?? []) await add(walk, h, {}, Buffer.alloc(0));
      for (const full of paths) {
        walk.signal?.throwIfAborted();
        const parts = full
          .split('/')
          .filter(Boolean)
          .map((p) => Buffer.from(p, 'utf8'));
        const last = parts.pop();
        if (!last) continue;
        const path = atDir(directory(parts), last);
        const st = lstatSync(path, { bigint: true });
        if (st.isSocket()) continue;
        if (st.isCharacterDevice() && st.rdev === 0n) throw new HostReadError(`${full}: a whiteout, not a path to take`);
        const rel = Buffer.from(full.replace(/^\//, ''), 'utf8').toString('latin1');
        const h = header(`${full.replace(/^\//, '')}${st.isDirectory() ? '/' : ''}`, st, rel, walk);
        if (await addedAsLink(walk, h, st)) continue;
        if (st.isDirectory()) await add(walk, h, { type: 'directory' });
        else await addNonDirectory(walk, h, path, st, rel);
        for (const extra of opts.after?.(full) ?? []) await add(walk, extra, {}, Buffer.alloc(0));
      }
    } finally {
      for (const fd of opened.values()) closeSync(fd);
      closeSync(dir.fd);
    }
    await writer.finalize();
  };
  build().catch((err: Error) => writer.destroy(err));
  writer.stream.on('error', () => undefined);
  return writer.stream;
}

/**
 * Opens `path` (below an open directory) without following a symlink or blocking on a fifo, and
 * checks it is still the inode `st` describes; HostReadError if not.
 */
function openSame(path: Buffer, flags: number, st: BigIntStats): number {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | flags);
  const now = fstatSync(fd, { bigint: true });
  if (now.dev !== st.dev || now.ino !== st.ino || (Number(now.mode) & constants.S_IFMT) !== (Number(st.mode) & constants.S_IFMT)) {
    closeSync(fd);
    throw new HostReadError(`${path.toString('latin1')} changed while it was read`);
  }
  return fd;
}

/** A regular file's entry and data: exactly `st.size` bytes, else HostReadError (it changed). */
async function addFile(walk: Walk, h: Header, path: Buffer, st: BigIntStats): Promise<void> {
  const size = Number(st.size);
  const sparse = isSparse(st);
  if (!sparse && size < TAR_COPY_MAX) {
    // A small file is read straight into the archive's batch, after its header.
    const fd = openSame(path, 0, st);
    try {
      walk.members++;
      readFull(fd, walk.tar.open({ ...h, type: 'file', size })!, size, 0);
    } finally {
      closeSync(fd);
    }
    return walk.tar.ready();
  }
  let fd = sparse ? openDirectSame(path, st) : undefined;
  // O_DIRECT (a sparse file): reads go into the walk's aligned slab, reused, so what it read is copied on.
  let slab: Buffer | undefined;
  try {
    slab = fd === undefined ? undefined : walk.slab.viewFor(fd);
  } catch (err) {
    closeSync(fd!);
    throw err;
  }
  let reprobed = false;
  if (fd !== undefined && !slab) closeSync(fd);
  if (!slab) fd = openSame(path, 0, st);
  try {
    openLarge(walk, h, size);
    for (let at = 0; at < size;) {
      walk.signal?.throwIfAborted();
      // Read buffered, data goes straight into the archive's batch: no buffer per piece, none to
      // collect later (the spool hands the batch back once written), no copy while held.
      const into = slab ?? walk.tar.room();
      let n: number;
      try {
        n = readFull(fd!, into, Math.min(into.length, size - at), at);
      } catch (err) {
        if (!slab || (err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
        // The memory alignment found on a hole is refused for data: found again on this data, else this file read buffered.
        const view = reprobed ? undefined : walk.slab.viewFor(fd!, at, true);
        reprobed = true;
        slab = view;
        if (!view) {
          closeSync(fd!);
          fd = undefined;
          fd = openSame(path, 0, st);
        }
        continue;
      }
      const chunk = into.subarray(0, n);
      at += n;
      const end = at === size ? size : undefined;
      if (allZero(chunk)) await walk.tar.write(zeroBytes(n), end);
      else if (slab) await walk.tar.write(Buffer.from(chunk), end);
      else await walk.tar.commit(n, end);
    }
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** A regular file's entry whose `size` bytes of data the caller gives to `walk.tar.write`, in pieces. */
function openLarge(walk: Walk, h: Header, size: number): void {
  walk.members++;
  walk.tar.open({ ...h, type: 'file', size }, true);
}

/** Whether a regular file of lstat `st` has holes worth reading around (SPARSE_MIN bytes or more not allocated). */
function isSparse(st: BigIntStats): boolean {
  return Number(st.size) - Number(st.blocks) * 512 >= SPARSE_MIN;
}

/** A regular file's entry with zeros for data, its path and offset recorded for a read once the container is back (DeferredReads). */
async function addDeferred(walk: Walk, h: Header, rel: string, st: BigIntStats): Promise<void> {
  const size = Number(st.size);
  openLarge(walk, h, size);
  walk.defer!.add(rel, walk.tar.offset, st);
  await zeros(walk, size);
}

/**
 * A regular file's entry with zeros for data, its data copied by the kernel into a held copy
 * (DeferredReads.copyBeside: the copy runs beside the walk) that is read once the container is
 * back; false, nothing written, when no copy may be started (the spool's disk: the caller then
 * reads the file). Opened as the walk saw it (openSame).
 */
async function addHeldCopy(walk: Walk, h: Header, path: Buffer, rel: string, st: BigIntStats): Promise<boolean> {
  // At most COPIES_AT_ONCE copies under way: past it, the walk waits for one to end.
  await walk.defer!.copySlot();
  if (!walk.defer!.roomForCopy(st)) return false;
  const fd = openSame(path, 0, st);
  const size = Number(st.size);
  try {
    openLarge(walk, h, size);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  // The copy runs beside the walk (DeferredReads.copyBeside), which takes the descriptor; its data is zeros here meanwhile.
  walk.defer!.copyBeside(rel, walk.tar.offset, fd, st, walk.signal);
  await zeros(walk, size);
  return true;
}

/** A regular file's entry with `size` zero bytes for data, its file left unread (FileTracker). */
async function addUnread(walk: Walk, h: Header, size: number): Promise<void> {
  openLarge(walk, h, size);
  await zeros(walk, size);
}

/** `size` zero bytes of the data of the entry just opened (openLarge), its padding after. */
async function zeros(walk: Walk, size: number): Promise<void> {
  for (let at = 0; at < size; at += CHUNK) {
    walk.signal?.throwIfAborted();
    const n = Math.min(CHUNK, size - at);
    await walk.tar.write(zeroBytes(n), at + n === size ? size : undefined);
  }
}

/** Reads `want` bytes at `at` (fewer only at the file's end: then HostReadError, the file shrank). O_DIRECT reads ask for whole chunks. */
function readFull(fd: number, buf: Buffer, want: number, at: number): number {
  let got = 0;
  while (got < want) {
    let n: number;
    try {
      n = readSync(fd, buf, got, buf.length - got, at + got);
    } catch (err) {
      // An O_DIRECT read after a short one (the file shrank under the read) is at an unaligned offset.
      if (got > 0 && (err as NodeJS.ErrnoException).code === 'EINVAL') throw new HostReadError('a file shrank while it was read');
      throw err;
    }
    if (n === 0) throw new HostReadError('a file shrank while it was read');
    got += n;
  }
  return want;
}

/** `path` opened with O_DIRECT (and checked as openSame does), or undefined where its file system refuses it. */
function openDirectSame(path: Buffer, st: BigIntStats): number | undefined {
  try {
    return openSame(path, constants.O_DIRECT, st);
  } catch (err) {
    if (err instanceof HostReadError || (err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
    return undefined;
  }
}
