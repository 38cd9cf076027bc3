import { constants, type BigIntStats } from 'node:fs';
import { lchown, lstat, lutimes, mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { FileEntry } from './entries.js';
import { BrowseError } from './view.js';

/** What an extract wrote at one name under its directory, known again by device and inode. */
export interface Made {
  kind: 'directory' | 'file' | 'other';
  dev: bigint;
  ino: bigint;
  /** The entry whose attributes a directory gets once its content is written; absent when it keeps its own. */
  entry?: FileEntry;
}

/**
 * The names (relative to the directory written into) an extract wrote or took over, so that it
 * tells an archive naming a path twice from what was there, hard-links only to its own files, and
 * sets attributes only on the directories it made (never on what replaced them).
 */
export class Written {
  private readonly names = new Map<string, Made>();

  has(rel: string): boolean {
    return this.names.has(rel);
  }

  get(rel: string): Made | undefined {
    return this.names.get(rel);
  }

  record(rel: string, kind: Made['kind'], st: BigIntStats, entry?: FileEntry): void {
    this.names.set(rel, { kind, dev: st.dev, ino: st.ino, ...(entry ? { entry } : {}) });
  }

  /** Forgets `rel` and everything below it (it is about to be replaced). */
  drop(rel: string): void {
    for (const name of [...this.names.keys()]) if (name === rel || name.startsWith(`${rel}/`)) this.names.delete(name);
  }

  /** The directories whose attributes are to be set, deepest first (writing into one changes its mtime). */
  directories(): Array<[string, Made & { entry: FileEntry }]> {
    const dirs = [...this.names].filter((d): d is [string, Made & { entry: FileEntry }] => d[1].kind === 'directory' && d[1].entry !== undefined);
    return dirs.sort((a, b) => b[0].split('/').length - a[0].split('/').length);
  }
}

/** Makes the directories above `rel` under `to` as needed; refuses one that is a symlink or not a directory (it could lead out of `to`). */
export async function parents(to: string, rel: string): Promise<void> {
  let at = to;
  for (const segment of rel.split('/').slice(0, -1)) {
    at = join(at, segment);
    const st = await lstat(at).catch(() => undefined);
    if (!st) await mkdir(at, { mode: 0o755 });
    else if (!st.isDirectory()) throw new BrowseError(`${at} is ${st.isSymbolicLink() ? 'a symlink' : 'not a directory'}; nothing is written through it.`);
  }
}

/** `rel` under `to` when it is a regular file reached through real directories only (no symlink on the way); else undefined. */
export async function fileAt(to: string, rel: string): Promise<{ abs: string; st: BigIntStats } | undefined> {
  let at = to;
  const segments = rel.split('/');
  for (const [i, segment] of segments.entries()) {
    at = join(at, segment);
    const st = await lstat(at, { bigint: true }).catch(() => undefined);
    if (!st || !(i === segments.length - 1 ? st.isFile() : st.isDirectory())) return undefined;
    if (i === segments.length - 1) return { abs: at, st };
  }
  return undefined;
}

/**
 * Creates `abs` exclusively (never through a symlink), writes `content` into it and sets the
 * entry's mode and mtime, and its owner when `asRoot`, through the same handle. Resolves with
 * the file's stats. `mode` is the permission bits to set (setuid/setgid already decided).
 */
export async function writeFile(abs: string, content: Readable, e: FileEntry, mode: number, asRoot: boolean): Promise<BigIntStats> {
  const h = await open(abs, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    await h.writeFile(content);
    if (asRoot) await h.chown(e.uid, e.gid);
    await h.chmod(mode);
    await h.utimes(e.mtime, e.mtime);
    return await h.stat({ bigint: true });
  } finally {
    await h.close();
  }
}

/** Owner (when `asRoot`) and mtime of something just made at `abs`, on the name itself: a symlink is never followed. */
export async function ownName(abs: string, e: FileEntry, asRoot: boolean): Promise<void> {
  if (asRoot) await lchown(abs, e.uid, e.gid);
  await lutimes(abs, e.mtime, e.mtime);
}

/**
 * Sets a directory's mode, mtime and owner (when `asRoot`) through a handle opened without
 * following a symlink and checked to be the directory `made` records. False, changing nothing,
 * when something else is at `abs` now.
 */
export async function ownDirectory(abs: string, made: Made & { entry: FileEntry }, asRoot: boolean): Promise<boolean> {
  const h = await open(abs, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW).catch(() => undefined);
  if (!h) return false;
  try {
    const st = await h.stat({ bigint: true });
    if (st.dev !== made.dev || st.ino !== made.ino) return false;
    const e = made.entry;
    if (asRoot) await h.chown(e.uid, e.gid);
    await h.chmod(e.mode);
    await h.utimes(e.mtime, e.mtime);
    return true;
  } finally {
    await h.close();
  }
}
