/** What a backup run is given, and the error its phases throw. */
import { errorMessage, type Logger } from '../core/log.js';
import type { Engine } from '../engine/engine.js';
import type { Destination } from '../destinations/types.js';
import type { Journal } from '../core/journal.js';
import type { Provenance } from '../core/provenance.js';
import { meterWith, type Meter } from '../util/progress.js';
import type { StoreTarget } from './blobs.js';

export interface BackupContext {
  engine: Engine;
  journal?: Journal;
  destinations: Destination[];
  log: Logger;
  /** Read for RUNNER_TEMP (the spool) and the lock directory; not for provenance (given below). */
  env?: NodeJS.ProcessEnv;
  /** What the set document records as its source's revision and run (none when absent). */
  provenance?: Provenance;
  now?: () => Date;
  /** Aborted when the run is cancelled: the pipeline stops, and puts back what it changed. */
  signal?: AbortSignal;
  /** Reports long transfers; a line to `log` every 5 s when absent. */
  meter?: Meter;
}

export class BackupError extends Error {
  override name = 'BackupError';
}

/** Runs one phase of a container's backup; its errors say which phase. */
export async function phase<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw new BackupError(`${what}: ${errorMessage(err)}`, { cause: err });
  }
}

/** The run's meter: the one it was given, or a line to its log every 5 s. */
export function runMeter(ctx: BackupContext): Meter {
  return ctx.meter ?? meterWith((line) => ctx.log.info(line));
}

/** Every destination of the run, each with `scope`: where a blob is stored. */
export function runTargets(ctx: BackupContext, scope: StoreTarget['scope']): StoreTarget[] {
  return ctx.destinations.map((dest) => ({ dest, scope }));
}
