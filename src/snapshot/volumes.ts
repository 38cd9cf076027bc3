import type { ContainerInspect } from '../engine/containers.js';

export interface MountToTake {
  type: 'volume' | 'bind';
  name: string;
  destination: string;
  source?: string;
  anonymous: boolean;
}

interface MountPoint {
  Type?: string;
  Name?: string;
  Source?: string;
  Destination: string;
}

/** Named volumes are those the container's options refer to by name; the rest are anonymous. */
function namedVolumes(info: ContainerInspect): Set<string> {
  const names = new Set<string>();
  for (const bind of (info.HostConfig?.Binds as string[] | null) ?? []) {
    const [source] = bind.split(':');
    if (source && !source.startsWith('/')) names.add(source);
  }
  for (const mount of (info.HostConfig?.Mounts as Array<{ Type?: string; Source?: string }> | undefined) ?? []) {
    if (mount.Type === 'volume' && mount.Source) names.add(mount.Source);
  }
  return names;
}

export function mountsToTake(info: ContainerInspect, opts: { includeVolumes: boolean; includeBindMounts: boolean }): MountToTake[] {
  const named = namedVolumes(info);
  const mounts = (info.Mounts as MountPoint[]) ?? [];
  const out: MountToTake[] = [];
  for (const m of mounts) {
    if (m.Type === 'volume' && opts.includeVolumes && m.Name) {
      out.push({ type: 'volume', name: m.Name, destination: m.Destination, anonymous: !named.has(m.Name) });
    } else if (m.Type === 'bind' && opts.includeBindMounts && m.Source) {
      out.push({ type: 'bind', name: '', destination: m.Destination, source: m.Source, anonymous: false });
    }
  }
  return out.sort((a, b) => a.destination.localeCompare(b.destination));
}
