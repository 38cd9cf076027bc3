/**
 * The writable layer's paths stat'ed on this host, in the container's overlay2 upper directory,
 * instead of one engine request each: the engine serialises `HEAD /containers/{id}/archive` per
 * container (each takes the container's lock and mounts its volumes, ~1.2 ms here), which made
 * the layer's index (layer-index.ts) most of a paused window. Used only where it gives what the
 * engine's stat gives, byte for byte; everything else goes to the engine.
 */
import { lstat } from 'node:fs/promises';
import { closeSync, constants, lstatSync, openSync, type BigIntStats } from 'node:fs';
import { isAbsolute, join, posix } from 'node:path';
import type { ContainerInspect } from '../engine/containers.js';
import type { Engine } from '../engine/engine.js';
import { O_PATH } from '../util/open-flags.js';

/** A path's stat as the layer's index keeps it (layer-index.ts HostStat, less the whiteout flag). */
export interface HostStat {
  /** Go's os.FileMode. */
  mode: number;
  /** Bytes. */
  size: number;
  /** RFC 3339 with nanoseconds, UTC. */
  mtime: string;
  /** The inode's change time in ns since the epoch (decimal text), where the host stat it: the engine's stat does not give it. */
  ctimeNs?: string;
  /** The inode number in the upper directory (decimal text), where the host stat it: a file moved there from elsewhere (a directory renamed above it) keeps its times but not its inode. */
  ino?: string;
}

/** Go os.FileMode bits (io/fs) that os.Lstat sets on Linux (os/stat_linux.go fillFileStatFromSys). */
const GO = {
  dir: 0x80000000,
  symlink: 0x08000000,
  device: 0x04000000,
  namedPipe: 0x02000000,
  socket: 0x01000000,
  setuid: 0x00800000,
  setgid: 0x00400000,
  charDevice: 0x00200000,
  sticky: 0x00100000,
};
/** POSIX st_mode bits (sys/stat.h). */
const S = {
  fmt: 0o170000,
  sock: 0o140000,
  lnk: 0o120000,
  reg: 0o100000,
  blk: 0o060000,
  dir: 0o040000,
  chr: 0o020000,
  fifo: 0o010000,
  suid: 0o4000,
  sgid: 0o2000,
  svtx: 0o1000,
};

/** A POSIX st_mode as Go's os.FileMode (uint32), as the engine's stat reports it (Engine API ContainerPathStat.mode). */
export function goFileMode(mode: number): number {
  let m = mode & 0o777;
  const type = mode & S.fmt;
  if (type === S.blk) m |= GO.device;
  else if (type === S.chr) m |= GO.device | GO.charDevice;
  else if (type === S.dir) m |= GO.dir;
  else if (type === S.fifo) m |= GO.namedPipe;
  else if (type === S.lnk) m |= GO.symlink;
  else if (type === S.sock) m |= GO.socket;
  if (mode & S.sgid) m |= GO.setgid;
  if (mode & S.suid) m |= GO.setuid;
  if (mode & S.svtx) m |= GO.sticky;
  return m >>> 0;
}

/** The last second Go's JSON marshals (9999-12-31T23:59:59Z), in seconds since the epoch. */
const GO_JSON_MAX_SECONDS = 253402300799;
/** `YYYY-MM-DDTHH:MM:SS` by second: a walk meets the same few seconds over and over (files made together). */
const utcSeconds = new Map<number, string>();

/**
 * goUtcTime from its parts: whole `seconds` since the epoch and `nanos` (0–999,999,999), without a
 * BigInt (a walk of the upper directory formats one per path while the container is held).
 * Undefined outside years 1970–9999, as goUtcTime.
 */
export function goUtcTimeOf(seconds: number, nanos: number): string | undefined {
  if (!(seconds >= 0 && seconds <= GO_JSON_MAX_SECONDS) || !Number.isInteger(seconds)) return undefined;
  let day = utcSeconds.get(seconds);
  if (day === undefined) {
    if (utcSeconds.size >= 4096) utcSeconds.clear();
    day = new Date(seconds * 1000).toISOString().slice(0, 19);
    utcSeconds.set(seconds, day);
  }
  if (nanos === 0) return `${day}Z`;
  let frac = String(nanos).padStart(9, '0');
  let end = frac.length;
  while (frac.charCodeAt(end - 1) === 0x30) end--;
  frac = frac.slice(0, end);
  return `${day}.${frac}Z`;
}

/**
 * An mtime in nanoseconds since the epoch as Go's time.Time marshals to JSON in UTC (RFC 3339,
 * fraction to the nanosecond with trailing zeros dropped, `Z`). Undefined outside years 1970–9999
 * (before 1970 or where Go's JSON fails: left to the engine).
 */
export function goUtcTime(ns: bigint): string | undefined {
  if (ns < 0n) return undefined;
  const seconds = ns / 1_000_000_000n;
  if (seconds > BigInt(GO_JSON_MAX_SECONDS)) return undefined;
  return goUtcTimeOf(Number(seconds), Number(ns % 1_000_000_000n));
}

/**
 * An index entry from a host lstat, as the engine's stat of the same inode gives it; undefined when
 * it cannot be said (then the engine is asked). An overlay whiteout (a character device 0:0, the
 * kernel's overlayfs.rst "whiteouts and opaque directories") is a deletion the engine's stat would
 * not find: undefined too.
 */
export function hostEntry(st: BigIntStats): HostStat | undefined {
  if (st.isCharacterDevice() && st.rdev === 0n) return undefined;
  const mtime = goUtcTime(st.mtimeNs);
  return mtime === undefined
    ? undefined
    : { mode: goFileMode(Number(st.mode)), size: Number(st.size), mtime, ctimeNs: String(st.ctimeNs), ino: String(st.ino) };
}

/** The container's upper directory on this host, and which container paths it can answer for. */
export interface UpperDir {
  root: string;
  /** Directories of `root` (relative paths) already seen to be real directories, not symlinks: each is lstat'ed once a scan. */
  realDirs: Set<string>;
  /**
   * True when the engine's stat of `path` would not see the upper directory's entry: the path is,
   * or is under, something the engine mounts before it stats (the container's volumes and binds,
   * and its /etc/hosts, /etc/resolv.conf and /etc/hostname: daemon.mountVolumes).
   */
  shadowed(path: string): boolean;
  /** Its opaque directories (relative paths, UTF-8: layer-upper-tar.ts opaqueDirs), when a walk of it in this hold read them (layer-index.ts). */
  opaque?: Set<string>;
  /**
   * The container's tmpfs mount points that no lower layer has (relative paths, no leading `/`):
   * the runtime made them at its first start. Left out of the layer made here while they are
   * empty (layer-upper-tar.ts): runc gives a tmpfs the mode of the directory it mounts on when
   * there is one (libcontainer rootfs_linux.go, mountToRootfs), so kept, a restored `--tmpfs /tmp`
   * (1777) would come back 0755, the mode runc made the mount point with.
   */
  tmpfsMadePoints?: Set<string>;
}

/** The files the engine bind-mounts into every container besides its Mounts (container.NetworkMounts). */
const NETWORK_FILES = ['/etc/hosts', '/etc/resolv.conf', '/etc/hostname'];

/**
 * Whether `path` is one of the files the engine bind-mounts into every container (container.NetworkMounts):
 * their mount targets may sit in the upper directory (Engine 26.1 copies them up), but what the
 * container sees there is the engine's file, written again at each start; the engine's list of
 * changes leaves them out.
 */
export function isNetworkFile(path: string): boolean {
  return NETWORK_FILES.includes(path);
}

async function lstatOrUndefined(path: string): Promise<BigIntStats | undefined> {
  return lstat(path, { bigint: true }).catch(() => undefined);
}

/**
 * The upper directory of a container on overlay2 (`GraphDriver.Data.UpperDir`, Engine API
 * ContainerInspect) when it is a directory readable here (the engine on this host, run as root or
 * rootless as this user), and no mount destination goes through a symlink in the container's
 * layers (the engine resolves it; a prefix check could not). Undefined otherwise: then every path
 * is stat'ed by the engine. Whether this host's directory is the engine's is not told here: the
 * caller compares a few paths with the engine's stat.
 */
export async function upperDirOf(info: ContainerInspect): Promise<UpperDir | undefined> {
  const driver = info.GraphDriver as { Name?: string; Data?: Record<string, string | undefined> | null } | undefined;
  const root = driver?.Data?.UpperDir;
  if (driver?.Name !== 'overlay2' || !root || !isAbsolute(root)) return undefined;
  const top = await lstatOrUndefined(root);
  if (!top?.isDirectory()) return undefined;
  const lowers = (driver.Data?.LowerDir ?? '').split(':').filter((d) => isAbsolute(d));
  const mounts = [...(info.Mounts ?? []).map((m) => posix.normalize(m.Destination)), ...NETWORK_FILES];
  for (const dest of mounts) if (await throughSymlink(dest, [root, ...lowers])) return undefined;
  const shadowed = (path: string) => mounts.some((m) => path === m || path.startsWith(m === '/' ? '/' : `${m}/`));
  const tmpfsMadePoints = new Set<string>();
  for (const dest of tmpfsDestinations(info)) {
    const lower = await Promise.all(lowers.map((l) => lstatOrUndefined(join(l, dest))));
    if (dest !== '/' && lower.every((st) => st === undefined)) tmpfsMadePoints.add(dest.slice(1));
  }
  return { root, shadowed, realDirs: new Set(), tmpfsMadePoints };
}

/**
 * Where the container mounts a tmpfs (absolute, normalised): `HostConfig.Tmpfs` (`--tmpfs
 * PATH[:OPTIONS]`, keyed by path) and `HostConfig.Mounts` of type `tmpfs` (Engine API HostConfig).
 */
export function tmpfsDestinations(info: Pick<ContainerInspect, 'HostConfig'>): string[] {
  const host = (info.HostConfig ?? {}) as { Tmpfs?: Record<string, string> | null; Mounts?: Array<{ Type?: string; Target?: string }> | null };
  const paths = [...Object.keys(host.Tmpfs ?? {}), ...(host.Mounts ?? []).filter((m) => m.Type === 'tmpfs' && m.Target).map((m) => m.Target!)];
  return [...new Set(paths.filter((p) => isAbsolute(p)).map((p) => posix.normalize(p).replace(/(.)\/+$/, '$1')))];
}

/** Whether `path` or one of its ancestors is a symlink in the topmost of `layers` (upper first) that has it. */
async function throughSymlink(path: string, layers: string[]): Promise<boolean> {
  const parts = path.split('/').filter(Boolean);
  for (let i = 1; i <= parts.length; i++) {
    const prefix = `/${parts.slice(0, i).join('/')}`;
    for (const layer of layers) {
      let st: BigIntStats | undefined;
      try {
        st = await lstat(join(layer, prefix), { bigint: true });
      } catch (err) {
        // Not there: the next layer down says. Unreadable (EACCES, …): it cannot be told, so say yes.
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        return true;
      }
      if (st.isSymbolicLink()) return true;
      break;
    }
  }
  return false;
}

/**
 * A path's entry from the upper directory; undefined when the host cannot say it as the engine
 * would (shadowed, missing, unreadable, out-of-range time). Synchronous: a local lstat (~5 µs)
 * costs less than a turn through the thread pool (a layer's index holds at most MAX_LAYER_PATHS: ~1 s).
 */
export function upperEntry(upper: UpperDir, path: string): HostStat | undefined {
  if (upper.shadowed(path)) return undefined;
  if (!realParents(upper, path)) return undefined;
  let st: BigIntStats | undefined;
  try {
    st = lstatSync(join(upper.root, path), { bigint: true, throwIfNoEntry: false });
  } catch {
    return undefined;
  }
  return st && hostEntry(st);
}

/**
 * Entries of an upper directory whose container may be running: each directory on the way to a
 * path is opened from its parent's descriptor without following a symlink (O_PATH, O_NOFOLLOW,
 * O_DIRECTORY, through /proc/self/fd), and the path is lstat'ed below that descriptor. A process of
 * the container that swaps a directory for a symlink between two calls makes the open fail (the
 * path then goes to the engine); it can never have this host stat a file outside the upper
 * directory, as upperEntry's realParents check, made once before the lstat, could while the
 * container runs. The stats only say whether a path changed: the data is read through the engine.
 * `close()` closes every descriptor it opened; call it once done.
 */
export class UpperStats {
  private readonly dirs = new Map<string, number | null>();

  constructor(private readonly upper: UpperDir) {}

  /** The entry of `path` (absolute in the container), or undefined when the host cannot say it as the engine would (shadowed, missing, a parent not a real directory, an out-of-range time). */
  entry(path: string): HostStat | undefined {
    if (this.upper.shadowed(path)) return undefined;
    const parts = path.split('/').filter(Boolean);
    const last = parts.pop();
    if (last === undefined) return undefined;
    const fd = this.dir(parts);
    if (fd === undefined) return undefined;
    try {
      const st = lstatSync(`/proc/self/fd/${fd}/${last}`, { bigint: true, throwIfNoEntry: false });
      return st && hostEntry(st);
    } catch {
      return undefined;
    }
  }

  /** Closes the descriptors it opened. */
  close(): void {
    for (const fd of this.dirs.values()) if (fd !== null) closeSync(fd);
    this.dirs.clear();
  }

  /** A descriptor of the directory `parts` names below the top, each component opened from the one above it; undefined when one is not a real directory. */
  private dir(parts: string[]): number | undefined {
    let key = '';
    let fd = this.open(key, () => openSync(this.upper.root, O_PATH | constants.O_DIRECTORY | constants.O_NOFOLLOW));
    for (const part of parts) {
      if (fd === undefined) return undefined;
      const parent: number = fd;
      key = `${key}/${part}`;
      fd = this.open(key, () => openSync(`/proc/self/fd/${parent}/${part}`, O_PATH | constants.O_DIRECTORY | constants.O_NOFOLLOW));
    }
    return fd;
  }

  private open(key: string, how: () => number): number | undefined {
    const known = this.dirs.get(key);
    if (known !== undefined) return known ?? undefined;
    let fd: number | null = null;
    try {
      fd = how();
    } catch {
      // ENOTDIR or ELOOP (a symlink), ENOENT: the engine stats what is below.
    }
    this.dirs.set(key, fd);
    return fd ?? undefined;
  }
}

/**
 * Whether every ancestor of `path` is a real directory in the upper directory. A host lstat follows
 * symlinks in all but the last component, and an absolute link target resolves against the host's
 * root: a directory swapped for a symlink to `/` would have the host stat its own files. The
 * engine resolves such a link inside the container instead, so a path under one goes to the engine.
 */
function realParents(upper: UpperDir, path: string): boolean {
  const parts = path.split('/').filter(Boolean);
  let dir = '';
  for (const part of parts.slice(0, -1)) {
    dir = `${dir}/${part}`;
    if (upper.realDirs.has(dir)) continue;
    let st: BigIntStats | undefined;
    try {
      st = lstatSync(join(upper.root, dir), { bigint: true, throwIfNoEntry: false });
    } catch {
      return false;
    }
    if (!st?.isDirectory()) return false;
    upper.realDirs.add(dir);
  }
  return true;
}

/** Paths compared with the engine's stat before the upper directory is trusted. */
const PROBES = 3;

/**
 * The container's upper directory (upperDirOf) once it has answered as the engine does
 * (probesAgree on `paths`). An engine elsewhere (another host, a VM), one whose clock zone is not
 * UTC (its stat's mtime has an offset) or an inspect that fails gives undefined: then the engine
 * stats every path. `running`: the container may be running, so the probes stat through
 * directory descriptors (UpperStats), not by path. Throws only when `signal` is aborted (its reason).
 */
export async function trustedUpperDir(engine: Engine, id: string, paths: string[], signal?: AbortSignal, running = false): Promise<UpperDir | undefined> {
  let stats: UpperStats | undefined;
  try {
    const upper = await upperDirOf(await engine.inspectContainer(id, signal));
    if (!upper) return undefined;
    stats = running ? new UpperStats(upper) : undefined;
    const entry = stats ? (path: string) => stats!.entry(path) : (path: string) => upperEntry(upper, path);
    return (await probesAgree(engine, id, upper, paths, signal, entry)) ? upper : undefined;
  } catch {
    signal?.throwIfAborted();
    return undefined;
  } finally {
    stats?.close();
  }
}

/**
 * Whether `upper` answers as the engine does: up to PROBES of `paths` (spread over the list; not
 * shadowed) stat'ed both ways (`entry`, upperEntry by default; the engine's `HEAD /containers/{id}/archive`), mode,
 * size and mtime equal to the nanosecond. False when no path can be probed or a stat fails; throws
 * only when `signal` is aborted (its reason).
 */
export async function probesAgree(
  engine: Engine,
  id: string,
  upper: UpperDir,
  paths: string[],
  signal?: AbortSignal,
  entry: (path: string) => HostStat | undefined = (path) => upperEntry(upper, path),
): Promise<boolean> {
  try {
    const open = paths.filter((p) => !upper.shadowed(p));
    if (open.length === 0) return false;
    const picks = [...new Set(Array.from({ length: PROBES }, (_v, i) => open[Math.floor((i * (open.length - 1)) / Math.max(1, PROBES - 1))]))];
    for (const path of picks) {
      const host = entry(path);
      const stat = await engine.statPath(id, path, signal);
      if (!host || !stat || host.mode !== stat.mode || host.size !== stat.size || host.mtime !== stat.mtime) return false;
    }
    return true;
  } catch {
    signal?.throwIfAborted();
    return false;
  }
}
