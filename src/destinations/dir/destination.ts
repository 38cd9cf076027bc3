import { access, rm, stat, constants } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import type { SetSummary, SnapshotSet } from '../../snapshot/manifest.js';
import type { Keyring } from '../../crypto/keyring.js';
import { DestinationError, type BlobWriter, type Destination, type SetReceipt, type SweepResult } from '../types.js';
import { BlobStore, removeAbandoned } from './blobs.js';
import { ensureDir, nearestExisting } from './files.js';
import { DirLayout } from './layout.js';
import { takeLock, waitForNone } from './locks.js';
import { SetStore } from './sets.js';
import { sweep } from './sweep.js';

/** How long a backup waits for a prune's sweep (file deletions) to end, in ms. */
const PRUNE_WAIT_MS = 120_000;

/**
 * The `dir:` destination: a content-addressed directory laid out like an OCI image layout
 * (layout.ts), its blobs written atomically (blobs.ts), its sets tagged by descriptors of their
 * documents (sets.ts), unused blobs swept by a prune (sweep.ts), backups and prunes kept apart by
 * lock files (locks.ts). A set document is used only once its bytes match the digest its tag names.
 */
export class DirDestination implements Destination {
  /** The directory, absolute. */
  readonly root: string;
  /** The path was given relative (to the directory this runs in): said when it is not found. */
  private readonly relative: boolean;
  private readonly layout: DirLayout;
  private readonly sets: SetStore;
  private readonly blobs: BlobStore;
  private backupLock?: string;

  constructor(
    readonly label: string,
    path: string,
    private readonly warn: (message: string) => void = () => undefined,
    readonly keyring?: Keyring,
  ) {
    this.root = resolve(path);
    this.relative = !isAbsolute(path);
    this.layout = new DirLayout(this.root);
    this.sets = new SetStore(this.layout, label, keyring, warn);
    this.blobs = new BlobStore(this.layout, label);
  }

  /**
   * `write` makes the layout (new directories 0700), clears what dead processes left and takes a
   * backup lock; `plan` only checks that the directory, or its nearest existing ancestor, is a
   * directory this process may write; `read` that it is a directory. Throws DestinationError.
   */
  async check(accessMode: 'read' | 'write' | 'plan'): Promise<void> {
    if (accessMode === 'plan') {
      try {
        const near = await nearestExisting(this.root);
        if (!near.isDirectory) throw new Error(`${near.path} is not a directory`);
        await access(near.path, constants.W_OK | constants.X_OK);
      } catch (err) {
        throw new DestinationError(`Cannot write to ${this.label}: ${(err as Error).message}`);
      }
      return;
    }
    if (accessMode === 'write') {
      try {
        await this.warnIfShared();
        await ensureDir(this.layout.blobs);
        await ensureDir(this.layout.sets);
        await ensureDir(this.layout.tmp);
        await access(this.root, constants.W_OK);
        await removeAbandoned(this.layout, this.label, this.warn);
        await this.lockForBackup();
      } catch (err) {
        throw new DestinationError(`Cannot write to ${this.label}: ${(err as Error).message}`);
      }
      return;
    }
    try {
      const s = await stat(this.root);
      if (!s.isDirectory()) throw new Error('not a directory');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        const where = this.relative ? ` (a relative path is below the directory this runs in: ${this.root})` : '';
        throw new DestinationError(`Cannot read ${this.label}: no such directory. Expected a directory a backup wrote sets to${where}.`);
      }
      throw new DestinationError(`Cannot read ${this.label}: ${(err as Error).message}.`);
    }
  }

  /** A prune sweeping now ends first; one that starts later sees this lock and sweeps nothing. */
  private async lockForBackup(): Promise<void> {
    if (this.backupLock) return;
    this.backupLock = await takeLock(this.root, 'backup');
    try {
      await waitForNone(this.root, 'prune', PRUNE_WAIT_MS, this.label);
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  /** Waits for the blobs on their way to disk, then releases the backup lock, if this destination holds one. */
  async close(): Promise<void> {
    await this.blobs.settle();
    const lock = this.backupLock;
    this.backupLock = undefined;
    if (lock) await rm(lock, { force: true });
  }

  /** An existing directory keeps its mode; one others may enter is worth a word. */
  private async warnIfShared(): Promise<void> {
    const mode = await stat(this.root).then(
      (s) => s.mode & 0o777,
      () => undefined,
    );
    if (mode !== undefined && (mode & 0o077) !== 0) {
      this.warn(
        `${this.label} is open to other users (mode ${mode.toString(8).padStart(4, '0')}); the files this backup writes there are 0600, but names and older files may be visible. Expected 0700 (chmod 700 ${this.root}).`,
      );
    }
  }

  hasBlob(_scope: unknown, digest: string): Promise<boolean> {
    return this.blobs.has(digest);
  }

  /** A commit accepts the blob; it is made durable in the background, and always before a set document is written (writeSet). */
  writeBlob(): Promise<BlobWriter> {
    return this.blobs.writer();
  }

  readBlob(_scope: unknown, digest: string): Promise<Readable> {
    return this.blobs.read(digest);
  }

  hasSet(tag: string): Promise<boolean> {
    return this.sets.has(tag);
  }

  /** Every blob this destination accepted is durable and in place (BlobStore.flush) before the set document is written. */
  async writeSet(set: SnapshotSet): Promise<SetReceipt> {
    await this.blobs.flush();
    return this.sets.write(set);
  }

  readSet(tag: string): Promise<SnapshotSet | undefined> {
    return this.sets.read(tag);
  }

  listSets(): Promise<SetSummary[]> {
    return this.sets.list();
  }

  /** The tag file only: the blobs, the set document among them, go at the next sweep. */
  deleteSet(tag: string): Promise<void> {
    return this.sets.delete(tag);
  }

  /** Mark and sweep of unused blobs under a prune lock (sweep.ts); skipped while a backup writes here. */
  sweep(opts: { without: string[]; dryRun: boolean }): Promise<SweepResult> {
    return sweep({ layout: this.layout, sets: this.sets, label: this.label, keyring: this.keyring, backupLock: this.backupLock }, opts);
  }
}
