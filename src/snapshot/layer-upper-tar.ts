/**
 * A container's whole writable layer as a tar made on this host from its overlay2 upper directory,
 * as the engine's overlay2 driver diffs it for a commit (moby daemon/graphdriver/overlay2 Diff:
 * pkg/archive TarWithOptions(upperDir, WhiteoutFormat: OverlayWhiteoutFormat), Engine 20.10 and
 * 26.1): every path below the upper directory (not the directory itself), depth first in byte
 * order, with what hostTar (volume-tar.ts) gives a path (numeric owners, mode bits, mtimes to the
 * second, symlinks, later names of an inode as hard links, `security.capability`); a whiteout (a
 * character device 0:0) as an empty file `.wh.NAME` of mode 0600; a directory whose
 * `trusted.overlay.opaque` is `y` followed by an empty file `.wh..wh..opq` (overlayWhiteoutConverter
 * ConvertWrite). Used only while the container is held, on an upper directory layer-upper.ts trusts.
 */
import { execFile } from 'node:child_process';
import { closeSync, constants, fstatSync, openSync, readFileSync, type BigIntStats } from 'node:fs';
import { posix } from 'node:path';
import type { Readable } from 'node:stream';
import { goneOrEmptyDir, isEngineScratch, vanishedScratchOnly } from './engine-scratch.js';
import { cLocale, getfattrClause, parseGetfattr } from './getfattr.js';
import type { UpperDir } from './layer-upper.js';
import { hostTar, readCapabilities, type EntryChange, type Header } from './volume-tar.js';

/** overlayfs xattrs (kernel overlayfs.rst) that do not change what a path's upper entry means for a diff. */
const HARMLESS = new Set(['trusted.overlay.origin', 'trusted.overlay.impure', 'trusted.overlay.nlink', 'trusted.overlay.upper', 'trusted.overlay.uuid']);
const OPAQUE = 'trusted.overlay.opaque';

/**
 * `trusted.overlay.*` attributes under `root` (path relative to it, in UTF-8 → name → base64),
 * read with getfattr (symlinks not followed). Rejects when getfattr is missing or fails, or with an
 * AbortError once `signal` is aborted (getfattr killed).
 */
function overlayXattrs(root: string, signal?: AbortSignal): Promise<Map<string, Record<string, string>>> {
  return new Promise((resolve, reject) => {
    const args = ['--absolute-names', '-R', '-P', '-h', '-d', '-m', '^trusted\\.overlay\\.', '-e', 'base64', root];
    // Exit 1 for nothing but an engine's directory of a moment gone mid-walk (engine-scratch.ts): the rest of its output stands.
    execFile('getfattr', args, { maxBuffer: 1 << 28, encoding: 'latin1', env: cLocale(), ...(signal ? { signal } : {}) }, (err, stdout, stderr) =>
      err && !(err.code === 1 && vanishedScratchOnly(stderr, root)) ? reject(err) : resolve(parseGetfattr(stdout, root)),
    );
  });
}

/**
 * The relative paths (UTF-8) of the opaque directories of the upper directory `root` (opaqueDirs of
 * its overlay attributes), or why they cannot be told (one clause): getfattr missing or failing,
 * or an attribute opaqueDirs refuses. The caller checks overlayAttrsBlocker first: without
 * CAP_SYS_ADMIN getfattr lists nothing and this would find no opaque directory. Never rejects:
 * once `signal` is aborted, getfattr is killed and the clause says so (the caller checks the signal).
 */
export async function upperOpaqueDirs(root: string, signal?: AbortSignal): Promise<Set<string> | string> {
  try {
    return opaqueDirs(await overlayXattrs(root, signal));
  } catch (err) {
    return getfattrClause(err as NodeJS.ErrnoException);
  }
}

/**
 * The relative paths (UTF-8) of opaque directories under `root`, or why the upper directory cannot
 * be diffed here as the engine would: a `trusted.overlay.redirect` (a renamed directory) or
 * `trusted.overlay.metacopy` (a file whose data is in a lower layer), an opaque value other than
 * `y`, or any other overlay attribute not known to be harmless.
 */
export function opaqueDirs(xattrs: Map<string, Record<string, string>>): Set<string> | string {
  const opaque = new Set<string>();
  for (const [rel, attrs] of xattrs) {
    for (const [name, value] of Object.entries(attrs)) {
      if (HARMLESS.has(name)) continue;
      if (name === OPAQUE && Buffer.from(value, 'base64').toString('latin1') === 'y') {
        if (rel !== '.') opaque.add(rel);
        continue;
      }
      return `/${rel === '.' ? '' : rel} has ${name}${name === OPAQUE ? ' other than y' : ''}`;
    }
  }
  return opaque;
}

/** What overlayChange reads of an entry's lstat. */
type OverlayStat = Pick<BigIntStats, 'dev' | 'ino' | 'nlink' | 'rdev'> & { isCharacterDevice(): boolean; isDirectory(): boolean };

/**
 * hostTar's entry change for an overlay upper directory (overlayWhiteoutConverter.ConvertWrite):
 * a character device 0:0 becomes `.wh.NAME`, an empty file of mode 0600 with its owner and mtime;
 * an opaque directory (its path in `opaque`) gets `.wh..wh..opq` after it, an empty file with its
 * owner and permission bits.
 */
export function overlayChange(opaque: Set<string>): (st: OverlayStat, h: Header, rel: string) => EntryChange | undefined {
  // The kernel links whiteouts to one inode (overlayfs since Linux 5.8): moby's archive still finds
  // the later ones hard links first, and keeps the first one's name (unrenamed) as their link name.
  const seen = new Map<string, string>();
  return (st, h, rel) => {
    if (st.isCharacterDevice() && st.rdev === 0n) {
      const dir = posix.dirname(h.name);
      const name = `${dir === '.' ? '' : `${dir}/`}.wh.${posix.basename(h.name)}`;
      const key = `${st.dev}:${st.ino}`;
      const first = st.nlink > 1n ? seen.get(key) : undefined;
      if (st.nlink > 1n && first === undefined) seen.set(key, h.name);
      return { replace: { ...h, name, type: 'file', size: 0, mode: 0o600, ...(first !== undefined ? { linkname: first } : {}) } };
    }
    if (st.isDirectory() && opaque.has(Buffer.from(rel, 'latin1').toString('utf8'))) {
      const pax = { ...(h.pax?.uid ? { uid: h.pax.uid } : {}), ...(h.pax?.gid ? { gid: h.pax.gid } : {}) };
      const marker: Header = {
        name: `${h.name}.wh..wh..opq`,
        type: 'file',
        size: 0,
        // The regular-file type bit keeps a mode of 000 from reading as none given (volume-tar.ts header).
        mode: ((h.mode ?? 0) & 0o777) | 0o100000,
        uid: h.uid,
        gid: h.gid,
        mtime: new Date(0),
        ...(Object.keys(pax).length ? { pax } : {}),
      };
      return { after: [marker] };
    }
    return undefined;
  };
}

/**
 * The writable layer's tar from `upper` (streamed; the caller spools it), or why it is not made
 * here (one clause): not root, or without CAP_SYS_ADMIN (`capEff`: effectiveCapabilities); the upper directory not owned by root (a user-namespaced or
 * rootless engine, whose owners are not the layer's); overlay attributes this diff does not
 * reproduce (opaqueDirs); getfattr missing or failing. The stream fails with HostReadError
 * (volume-tar.ts) where a path cannot be read as the engine would (a name not in UTF-8, …), or with
 * `signal`'s reason once it is aborted (the walk stops at its next entry or MiB read); the promise
 * rejects with that reason when the cancel comes while getfattr runs (killed).
 */
export async function upperLayerTar(
  upper: UpperDir,
  signal?: AbortSignal,
  uid = process.getuid?.(),
  capEff = effectiveCapabilities(),
): Promise<Readable | string> {
  const blocked = overlayAttrsBlocker(uid, capEff);
  if (blocked) return blocked;
  let fd: number;
  try {
    fd = openSync(upper.root, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  } catch (err) {
    return `its upper directory cannot be opened (${(err as NodeJS.ErrnoException).code ?? String(err)})`;
  }
  try {
    const root = fstatSync(fd, { bigint: true });
    if (root.uid !== 0n || root.gid !== 0n)
      throw new Reason(`its upper directory is owned by ${root.uid}:${root.gid}, not root (a user-namespaced or rootless engine?)`);
    // The opaque directories the layer's walk read in this hold (layer-index.ts), else read now.
    // A cancel kills both getfattr runs: the container is not kept held until they end.
    const [caps, opaque] = await Promise.all([
      readCapabilities(upper.root, undefined, { containerRoot: true, signal }),
      upper.opaque ?? overlayXattrs(upper.root, signal).then(opaqueDirs),
    ]).catch((err: NodeJS.ErrnoException) => {
      signal?.throwIfAborted();
      throw new Reason(getfattrClause(err));
    });
    if (typeof opaque === 'string') throw new Reason(opaque);
    return hostTar({ fd, root }, '', caps, {
      bare: true,
      change: overlayChange(opaque),
      // The engine's own directory of a moment, and a tmpfs mount point the runtime made (UpperDir.tmpfsMadePoints): each while empty.
      skip: (rel) => (isEngineScratch(`/${rel}`) || (upper.tmpfsMadePoints?.has(rel) ?? false)) && goneOrEmptyDir(posix.join(upper.root, rel)),
      signal,
    });
  } catch (err) {
    closeSync(fd);
    if (err instanceof Reason) return err.message;
    throw err;
  }
}

class Reason extends Error {}

/**
 * Why this process cannot read an upper directory's overlay attributes (`trusted.overlay.*`),
 * or undefined when it can: it must run as root (`uid`) with CAP_SYS_ADMIN in `capEff`
 * (effectiveCapabilities). Without it the kernel hides trusted.* attributes: getfattr lists none
 * and exits 0, so opaque directories (and redirects) would be missed without a word.
 */
export function overlayAttrsBlocker(uid = process.getuid?.(), capEff = effectiveCapabilities()): string | undefined {
  if (uid !== 0) return 'not run as root';
  if (capEff === undefined || (capEff & CAP_SYS_ADMIN) === 0n) return 'run without CAP_SYS_ADMIN (overlay attributes cannot be read)';
  return undefined;
}

/** CAP_SYS_ADMIN's bit in a capability set (linux/capability.h: 21). */
const CAP_SYS_ADMIN = 1n << 21n;

/** This process's effective capabilities (CapEff of /proc/self/status, proc(5)); undefined where not readable. */
export function effectiveCapabilities(status?: string): bigint | undefined {
  try {
    const text = status ?? readFileSync('/proc/self/status', 'latin1');
    const hex = /^CapEff:\s*([0-9a-f]+)$/im.exec(text)?.[1];
    return hex === undefined ? undefined : BigInt(`0x${hex}`);
  } catch {
    return undefined;
  }
}
