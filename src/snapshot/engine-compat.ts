import type { EngineInfo } from '../engine/engine.js';
import type { Logger } from '../core/log.js';
import type { ContainerRecord, SnapshotSet } from './manifest.js';
import { apiAtLeast, primaryNetwork } from './spec.js';

/** First Engine major version that pulls zstd-compressed layers (Docker Engine 23.0 release notes). */
export const ZSTD_ENGINE_MAJOR = 23;

/** The major version of an Engine version string ("26.1.5+dfsg1" → 26); NaN when it has none. */
export function engineMajor(version: string): number {
  return Number.parseInt(version, 10);
}

/**
 * What a set uses that the engine it is restored onto lacks, one sentence each; empty unless that
 * engine is older (by major version) than the one the set was made on. Rules: zstd image layers
 * need Engine ≥ 23 to be pulled (the restore itself loads them decompressed).
 */
export function engineCompatWarnings(set: Pick<SnapshotSet, 'tag' | 'source' | 'containers'>, target: Pick<EngineInfo, 'version'>): string[] {
  const from = engineMajor(set.source.engine.version);
  const to = engineMajor(target.version);
  if (!(to < from)) return [];
  const warnings: string[] = [];
  const zstd = set.containers.some((c) => c.image.layers.some((l) => l.mediaType.endsWith('+zstd')));
  if (zstd && to < ZSTD_ENGINE_MAJOR) {
    warnings.push(
      `Snapshot ${set.tag} was made on Engine ${set.source.engine.version} with zstd image layers, which Engine ${target.version} ` +
        `cannot pull (Engine ${ZSTD_ENGINE_MAJOR} or later can): this restore loads them decompressed, ` +
        `but the set's images pulled from a registry with docker pull will fail on this engine.`,
    );
  }
  return warnings;
}

/** Logs a warning for each feature of the set the target engine lacks (see engineCompatWarnings). */
export async function warnEngineCompat(
  set: SnapshotSet,
  engine: { info(): Promise<Pick<EngineInfo, 'version'>> },
  log: Pick<Logger, 'warning'>,
): Promise<void> {
  for (const w of engineCompatWarnings(set, await engine.info())) log.warning(w);
}

/** The first Engine release of each Engine API version named below (Engine API version history). */
const ENGINE_OF_API: Record<string, string> = { '1.42': '23.0', '1.43': '24.0', '1.44': '25.0', '1.45': '26.0', '1.46': '27.0' };

/**
 * A field of a container's configuration that an engine below `minApi` drops in silence at create
 * (its JSON decoder ignores fields it does not know). `refuse`: restoring without it would change
 * what the container sees of its data, so the restore is refused before any change; else a warning.
 */
export interface ApiGap {
  container: string;
  /** The field, as the Engine API names it: `HostConfig.Annotations`, `Mounts[/data].VolumeOptions.Subpath`. */
  field: string;
  /** The Engine API version that brought it in ("1.45"). */
  minApi: string;
  refuse: boolean;
  /** What the restored container lacks without it, as a clause. */
  effect: string;
}

interface MountSpec {
  Type?: string;
  Source?: string;
  Target?: string;
  VolumeOptions?: { Subpath?: string };
  BindOptions?: { CreateMountpoint?: boolean; ReadOnlyNonRecursive?: boolean; ReadOnlyForceRecursive?: boolean };
  TmpfsOptions?: { Options?: unknown[] };
}

/**
 * The fields of each container's configuration that an engine speaking Engine API `apiVersion`
 * ("1.41") at most would drop at create, from the Engine API version history: Annotations (1.43),
 * Healthcheck.StartInterval (1.44), a MAC address on a network other than the one created on (1.44:
 * before it only Config.MacAddress, for that one), a bind's CreateMountpoint (1.42) and
 * ReadOnlyForceRecursive (1.44), a read-only bind of a set taken at API `fromApi` ≥ 1.44 (read-only
 * recursively there, not below 1.44), a volume's Subpath (1.45: refused, the container would see
 * the whole volume), a tmpfs mount's Options (1.46). Empty on a newer engine.
 */
export function apiGaps(containers: ReadonlyArray<Pick<ContainerRecord, 'name' | 'spec'>>, apiVersion: string, fromApi?: string): ApiGap[] {
  const gaps: ApiGap[] = [];
  for (const { name, spec } of containers) {
    const gap = (minApi: string, field: string, effect: string, refuse = false) => {
      if (!apiAtLeast(apiVersion, minApi)) gaps.push({ container: name, field, minApi, refuse, effect });
    };
    const annotations = spec.hostConfig.Annotations as Record<string, string> | null | undefined;
    if (annotations && Object.keys(annotations).length > 0) gap('1.43', 'HostConfig.Annotations', 'the restored container has no annotations');
    const health = spec.config.Healthcheck as { StartInterval?: number } | undefined;
    if (health?.StartInterval) gap('1.44', 'Healthcheck.StartInterval', 'its health check probes at the usual interval while it starts');
    const primary = primaryNetwork(spec);
    for (const n of spec.networks)
      if (n !== primary && n.macAddress) gap('1.44', `network ${n.name} MacAddress`, `it gets another MAC address on network ${n.name}`);
    for (const m of (spec.hostConfig.Mounts as MountSpec[] | null | undefined) ?? []) {
      const at = `Mounts[${m.Target ?? '?'}]`;
      if (m.VolumeOptions?.Subpath)
        gap(
          '1.45',
          `${at}.VolumeOptions.Subpath`,
          `the container would see the whole volume ${m.Source ?? ''} at ${m.Target ?? '?'}, not its subpath ${m.VolumeOptions.Subpath}`,
          true,
        );
      if (m.BindOptions?.CreateMountpoint) gap('1.42', `${at}.BindOptions.CreateMountpoint`, `the restore fails if the host path ${m.Source ?? ''} is missing`);
      if (m.BindOptions?.ReadOnlyForceRecursive) gap('1.44', `${at}.BindOptions.ReadOnlyForceRecursive`, 'the mounts below that bind mount are writable');
      // From API 1.44 a read-only bind is read-only recursively unless it says otherwise; before, never (moby: older clients get ReadOnlyNonRecursive).
      else if (m.Type === 'bind' && (m as { ReadOnly?: boolean }).ReadOnly && !m.BindOptions?.ReadOnlyNonRecursive && fromApi && apiAtLeast(fromApi, '1.44'))
        gap('1.44', `${at} read-only recursively`, 'the mounts below that read-only bind mount are writable');
      if (m.TmpfsOptions?.Options?.length) gap('1.46', `${at}.TmpfsOptions.Options`, 'that tmpfs is mounted without its options');
    }
  }
  return gaps;
}

/** An ApiGap in words: what the engine drops, which engine keeps it, and what that changes. */
export function describeGap(g: ApiGap, target: Pick<EngineInfo, 'version' | 'apiVersion'>): string {
  const newer = ENGINE_OF_API[g.minApi];
  return `${g.container}: Engine ${target.version} (API ${target.apiVersion}) drops ${g.field} (API ${g.minApi}${newer ? `, Engine ${newer}` : ''} and later keep it): ${g.effect}`;
}
