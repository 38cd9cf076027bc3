import { readdirSync } from 'node:fs';

/**
 * Directories the engine itself makes in a container's root for a moment, which are no part of
 * the container's writable layer. moby's `internal/mounttree` SwitchRoot (Engine 23 and later: every
 * `GET`/`HEAD`/`PUT /containers/{id}/archive`, whatever the container's state; `pkg/chrootarchive`
 * before it, for an extraction) makes `os.MkdirTemp(BaseFS, ".pivot_root")` — `.pivot_root` and a
 * decimal number, mode 0700 — pivots into the container's root in a mount namespace of its own,
 * then removes it: in an overlay2 upper directory it is there, empty, for well under a millisecond. A list of the layer's paths (the engine's
 * own `GET /containers/{id}/changes`, or a walk of the upper directory on this host) made at that
 * moment names it, and it is gone when read: a backup that read the layer while its volumes'
 * archive requests ran beside it failed on it (Engine 26.1). Such a directory — that name at the
 * root, nothing below it — is left out of every list and walk of a writable layer; one that holds
 * something is no engine's and is taken as any other (a user's empty directory of that very name
 * is left out with the engine's).
 */

/** `/.pivot_root` and digits: the name Go's os.MkdirTemp gives with that prefix, at the root. */
const SCRATCH = /^\/\.pivot_root\d+$/;

/** Whether `path` (absolute in the container: '/.pivot_root123') has the name of such a directory of the engine's. */
export function isEngineScratch(path: string): boolean {
  return SCRATCH.test(path);
}

/**
 * The paths of `paths` (absolute in the container, as a list or walk of the layer gives them, whiteouts
 * left out) to leave out as the engine's: each with the name of one and no other path below it.
 */
export function scratchToDrop(paths: Iterable<string>): Set<string> {
  const all = [...paths];
  const named = all.filter(isEngineScratch);
  if (named.length === 0) return new Set();
  return new Set(named.filter((dir) => !all.some((p) => p.startsWith(`${dir}/`))));
}

/**
 * Whether the entry at `hostPath` (in an upper directory, with the name of the engine's: isEngineScratch)
 * is one to leave out unread: gone, or an empty directory. Anything else is read as it is.
 */
export function goneOrEmptyDir(hostPath: string): boolean {
  try {
    return readdirSync(hostPath).length === 0;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT';
  }
}

/**
 * Whether a run of find or getfattr over the upper directory `root` that exited 1 failed only
 * because such a directory went away while it ran: every line of its `stderr` names
 * `<root>/.pivot_root<digits>` itself and says "No such file or directory" (the C locale's
 * strerror, as both print it). Its output for the other paths stands.
 */
export function vanishedScratchOnly(stderr: string, root: string): boolean {
  const lines = stderr.split('\n').filter((l) => l.trim() !== '');
  const prefix = `${root.replace(/\/+$/, '')}/.pivot_root`;
  return (
    lines.length > 0 &&
    lines.every((line) => {
      const at = line.indexOf(prefix);
      return at >= 0 && /^\d+[':]/.test(line.slice(at + prefix.length)) && line.endsWith('No such file or directory');
    })
  );
}
