/**
 * Keeping a bind-mounted host path's old content aside while a restore writes the set's over it:
 * the path is renamed, on this host, to a sibling (`PATH.csx-aside-xxxxxx`, same directory, so the
 * same filesystem and one atomic `rename(2)`); the restore fills a new, empty path; a commit removes
 * the sibling, a rollback renames it back. Only where this process sees the very path the engine
 * mounts (an engine on this host), may rename it, and nothing else depends on it (a file system
 * mounted inside it, the engine's own data, another container); elsewhere the caller refuses to
 * replace a path that holds data (the engine's helpers can write files but not delete them).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants, lstatSync, readFileSync, realpathSync, type BigIntStats } from 'node:fs';
import { access, chmod, chown, lstat, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { errorMessage } from '../core/log.js';
import { isAlive, processStart } from '../core/process-liveness.js';
import type { PathProbe } from './fill.js';
import { rootStatFrom, sameRoot, type RootStat } from './volume-root.js';

/** A host path a restore moved aside (TargetPending.replacedPaths): the path and the sibling holding its old content. */
export interface ReplacedHostPath {
  /** The bind mount's host path, absolute. */
  path: string;
  /** The sibling the old content is renamed to; recorded before the rename, so it may not exist yet. */
  aside: string;
}

/**
 * A bind mount's host path a restore filled where nothing was kept aside (TargetPending.filledPaths):
 * it was missing, or an empty directory (`root`: its owner, mode and modification time then).
 * Recorded before the fill; a rollback empties it again, or removes it (`emptyFilledPath`).
 */
export interface FilledHostPath {
  /** The bind mount's host path, absolute. */
  path: string;
  /** False: missing before the fill (the fill made it); true: an empty directory. */
  existed: boolean;
  /** The empty directory's owner, mode and modification time (whole seconds) before the fill. */
  root?: RootStat;
  /**
   * `DEV:INODE` of the directory (the empty one; or the one the fill made, once it is made): a
   * rollback leaves a path that is another inode now (moved away, a symbolic link put there).
   */
  inode?: string;
}

/** A container and the host paths it mounts (Engine.hostPathMounts). */
export interface HostPathMounts {
  id: string;
  name: string;
  paths: string[];
  /** Running or paused now (absent: not said). */
  running?: boolean;
}

/** Whether anything (file, directory, symlink) is at `path` here; errors other than ENOENT are thrown. */
function presentSync(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** A sibling name free now for `path`'s old content: `PATH.csx-aside-` and 6 random hex digits. */
export function asidePathOf(path: string): string {
  for (;;) {
    const aside = `${path}.csx-aside-${randomBytes(3).toString('hex')}`;
    if (!presentSync(aside)) return aside;
  }
}

/** `path` with its symbolic links resolved on this host, or as it is when it cannot be. */
function real(path: string): string {
  try {
    return realpathSync.native(path);
  } catch {
    return path;
  }
}

/** Whether `x` is `y` or lies inside it. */
function inside(x: string, y: string): boolean {
  return x === y || x.startsWith(y.endsWith('/') ? y : `${y}/`);
}

/**
 * The containers of `mounts` that mount `path` or a path inside it, compared by their real paths on
 * this host: those would keep the old content where it is moved aside (a mount follows the
 * directory it was made on). A container that mounts a directory holding `path` sees the new
 * content there, and is not one.
 */
export function usersOf(path: string, mounts: readonly HostPathMounts[]): Array<{ id: string; name: string }> {
  const here = real(path);
  return mounts.filter((c) => c.paths.some((p) => inside(real(p), here))).map(({ id, name }) => ({ id, name }));
}

/**
 * The first mount point at or below `dir` in a mountinfo text (proc(5) /proc/self/mountinfo: the
 * fifth field, with spaces and other bytes octal-escaped), or undefined.
 */
export function mountInside(dir: string, mountinfo: string): string | undefined {
  for (const line of mountinfo.split('\n')) {
    const field = line.split(' ')[4];
    if (!field) continue;
    const point = field.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (point === dir || point.startsWith(`${dir}/`)) return point;
  }
  return undefined;
}

/** The target of `path` when it is a symbolic link on this host that leads where the engine's `probe` saw the same thing; undefined otherwise. */
export async function localSymlink(path: string, probe: PathProbe): Promise<string | undefined> {
  try {
    if (!(await lstat(path)).isSymbolicLink()) return undefined;
    const st = await stat(path, { bigint: true });
    return sameRoot(rootStatFrom(st), probe.root) ? real(path) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Why `path` cannot be moved aside from this process (a phrase for a message), or undefined when
 * it can: the engine's view (`probe`, through a helper that mounts it) must match this host's
 * (kind, owner, mode and modification time alike: an engine on another host sees other files);
 * the path must not be a top-level directory, hold the engine's data (`dataRoot`), be a mount point
 * or hold one (`mountinfo`, this process's /proc/self/mountinfo by default: rename(2) fails there,
 * or would carry another file system along), and its directory must be writable by this process.
 * Never throws.
 */
export async function asideBlocker(
  path: string,
  probe: PathProbe,
  dataRoot?: string,
  mountinfo: () => string = () => readFileSync('/proc/self/mountinfo', 'utf8'),
): Promise<string | undefined> {
  const elsewhere = 'this host does not see the path the engine mounts (an engine on another host, or a runner in a container without it)';
  try {
    const here = await lstat(path, { bigint: true });
    const kind = here.isDirectory() ? 'directory' : here.isFile() ? 'file' : 'other';
    if (kind !== probe.kind || !sameRoot(rootStatFrom(here), probe.root)) return elsewhere;
    const at = real(path);
    const parent = dirname(at);
    if (parent === at) return 'it is the root directory';
    if (parent === '/') return 'it is a top-level directory of the host';
    if (dataRoot && inside(dataRoot, at)) return `it holds the engine's own data (${dataRoot})`;
    if ((await stat(parent, { bigint: true })).dev !== here.dev) return 'it is a mount point of its own (it cannot be renamed)';
    const mounted = mountInside(at, mountinfo());
    if (mounted) return `a file system is mounted ${mounted === at ? 'on it' : `inside it, at ${mounted}`}`;
    await access(parent, constants.W_OK);
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return elsewhere;
    if (code === 'EACCES' || code === 'EPERM') return `this process may not rename entries of ${dirname(path)} (run as the path's owner, or as root)`;
    return errorMessage(err);
  }
}

/**
 * Removes the tree at `path` (none there is done). Node's rm names each entry by its whole path, so
 * a tree deeper than PATH_MAX (4096 bytes) fails with ENAMETOOLONG: that one is removed by GNU rm,
 * which walks it below directory descriptors, never crossing into another file system.
 */
async function removeTree(path: string): Promise<void> {
  try {
    await rm(path, { recursive: true, force: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENAMETOOLONG') throw err;
    // busybox rm has no --one-file-system: then without it (what is moved aside holds no mount: asideBlocker).
    await promisify(execFile)('rm', ['-rf', '--one-file-system', '--', path]).catch(() => promisify(execFile)('rm', ['-rf', '--', path]));
  }
}

/** Renames `r.path` to `r.aside`; the rename's error (ENOENT, EACCES, EBUSY, EXDEV, …) is thrown as it came. */
export async function moveAside(r: ReplacedHostPath): Promise<void> {
  await rename(r.path, r.aside);
}

/** The name of this process's claim on a sibling (see `claimAside`). */
function claimName(aside: string): string {
  return `${aside}.claim-${process.pid}-${processStart(process.pid)}`;
}

/**
 * Takes the sibling holding `r`'s old content for this process, by renaming it (one atomic step,
 * so two rollbacks of one journal, a post step and a recovery, never both put it back): from its
 * own name, or from the claim of a process that ended before it put it back. Returns the claimed
 * name, or undefined when there is nothing to claim (never moved, already put back, or claimed by a
 * process still running).
 */
async function claimAside(r: ReplacedHostPath): Promise<string | undefined> {
  const mine = claimName(r.aside);
  if (presentSync(mine)) return mine;
  const prefix = `${basename(r.aside)}.claim-`;
  const names = await readdir(dirname(r.aside)).catch(() => [] as string[]);
  const ended = names.filter((n) => {
    const [pid, started] = n.slice(prefix.length).split('-');
    return n.startsWith(prefix) && /^\d+$/.test(pid ?? '') && !isAlive(Number(pid), started ?? '');
  });
  for (const from of [r.aside, ...ended.map((n) => join(dirname(r.aside), n))]) {
    try {
      await rename(from, mine);
      return mine;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return undefined;
}

/**
 * Puts `r`'s old content back: when the sibling exists (the rename was made), it is claimed
 * (`claimAside`), whatever the restore wrote at the path is removed, and the claimed sibling renamed
 * back; when it does not, the path was never moved (or is back already) and is left as it is. Safe
 * to run again after an interruption at any point, and beside another rollback of the same record.
 */
export async function putBackHostPath(r: ReplacedHostPath): Promise<void> {
  const claimed = await claimAside(r);
  if (!claimed) return;
  await removeTree(r.path);
  await rename(claimed, r.path);
}

/**
 * The record of a fill of `path`, which the engine's helper found missing or an empty directory
 * (`probe`), when this process sees the very path the engine mounts, as the engine sees it (an
 * engine on this host): missing here too, or an empty directory of the same owner, mode and
 * modification time. Undefined elsewhere: a rollback could not undo that fill from here.
 */
export async function filledPathRecord(path: string, probe: PathProbe, uid = process.getuid?.()): Promise<FilledHostPath | undefined> {
  // What the engine's helper writes is root's: only root may remove it again.
  if (uid !== 0) return undefined;
  try {
    const here = await lstat(path, { bigint: true });
    if (!probe.exists || probe.kind !== 'directory' || !here.isDirectory() || !sameRoot(rootStatFrom(here), probe.root)) return undefined;
    if ((await readdir(path)).length > 0) return undefined;
    return { path, existed: true, root: rootStatFrom(here), inode: inodeKey(here) };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || probe.exists) return undefined;
    // Missing here as for the engine: made by the fill, in a directory this host sees.
    return presentSync(dirname(path)) ? { path, existed: false } : undefined;
  }
}

/** `DEV:INODE` of a stat (FilledHostPath.inode). */
function inodeKey(st: BigIntStats): string {
  return `${st.dev}:${st.ino}`;
}

/** `DEV:INODE` of what is at `path` now (not followed), or undefined when nothing is. */
export async function inodeOf(path: string): Promise<string | undefined> {
  const st = await lstat(path, { bigint: true }).catch(() => undefined);
  return st && inodeKey(st);
}

/**
 * Undoes the fill `r` records: a path the fill made is removed whole; an empty directory is emptied
 * again and given back its owner, mode and modification time. A path that is not the one filled
 * any more (another inode: `r.inode`; not a directory) is left as it is. Safe to run again after an
 * interruption, and on a path already undone.
 */
export async function emptyFilledPath(r: FilledHostPath): Promise<void> {
  const here = await lstat(r.path, { bigint: true }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  // Gone, or another file or directory than the one filled (moved away, a symbolic link put there): not the restore's.
  if (!here || (r.inode !== undefined && inodeKey(here) !== r.inode) || (r.existed && !here.isDirectory())) return;
  if (!r.existed) return removeTree(r.path);
  const names = await readdir(r.path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (!names) return;
  for (const name of names) await removeTree(join(r.path, name));
  if (r.root) {
    await chown(r.path, r.root.uid, r.root.gid);
    await chmod(r.path, r.root.mode);
    await utimes(r.path, r.root.mtime, r.root.mtime);
  }
}

/** Removes a sibling holding a replaced path's old content (a committed restore's leftover); one already gone is done. */
export async function removeAsidePath(aside: string): Promise<void> {
  await removeTree(aside);
}
