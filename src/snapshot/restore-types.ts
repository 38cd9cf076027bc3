import type { Logger } from '../core/log.js';
import type { Engine } from '../engine/engine.js';
import type { Destination } from '../destinations/types.js';
import type { SnapshotSet } from './manifest.js';
import type { RestoreTransaction } from './transaction.js';

/** What a restore runs against: the engine it restores into, the store it reads the set from, and its log. */
export interface RestoreContext {
  engine: Engine;
  source: Destination;
  log: Logger;
  /** Records each change before it is made, so an interruption can be put back (one in memory by default). */
  txn?: RestoreTransaction;
}

/** The outcome of one container's restore. */
export interface RestoredContainer {
  /** The name it was restored under (its name in the set, or the one `rename` gave it). */
  name: string;
  /** Its name in the set. */
  from: string;
  /** The new container's ID; empty when it failed. */
  id: string;
  /** The new container's state (`paused`, or the Engine API's `State.Status`: `running`, `created`, ...); empty when it failed. */
  state: string;
  status: 'ok' | 'failed';
  /** Why it failed (or why its consistency group was put back). */
  error?: string;
}

/** The outcome of a restore run: one entry per chosen container. */
export interface RestoreResult {
  /** The tag of the set restored (`latest` resolved). */
  tag: string;
  containers: RestoredContainer[];
  /** How many of `containers` failed. */
  failed: number;
  /** The engine the set was taken on, as the set records it. */
  sourceEngine?: SnapshotSet['source']['engine'];
}

/**
 * A restore refused or failed for a reason of its own, said in its message: no such set or
 * container, a conflict, a failed group member, a rollback that could not put everything back.
 * Engine and store errors are passed on as they are.
 */
export class RestoreError extends Error {
  override name = 'RestoreError';
}
