/**
 * The side record of a volume (what the engine's archive drops, which files are sparse): its shape,
 * the scan of the volume's directory on this host that fills it, and its storing with a set.
 */
import type { BigIntStats } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { BlobDescriptor, MetadataLoss, VolumeMetadata } from './manifest.js';
import { GETFATTR_MAX, getfattrClause, parseGetfattr, runGetfattr, xattrOutput } from './getfattr.js';
import { rootStatOf, sameRoot, type RootStat } from './volume-root.js';

/**
 * What the engine's archive (`GET /containers/{id}/archive`, Engine 20.10) leaves out of a volume,
 * measured here: every extended attribute but `security.capability` (so `user.*` attributes and
 * POSIX ACLs, the `system.posix_acl_*` attributes), sub-second modification times (cut to the
 * second) and unix sockets (skipped). `PUT …/archive` applies PAX `SCHILY.xattr.*` and sub-second
 * `mtime` records, so all but sockets can be put back from a side record.
 */
export interface MetadataRecord {
  /** Paths relative to the volume's root ('.' is the root), POSIX separators. */
  entries: Array<{
    path: string;
    /** `seconds.nanoseconds`, when the nanoseconds are not 0. */ mtime?: string;
    /** Name → base64 value. */ xattrs?: Record<string, string>;
  }>;
  /** Unix sockets, which no tar can carry. */
  sockets: string[];
  /**
   * Regular files that were sparse (see `SPARSE_MIN`), paths as in `entries`; `'many'` when there
   * were more than `MAX_SPARSE_NAMED`. Absent in sets written before it was recorded.
   */
  sparse?: string[] | 'many';
}

/** A file is recorded as sparse when at least this much of its apparent size is not allocated (`st_size - st_blocks * 512`). */
export const SPARSE_MIN = 64 << 10;
/** At most this many sparse files are named per volume; beyond it the record says `'many'`. */
export const MAX_SPARSE_NAMED = 10_000;

/** What a set says of a volume's sparse files: their paths, `'many'`, or undefined when it does not say (an older set, or the directory was not read). */
export type SparseFiles = string[] | 'many' | undefined;

/** Collects sparse files' paths up to `MAX_SPARSE_NAMED` (`limit`), then only counts them. */
export class SparseList {
  private readonly paths: string[] = [];
  count = 0;

  constructor(private readonly limit = MAX_SPARSE_NAMED) {}

  /** Notes `path` when it is sparse: `size` and `blocks` (512-byte units) as `stat` gives them. */
  add(path: string, size: number, blocks: number): void {
    if (size - blocks * 512 < SPARSE_MIN) return;
    this.count++;
    if (this.paths.length < this.limit) this.paths.push(path);
  }

  /** The paths noted, or `'many'` once more than `limit` were sparse. */
  get value(): string[] | 'many' {
    return this.count > this.limit ? 'many' : this.paths;
  }
}

/**
 * The sparse files a side record (as read from a set) names: undefined when it has no such field
 * (older sets) or the field is not a list of relative paths inside the volume, which is then ignored.
 */
export function sparseOf(record: unknown): SparseFiles {
  const field = (record as { sparse?: unknown } | undefined)?.sparse;
  if (field === 'many') return 'many';
  if (!Array.isArray(field)) return undefined;
  const inside = (p: unknown) => typeof p === 'string' && p !== '' && !p.startsWith('/') && !p.split('/').includes('..');
  return field.every(inside) ? (field as string[]) : undefined;
}

/** Why a volume's metadata was not read, or which part of it was not. */
export interface MetadataScan {
  record?: MetadataRecord;
  loss?: MetadataLoss;
  /** Set when nothing could be read (the record and loss are then absent). */
  unreadable?: string;
  /** Set when extended attributes could not be read (times and sockets were). */
  xattrsUnchecked?: string;
  /** The root directory as seen here, to match against the engine's archive of it. */
  root?: RootStat;
}

/** The scan, or why it does not describe the directory the engine archived (another host's path). */
export function matchedScan(scan: MetadataScan, archived: RootStat | undefined, root: string | undefined): MetadataScan {
  if (!scan.root || !archived || sameRoot(scan.root, archived)) return scan;
  return { unreadable: `${root} here is not the directory the engine archived (owner, mode or time differ): an engine on another host?` };
}

const ACL = /^system\.posix_acl_(access|default)$/;

/** What a walk tells MetadataCollector of one entry (from its lstat). */
export interface Walked {
  mtimeNs: bigint;
  socket: boolean;
  file: boolean;
  size: number;
  blocks: number;
}

/** What MetadataCollector needs of an entry's lstat. */
export function walkedOf(st: BigIntStats): Walked {
  return { mtimeNs: st.mtimeNs, socket: st.isSocket(), file: st.isFile(), size: Number(st.size), blocks: Number(st.blocks) };
}

async function walk(root: string, visit: (rel: string, info: Walked) => void, signal?: AbortSignal): Promise<void> {
  const rootInfo = await lstat(root, { bigint: true });
  visit('.', walkedOf(rootInfo));
  const dirs = ['.'];
  while (dirs.length > 0) {
    signal?.throwIfAborted();
    const rel = dirs.pop()!;
    const names = await readdir(rel === '.' ? root : join(root, rel));
    // Many lstat calls at once: one at a time, a volume of 50,000 files took 2 s here.
    for (let i = 0; i < names.length; i += WALK_BATCH) {
      const batch = names.slice(i, i + WALK_BATCH).map((n) => (rel === '.' ? n : `${rel}/${n}`));
      const infos = await Promise.all(batch.map((p) => lstat(join(root, p), { bigint: true })));
      infos.forEach((info, j) => {
        visit(batch[j], walkedOf(info));
        if (info.isDirectory()) dirs.push(batch[j]);
      });
    }
  }
}

const WALK_BATCH = 256;

function seconds(ns: bigint): string {
  return `${ns / 1_000_000_000n}.${(ns % 1_000_000_000n).toString().padStart(9, '0')}`;
}

/**
 * The sparse files of a directory on this host (a volume's `Mountpoint`), with its root's stat to
 * match against the engine's archive (`matchedScan`); undefined when it cannot be read here.
 */
export async function scanSparseFiles(root: string | undefined): Promise<{ sparse: string[] | 'many'; root: RootStat } | undefined> {
  const rootStat = await rootStatOf(root);
  if (typeof rootStat === 'string') return undefined;
  const sparse = new SparseList();
  try {
    await walk(root!, (rel, info) => info.file && sparse.add(rel, info.size, info.blocks));
  } catch {
    return undefined;
  }
  return { sparse: sparse.value, root: rootStat };
}

/**
 * Builds a volume's MetadataScan from its entries as a walk meets them (`visit`) and the output of
 * `getfattr` over it (`finish`): sub-second modification times, unix sockets, sparse regular files
 * and extended attributes. Used by scanVolumeMetadata's own walk, and by the host's read of a
 * volume (volume-tar.ts hostTar's `observe`), which then needs no second walk while held.
 */
export class MetadataCollector {
  private readonly entries = new Map<string, MetadataRecord['entries'][number]>();
  private readonly record: MetadataRecord = { entries: [], sockets: [] };
  private readonly loss: MetadataLoss = { xattrs: 0, acls: 0, subSecondTimes: 0, sockets: 0 };
  private readonly sparse = new SparseList();

  /** `root`: the directory's stat, matched against the engine's archive of it (`matchedScan`). */
  constructor(private readonly root: RootStat) {}

  /** One entry: `rel` its path below the top ('.' the top), POSIX separators; `info` its lstat's facts. */
  visit(rel: string, info: Walked): void {
    if (info.file) this.sparse.add(rel, info.size, info.blocks);
    if (info.mtimeNs < 0n) this.loss.before1970 = (this.loss.before1970 ?? 0) + 1;
    if (info.socket) {
      this.record.sockets.push(rel);
      this.loss.sockets++;
    } else if (info.mtimeNs % 1_000_000_000n !== 0n) {
      this.entries.set(rel, { path: rel, mtime: seconds(info.mtimeNs) });
      this.loss.subSecondTimes++;
    }
  }

  /**
   * The scan, once every entry was visited: `xattrs` is getfattr's output over the same directory
   * (getfattr.ts `xattrOutput` of `runGetfattr(top)`, parsed against `top`), or the error it failed
   * with (then extended attributes are reported unchecked; a missing getfattr is ENOENT).
   */
  finish(top: string, xattrs: string | Error): MetadataScan {
    const { record, loss, entries } = this;
    record.sparse = this.sparse.value;
    let xattrsUnchecked: string | undefined;
    if (typeof xattrs === 'string') {
      for (const [rel, attrs] of parseGetfattr(xattrs, top)) {
        if (record.sockets.includes(rel)) continue;
        const names = Object.keys(attrs);
        if (names.some((n) => ACL.test(n))) loss.acls++;
        if (names.some((n) => !ACL.test(n))) loss.xattrs++;
        entries.set(rel, { ...(entries.get(rel) ?? { path: rel }), xattrs: attrs });
      }
    } else {
      xattrsUnchecked = getfattrClause(xattrs as NodeJS.ErrnoException);
    }
    record.entries = [...entries.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    return { record, loss, root: this.root, ...(xattrsUnchecked ? { xattrsUnchecked } : {}) };
  }
}

/**
 * Reads, from the volume's directory on this host (`Mountpoint` of the volume, or a bind mount's
 * source), what the engine's archive leaves out, and which regular files are sparse. Needs the
 * directory readable here: the engine on this host and enough rights (root). Extended attributes
 * need `getfattr` (Debian package `attr`); without it they are reported unchecked. Never throws:
 * what could not be read is said in the result. `signal`: once aborted, the walk stops at its next
 * directory and getfattr is killed (the result then says so; the caller checks the signal).
 */
export async function scanVolumeMetadata(root: string | undefined, signal?: AbortSignal): Promise<MetadataScan> {
  const rootStat = await rootStatOf(root);
  if (typeof rootStat === 'string') return { unreadable: rootStat };
  const collector = new MetadataCollector(rootStat);
  try {
    await walk(root!, (rel, info) => collector.visit(rel, info), signal);
  } catch (err) {
    return { unreadable: `${root} could not be read here (${(err as Error).message})` };
  }
  return collector.finish(root!, xattrOutput(await runGetfattr(root!, GETFATTR_MAX, signal)));
}

function counted(loss: MetadataLoss, sockets: string[]): { kept: string[]; lost: string[] } {
  const kept: string[] = [];
  if (loss.xattrs > 0) kept.push(`${loss.xattrs} file(s) with extended attributes`);
  if (loss.acls > 0) kept.push(`${loss.acls} file(s) with POSIX ACLs`);
  if (loss.subSecondTimes > 0) kept.push(`${loss.subSecondTimes} file(s) with sub-second modification times`);
  const lost = loss.sockets > 0 ? [`${loss.sockets} unix socket(s) (${sockets.slice(0, 3).join(', ')}${loss.sockets > 3 ? ', …' : ''})`] : [];
  if (loss.before1970)
    lost.push(`the modification times of ${loss.before1970} file(s) modified before 1970 (a restore through the engine gives them 1970-01-01)`);
  return { kept, lost };
}

/**
 * Stores the side record of a scanned volume (through `store`) and words
 * what was kept and what was not: `notKept` becomes a warning and is recorded in the set.
 */
export async function keepVolumeMetadata(
  scan: MetadataScan,
  store: (content: Readable) => Promise<BlobDescriptor>,
): Promise<{ metadata: VolumeMetadata; kept?: string }> {
  if (scan.unreadable) {
    return {
      metadata: {
        notKept: `extended attributes, ACLs, sub-second modification times and unix sockets (the engine's archive drops them), and which files are sparse (a restore punches those with zero runs of 64 KiB or more); not read: ${scan.unreadable}`,
      },
    };
  }
  const { kept, lost } = counted(scan.loss!, scan.record!.sockets);
  if (scan.xattrsUnchecked) lost.push(`extended attributes and ACLs, if any (not checked: ${scan.xattrsUnchecked})`);
  if (scan.record!.sparse === 'many')
    lost.push(
      `the names of its sparse files (more than ${MAX_SPARSE_NAMED}: a restore makes sparse every file with zero runs of 64 KiB or more, preallocated ones too)`,
    );
  const metadata: VolumeMetadata = { dropped: scan.loss };
  // Stored even when it holds nothing else: its `sparse` field tells a restore which files to punch, and that no others were sparse.
  metadata.record = await store(Readable.from([Buffer.from(JSON.stringify(scan.record))]));
  if (lost.length > 0) metadata.notKept = lost.join(', ');
  return { metadata, ...(kept.length > 0 ? { kept: `kept in a side record, as the engine's archive drops them: ${kept.join(', ')}` } : {}) };
}
