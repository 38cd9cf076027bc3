import { access, chmod, mkdir, open, stat } from 'node:fs/promises';
import { dirname } from 'node:path';

/** File system steps of the dir: destination: private modes, directory creation, fsync. */

/** Sets hold the containers' environments (passwords): only the owner reads them, whatever the umask. */
export const DIR_MODE = 0o700;
export const FILE_MODE = 0o600;

/** Whether `path` exists (and this process may see it). */
export async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** mkdir that makes a private directory, and leaves an existing one as it is. */
async function makeDir(path: string): Promise<void> {
  await mkdir(path, { mode: DIR_MODE });
  await chmod(path, DIR_MODE);
}

/**
 * mkdir -p that gives up: Node's recursive mkdir loops forever where a parent exists but
 * refuses children with ENOENT (procfs, some FUSE mounts). New directories are DIR_MODE.
 * Throws the file system's error (EEXIST when `path` is a file).
 */
export async function ensureDir(path: string, depth = 0): Promise<void> {
  try {
    await makeDir(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' && (await stat(path)).isDirectory()) return;
    if (code !== 'ENOENT' || depth > 64 || dirname(path) === path) throw err;
    await ensureDir(dirname(path), depth + 1);
    await makeDir(path).catch(async (again: NodeJS.ErrnoException) => {
      if (again.code !== 'EEXIST' || !(await stat(path)).isDirectory()) throw again;
    });
  }
}

/** The path itself or its nearest existing ancestor, with what stat says of it. */
export async function nearestExisting(path: string): Promise<{ path: string; isDirectory: boolean }> {
  for (let p = path; ; p = dirname(p)) {
    try {
      return { path: p, isDirectory: (await stat(p)).isDirectory() };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if ((code !== 'ENOENT' && code !== 'ENOTDIR') || dirname(p) === p) throw err;
    }
  }
}

/** fsync of a file or a directory (a directory: so a rename or link in it survives a crash). */
export async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
