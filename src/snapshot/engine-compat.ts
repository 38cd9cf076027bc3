import type { EngineInfo } from '../engine/engine.js';
import type { Logger } from '../core/log.js';
import type { SnapshotSet } from './manifest.js';

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
