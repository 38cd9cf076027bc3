/** A backup run's result types, and the outcome of a container taken or failed. */
import { errorMessage } from '../core/log.js';
import type { ContainerRecord } from './manifest.js';
import type { SetPlacement } from './set-writes.js';

/** One container's result in a backup run (the action's `containers` output); times in ms, sizes in bytes. */
export interface ContainerOutcome {
  name: string;
  id: string;
  state: string;
  status: 'ok' | 'failed' | 'planned';
  error?: string;
  destinations: Array<{ destination: string; ref: string; digest?: string }>;
  volumes: string[];
  bytes: number;
  pausedMs: number;
  stoppedMs: number;
  /** Blobs (layers and volumes) this run stored, and those already stored by an earlier set. */
  blobs: { written: number; reused: number };
  /** Why the container was not held as asked (auto-remove, restarting), when it was not. */
  note?: string;
  /** The consistency group it was held with, when in one. */
  group?: string;
  /** That group's window: milliseconds from its first hold to its last release. */
  groupWindowMs?: number;
}

/** A backup run's result: the tag, each container's outcome, and where the set was written. */
export interface BackupResult {
  tag: string;
  containers: ContainerOutcome[];
  failed: number;
  written: boolean;
  /** The set's artifact in each artifact: destination, for a workflow to link to. */
  artifacts: Array<{ destination: string; name: string; id: number; url: string }>;
  /** Each destination asked for, and whether it holds the set (in a dry run: each it would write, not written; empty when no set was due). */
  destinations: SetPlacement[];
  /** Why some destinations do not hold a set that others hold; the run has failed. */
  incomplete?: string;
  /** Each consistency group of the run (group-by, container-snapshot.group): its members and window; absent or empty when none. */
  groups?: GroupOutcome[];
}

/** One consistency group's result: its members, how long from the first hold to the last release, and why it was not taken. */
export interface GroupOutcome {
  name: string;
  containers: string[];
  status: 'ok' | 'failed';
  windowMs: number;
  error?: string;
}

/** A container taken, with the blobs its backup stored and reused. */
export type Taken = ContainerRecord & { blobStats: { written: number; reused: number } };

/** A taken container's outcome: `refs` where it was written, `note` why it was not held as asked or what of it is not in the set; bytes count each stored blob once. */
export function outcome(record: Taken, refs: ContainerOutcome['destinations'], note?: string): ContainerOutcome {
  const blobs = [record.image.config, ...record.image.layers, ...record.volumes.map((v) => v.blob)];
  return {
    name: record.name,
    id: record.id,
    state: record.state,
    status: 'ok',
    destinations: refs,
    volumes: record.volumes.map((v) => v.name || v.source || v.destination),
    bytes: [...new Map(blobs.map((b) => [b.digest, b.size])).values()].reduce((a, b) => a + b, 0),
    pausedMs: record.pausedMs,
    stoppedMs: record.stoppedMs ?? 0,
    blobs: record.blobStats,
    ...(note ? { note } : {}),
    ...(record.group ? { group: record.group } : {}),
  };
}

/** A container that failed (or was not found): its error's message, nothing stored. */
export function failure(name: string, id: string, state: string, err: unknown): ContainerOutcome {
  return {
    name,
    id,
    state,
    status: 'failed',
    error: errorMessage(err),
    destinations: [],
    volumes: [],
    bytes: 0,
    pausedMs: 0,
    stoppedMs: 0,
    blobs: { written: 0, reused: 0 },
  };
}
