import { posix } from 'node:path';
import type { ContainerInspect } from '../engine/containers.js';
import type { ContainerRecord, VolumeRecord } from './manifest.js';
import { mountsToTake } from './volumes.js';

/**
 * Mount points of `c` that come from another container through `--volumes-from`: those it does
 * not declare itself (its binds, mounts and `Config.Volumes`). They belong to that container and
 * are restored through it, never through `c`.
 */
export function inheritedMounts(c: ContainerRecord): Set<string> {
  const hc = c.spec.hostConfig;
  if (!((hc.VolumesFrom as string[] | null) ?? []).length) return new Set();
  const declared = new Set<string>([
    ...((hc.Binds as string[] | null) ?? []).map((b) => b.split(':')[1]),
    ...((hc.Mounts as Array<{ Target?: string }> | null) ?? []).map((m) => m.Target ?? ''),
    ...Object.keys((c.spec.config.Volumes as Record<string, unknown> | null) ?? {}),
  ]);
  return new Set(c.volumes.filter((v) => !declared.has(v.destination)).map((v) => v.destination));
}

/**
 * The subpath of its volume that `c` mounts at `destination` (HostConfig.Mounts[].VolumeOptions.Subpath,
 * Engine API 1.45), without leading or trailing slashes; undefined for a mount of the whole volume.
 * The set holds what the container saw there: the subpath's content, not the volume's.
 */
export function mountedSubpath(c: ContainerRecord, destination: string): string | undefined {
  const trim = (p: string) => p.replace(/\/+$/, '') || '/';
  const mounts = (c.spec.hostConfig.Mounts as Array<{ Target?: string; VolumeOptions?: { Subpath?: string } | null }> | null) ?? [];
  const sub = mounts.find((m) => m.Target !== undefined && trim(m.Target) === trim(destination))?.VolumeOptions?.Subpath;
  // As the engine takes it: `a/../b` is `b`, `a/..` the whole volume (one that leaves it, `../x`, it refuses).
  const clean = sub ? posix.normalize(sub).replace(/^\/+|\/+$/g, '') : '';
  return clean && clean !== '.' && !clean.startsWith('..') ? clean : undefined;
}

/** A local-driver volume mounted as tmpfs: its content lives in memory only, and nothing on disk can be clobbered. */
export function isTmpfs(v: VolumeRecord): boolean {
  return v.driverOptions?.type === 'tmpfs' || v.driverOptions?.device === 'tmpfs';
}

/**
 * A container's own anonymous volumes (from its Engine API inspect): those its configuration or
 * image declares, not those it takes from another container with `--volumes-from` (they are that
 * container's). Each is its mount point and the engine's name of the volume.
 */
export function anonymousVolumes(info: ContainerInspect): Array<{ destination: string; volume: string }> {
  const declared = new Set([
    ...Object.keys((info.Config?.Volumes as Record<string, unknown> | null) ?? {}),
    ...((info.HostConfig?.Mounts as Array<{ Type?: string; Source?: string; Target?: string }> | null) ?? [])
      .filter((m) => m.Type === 'volume' && !m.Source)
      .map((m) => m.Target ?? ''),
  ]);
  return mountsToTake(info, { includeVolumes: true, includeBindMounts: false })
    .filter((m) => m.anonymous && declared.has(m.destination))
    .map((m) => ({ destination: m.destination, volume: m.name }));
}
