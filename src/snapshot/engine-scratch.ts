/**
 * Directories the engine itself makes in a container's root for a moment, which are no part of
 * the container's writable layer. moby's `internal/mounttree` SwitchRoot (Engine 23 and later: every
 * `GET`/`HEAD`/`PUT /containers/{id}/archive` on a running or paused container; `pkg/chrootarchive`
 * before it, for an extraction) makes `os.MkdirTemp(BaseFS, ".pivot_root")` — `.pivot_root` and a
 * decimal number — pivots into the container's root, then removes it: in an overlay2 upper
 * directory it is there for well under a millisecond. A list of the layer's paths (the engine's
 * own `GET /containers/{id}/changes`, or a walk of the upper directory on this host) made at that
 * moment names it, and it is gone when read: a backup that read the layer while its volumes'
 * archive requests ran beside it failed on it (Engine 26.1). Such a path is left out of every list
 * and walk of a writable layer.
 */

/** `/.pivot_root` and digits (the name Go's os.MkdirTemp gives with that prefix), at the root only, or a path below it. */
const SCRATCH = /^\/\.pivot_root\d+(\/|$)/;

/** Whether `path` (absolute in the container: '/.pivot_root123') is such a directory of the engine's, or below one. */
export function isEngineScratch(path: string): boolean {
  return SCRATCH.test(path);
}

/**
 * Whether a run of find or getfattr over the upper directory `root` that exited 1 failed only
 * because such a directory went away while it ran: every line of its `stderr` names
 * `<root>/.pivot_root<digits>` (or a path below it) and says "No such file or directory" (the C
 * locale's strerror, as both print it). Its output for the other paths stands.
 */
export function vanishedScratchOnly(stderr: string, root: string): boolean {
  const lines = stderr.split('\n').filter((l) => l.trim() !== '');
  const prefix = `${root.replace(/\/+$/, '')}/.pivot_root`;
  return (
    lines.length > 0 &&
    lines.every((line) => {
      const at = line.indexOf(prefix);
      return at >= 0 && /^\d+(['/:]|$)/.test(line.slice(at + prefix.length)) && line.endsWith('No such file or directory');
    })
  );
}
