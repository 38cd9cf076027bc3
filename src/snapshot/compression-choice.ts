/** Which compression a run's layers and volumes get, when the input says `auto`. */
import type { BackupOptions } from '../core/options.js';
import type { Compression } from './manifest.js';

/**
 * zstd is faster and smaller, but engines before 23.0 can't pull zstd layers: `auto` keeps
 * a registry's snapshot images pullable by the engine that made them.
 */
export function chooseCompression(opts: Pick<BackupOptions, 'compression' | 'destinations'>, engineVersion: string): Compression {
  if (opts.compression !== 'auto') return opts.compression;
  const major = Number.parseInt(engineVersion, 10);
  const toRegistry = opts.destinations.some((d) => d.kind === 'registry');
  return toRegistry && !(major >= 23) ? 'gzip' : 'zstd';
}
