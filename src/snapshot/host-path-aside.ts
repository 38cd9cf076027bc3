/**
 * Keeping a bind-mounted host path's old content aside while a restore writes the set's over it:
 * the path is renamed, on this host, to a sibling (`PATH.csx-aside-xxxxxx`, same directory, so the
 * same filesystem and one atomic `rename(2)`); the restore fills a new, empty path; a commit removes
 * the sibling, a rollback renames it back. Only where this process sees the very path the engine
 * mounts (an engine on this host) and may rename it; elsewhere the caller refuses to replace a path
 * that holds data (the engine's helpers can write files but not delete them).
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, lstat, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { errorMessage } from '../core/log.js';
import type { PathProbe } from './fill.js';
import { sameRoot } from './volume-root.js';

/** A host path a restore moved aside (TargetPending.replacedPaths): the path and the sibling holding its old content. */
export interface ReplacedHostPath {
  /** The bind mount's host path, absolute. */
  path: string;
  /** The sibling the old content is renamed to; recorded before the rename, so it may not exist yet. */
  aside: string;
}

/** The sibling name `path`'s old content is kept under: `PATH.csx-aside-` and 6 random hex digits. */
export function asidePathOf(path: string): string {
  return `${path}.csx-aside-${randomBytes(3).toString('hex')}`;
}

/** Whether anything (file, directory, symlink) is at `path` here; errors other than ENOENT are thrown. */
async function present(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/**
 * Why `path` cannot be moved aside from this process (a phrase for a message), or undefined when
 * it can: the engine's view (`probe`, through a helper that mounts it) must match this host's
 * (kind, owner, mode and modification time alike: an engine on another host sees other files), the
 * path must not be a mount point or `/` (rename(2) fails with EBUSY or EXDEV there), and its
 * directory must be writable by this process. Never throws.
 */
export async function asideBlocker(path: string, probe: PathProbe): Promise<string | undefined> {
  const elsewhere = 'this host does not see the path the engine mounts (an engine on another host, or a runner in a container without it)';
  try {
    const here = await lstat(path, { bigint: true });
    const kind = here.isDirectory() ? 'directory' : here.isFile() ? 'file' : 'other';
    const stat = { uid: Number(here.uid), gid: Number(here.gid), mode: Number(here.mode) & 0o7777, mtime: Number(here.mtimeNs / 1_000_000_000n) };
    if (kind !== probe.kind || !sameRoot(stat, probe.root)) return elsewhere;
    const parent = dirname(path);
    if (parent === path) return 'it is the root directory';
    if ((await lstat(parent, { bigint: true })).dev !== here.dev) return 'it is a mount point of its own (it cannot be renamed)';
    await access(parent, constants.W_OK);
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return elsewhere;
    if (code === 'EACCES' || code === 'EPERM') return `this process may not rename entries of ${dirname(path)} (run as the path's owner, or as root)`;
    return errorMessage(err);
  }
}

/** Renames `r.path` to `r.aside`; the rename's error (ENOENT, EACCES, EBUSY, EXDEV, …) is thrown as it came. */
export async function moveAside(r: ReplacedHostPath): Promise<void> {
  await rename(r.path, r.aside);
}

/**
 * Puts `r`'s old content back: when the sibling exists (the rename was made), whatever the restore
 * wrote at the path is removed and the sibling renamed back; when it does not, the path was never
 * moved and is left as it is. Safe to run again after an interruption at any point.
 */
export async function putBackHostPath(r: ReplacedHostPath): Promise<void> {
  if (!(await present(r.aside))) return;
  await rm(r.path, { recursive: true, force: true });
  await rename(r.aside, r.path);
}

/** Removes a sibling holding a replaced path's old content (a committed restore's leftover); one already gone is done. */
export async function removeAsidePath(aside: string): Promise<void> {
  await rm(aside, { recursive: true, force: true });
}
