/**
 * Whether a volume may be read on this host instead of through the engine's archive
 * (`GET /containers/{id}/archive`, which reads every byte of a sparse file's holes), and the check
 * that the directory here is the one the engine would archive. The same trust model as the
 * writable layer's host reads (layer-upper.ts): a local engine, read as root, the container at
 * rest, and a few paths stat'ed both here and by the engine, every field equal.
 */
import { closeSync, constants, fstatSync, lstatSync, openSync, readdirSync, type BigIntStats } from 'node:fs';
import { isAbsolute, posix } from 'node:path';
import type { ContainerInspect } from '../engine/containers.js';
import type { Engine } from '../engine/engine.js';
import { hostEntry } from './layer-upper.js';
import { archiveRoot, rootStatFrom, sameRoot } from './volume-root.js';
import type { MountToTake } from './volumes.js';

/** What decides, before any file is looked at, whether a mount may be read here. */
export interface HostReadFacts {
  /** Where the engine is reached (`Engine.describe()`): unix:///var/run/docker.sock, tcp://…, ssh://…. */
  address: string;
  /** The container's state now (`State.Running`, `State.Paused` of its inspect). */
  running: boolean;
  paused: boolean;
  mount: MountToTake;
  /** The volume's driver (`GET /volumes/{name}` Driver); unused for a bind mount. */
  driver?: string;
  /** The volume's `Mountpoint`, or the bind mount's source. */
  hostPath?: string;
  /** Every path the engine mounts into the container: its Mounts' destinations, tmpfs mounts, network files. */
  mounted: string[];
  /** This process's uid (`process.getuid()`). */
  uid?: number;
  /** Set when the mount is a subpath of its volume (HostConfig.Mounts VolumeOptions.Subpath, API 1.45): the Mountpoint is not what it shows. */
  subpath?: boolean;
}

/** Files and directories the engine mounts into every container besides its Mounts (container.NetworkMounts, /dev/shm, swarm secrets). */
const ENGINE_MOUNTS = ['/etc/hosts', '/etc/resolv.conf', '/etc/hostname', '/dev/shm', '/run/secrets'];

/** A container path normalised, without a trailing slash. */
function clean(path: string): string {
  return posix.normalize(path).replace(/(.)\/+$/, '$1');
}

/** Whether the mount at `destination` of `info` shows a subpath of its volume (HostConfig.Mounts[].VolumeOptions.Subpath, Engine API 1.45). */
export function mountsSubpath(info: ContainerInspect, destination: string): boolean {
  const mounts = (info.HostConfig as { Mounts?: Array<{ Target?: string; VolumeOptions?: { Subpath?: string } }> } | undefined)?.Mounts ?? [];
  return mounts.some((m) => m.Target !== undefined && clean(m.Target) === clean(destination) && !!m.VolumeOptions?.Subpath);
}

/** The paths an engine mounts into `info`'s container: its Mounts, its HostConfig.Tmpfs, and ENGINE_MOUNTS. */
export function mountedPaths(info: ContainerInspect): string[] {
  const tmpfs = Object.keys((info.HostConfig as { Tmpfs?: Record<string, string> | null } | undefined)?.Tmpfs ?? {});
  return [...(info.Mounts ?? []).map((m) => m.Destination), ...tmpfs, ...ENGINE_MOUNTS];
}

/**
 * Why `f`'s mount must be read through the engine; undefined when the host may try (then
 * `trustHostDir` has the last word). A remote engine (anything but a unix socket: its paths are
 * another machine's), a container taken running (its files change under the read), not root
 * (the engine's files are root's), a volume driver other than `local` (its Mountpoint may not be
 * this host's), a subpath of a volume, and a mount with another mounted inside it (the engine's archive crosses into it;
 * the host directory has an empty directory there).
 */
export function hostReadBlocker(f: HostReadFacts): string | undefined {
  if (!f.address.startsWith('unix://')) return `the engine is reached at ${f.address}, not on a local socket`;
  if (f.running && !f.paused) return 'the container is taken running (neither paused nor stopped)';
  if (f.uid !== 0) return 'not run as root';
  if (f.mount.type === 'volume' && f.driver !== 'local') return `its volume driver is ${f.driver ?? 'unknown'}, not local`;
  if (f.subpath) return 'it shows a subpath of its volume';
  if (!f.hostPath || !isAbsolute(f.hostPath)) return 'the engine gives no host path for it';
  const dest = clean(f.mount.destination);
  const inside = f.mounted.map(clean).find((d) => d !== dest && d.startsWith(dest === '/' ? '/' : `${dest}/`));
  return inside ? `${inside} is mounted inside it` : undefined;
}

/**
 * A volume's directory here, open (`fd`, O_DIRECTORY|O_NOFOLLOW) and checked against the engine's
 * stat; the caller closes `fd`. `owner` settles later: undefined when the root's owner, mode and
 * mtime are those of the engine's archive header, else why not; what was read here must not be
 * used before it says undefined.
 */
export interface HostDir {
  fd: number;
  root: BigIntStats;
  /** The host path it was opened at. */
  path: string;
  owner: Promise<string | undefined>;
}

/** `/proc/self/fd/<fd>/`: a path relative to an open directory, as openat would take it (the directory is not looked up again by name). */
export function atDir(fd: number, name?: Buffer): Buffer {
  const dir = Buffer.from(`/proc/self/fd/${fd}/`);
  return name ? Buffer.concat([dir, name]) : dir;
}

/** Paths below the root compared with the engine's stat, besides the root itself. */
const PROBES = 3;

/** Whether a host lstat and the engine's stat agree on mode, size and mtime (to the nanosecond). */
async function sameStat(engine: Engine, id: string, path: string, st: BigIntStats, signal?: AbortSignal): Promise<boolean> {
  const host = hostEntry(st);
  const stat = await engine.statPath(id, path, signal);
  return !!host && !!stat && host.mode === stat.mode && host.size === stat.size && host.mtime === stat.mtime;
}

/**
 * Opens `hostPath` and checks it is the directory the engine archives at `destination` of
 * container `id`: the root and up to PROBES entries below it with the same mode, size and mtime
 * (nanoseconds) as the engine's stat (`HEAD …/archive`). Gives the open directory, or why not (a
 * sentence); throws only when `signal` is aborted. Its `owner` check (`ownerCheck`) runs meanwhile,
 * beside the caller's read: the engine takes ~50 ms to start an archive.
 */
export async function trustHostDir(engine: Engine, id: string, destination: string, hostPath: string, signal?: AbortSignal): Promise<HostDir | string> {
  let fd: number;
  try {
    fd = openSync(hostPath, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  } catch (err) {
    return `${hostPath} cannot be opened here as a directory (${(err as NodeJS.ErrnoException).code ?? String(err)})`;
  }
  try {
    const root = fstatSync(fd, { bigint: true });
    const why = await differs(engine, id, destination, fd, root, signal);
    if (!why) return { fd, root, path: hostPath, owner: ownerCheck(engine, id, destination, root, signal) };
    closeSync(fd);
    return why;
  } catch (err) {
    closeSync(fd);
    signal?.throwIfAborted();
    return `${hostPath} could not be compared with the engine's view (${(err as Error).message})`;
  }
}

/**
 * Undefined when the first header of the engine's archive of `destination` (read, then the stream
 * closed) has the owner, mode and mtime (seconds) of `root`, else why not: this catches a
 * user-namespaced engine, whose owners differ from the host's. Never rejects.
 */
async function ownerCheck(engine: Engine, id: string, destination: string, root: BigIntStats, signal?: AbortSignal): Promise<string | undefined> {
  try {
    const archive = await engine.getArchive(id, destination, signal);
    let head;
    try {
      head = await archiveRoot(archive);
    } finally {
      // Only its first header is wanted: closed, the engine stops sending it.
      archive.destroy();
    }
    return sameRoot(rootStatFrom(root), head)
      ? undefined
      : `${destination} has another owner, mode or time in the engine's archive (a user-namespaced engine?)`;
  } catch (err) {
    return `the engine's archive of ${destination} could not be read (${(err as Error).message})`;
  }
}

async function differs(engine: Engine, id: string, destination: string, fd: number, root: BigIntStats, signal?: AbortSignal): Promise<string | undefined> {
  const mismatch = `${destination} here is not what the engine sees there (mode, size or time differ)`;
  if (!(await sameStat(engine, id, destination, root, signal))) return mismatch;
  const names = (readdirSync(atDir(fd), { encoding: 'buffer' }) as Buffer[]).filter((n) => utf8(n) !== undefined).sort(Buffer.compare);
  const picks = [
    ...new Set(Array.from({ length: Math.min(PROBES, names.length) }, (_v, i) => names[Math.floor((i * (names.length - 1)) / Math.max(1, PROBES - 1))])),
  ];
  for (const name of picks) {
    const st = lstatSync(atDir(fd, name), { bigint: true });
    if (!(await sameStat(engine, id, posix.join(destination, utf8(name)!), st, signal))) return mismatch;
  }
  return undefined;
}

/** `raw` as a string when it is valid UTF-8 (what a tar name or a request path can carry here); undefined otherwise. */
export function utf8(raw: Buffer): string | undefined {
  const text = raw.toString('utf8');
  return Buffer.byteLength(text) === raw.length && Buffer.from(text, 'utf8').equals(raw) ? text : undefined;
}
