import type { Readable, Writable } from 'node:stream';
import type { Keyring } from '../crypto/keyring.js';
import type { SetSummary, SnapshotSet } from '../snapshot/manifest.js';

/**
 * Where a blob belongs inside a destination: the container whose image it is part of,
 * or the set itself (volumes). Directories ignore it; registries map it to a repository.
 */
export type BlobScope = { container: string } | { set: true };

/**
 * The set's own blobs: volumes and the committed image configs. In a registry they sit
 * beside the set manifest that references them, so garbage collection keeps them.
 */
export const SET_SCOPE: BlobScope = { set: true };

export interface StoredRef {
  ref: string;
  digest?: string;
}

/** What writing a set produced: each container's stored reference, and the artifact a workflow can link to. */
export interface SetReceipt {
  refs: Record<string, StoredRef>;
  artifact?: { name: string; id: number; url: string };
}

export interface BlobWriter {
  readonly stream: Writable;
  /** Keeps the bytes written under `digest`; they must number `size`. */
  commit(digest: string, size: number): Promise<void>;
  /** Drops whatever was written. Safe to call after a failure. */
  abort(): Promise<void>;
}

/** One snapshot store. The backup and restore pipelines see only this. */
export interface Destination {
  /** As the user wrote it: dir:PATH, registry:HOST/PREFIX or artifact:NAME. */
  readonly label: string;
  /** The run's keys: blobs and set documents stored encrypted when it encrypts, read back with its identities. */
  readonly keyring?: Keyring;
  /**
   * The most blobs of the set's own scope (SET_SCOPE: volume chunks, side records, configs) one set
   * may name here; undefined for no limit. registry: what its set manifest can list within the
   * 4 MiB a manifest is read back with. A backup stores a volume whole when its chunks would not fit.
   */
  readonly setBlobLimit?: number;
  /**
   * Fails early with a clear error when the store can't be reached, read or written. `write` may
   * prepare the store (create a directory); `plan` (a dry run) checks the same without changing anything.
   */
  check(access: 'read' | 'write' | 'plan'): Promise<void>;
  hasBlob(scope: BlobScope, digest: string): Promise<boolean>;
  writeBlob(scope: BlobScope): Promise<BlobWriter>;
  readBlob(scope: BlobScope, digest: string): Promise<Readable>;
  hasSet(tag: string): Promise<boolean>;
  /** Written last: a set is listed only once everything it references is stored. */
  writeSet(set: SnapshotSet): Promise<SetReceipt>;
  /** `latest` names the newest complete set; undefined when there is none. */
  readSet(tag: string): Promise<SnapshotSet | undefined>;
  listSets(): Promise<SetSummary[]>;
  /** Drops what this run stored for a set it will not write, where nothing else would (artifacts). */
  discard?(): Promise<void>;
  /** Releases what `check('write')` took (dir: the backup's lock that keeps a prune from sweeping). Safe to call twice. */
  close?(): Promise<void>;
  /**
   * Removes a set: its tag or set document first, so a half-removed set is never listed as complete,
   * then what only it names (registry: its containers' image manifests). Absent where sets cannot be
   * removed (artifact:, which keeps sets for retention-days). Throws DestinationError when the store refuses.
   */
  deleteSet?(tag: string): Promise<void>;
  /**
   * Mark and sweep: removes the blobs that no set other than those in `without` references, unless a
   * backup is writing to the store (then nothing, and `skipped` says why). `dryRun` counts without
   * removing. Absent where the store reclaims blobs itself (a registry's garbage collection).
   */
  sweep?(opts: { without: string[]; dryRun: boolean }): Promise<SweepResult>;
}

/** What a sweep removed (or would): blobs and their bytes; `skipped` when it removed nothing on purpose. */
export interface SweepResult {
  blobs: number;
  bytes: number;
  skipped?: string;
}

export class DestinationError extends Error {
  override name = 'DestinationError';
}
