import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { SET_AGE_MEDIA_TYPE, setBlobs } from '../../snapshot/manifest.js';
import { isDigest } from '../../oci/digest.js';
import { KeyError, type Keyring } from '../../crypto/keyring.js';
import { envelopeOf } from '../../snapshot/sealed-sets.js';
import type { SweepResult } from '../types.js';
import type { DirLayout } from './layout.js';
import { liveLocks, takeLock } from './locks.js';
import type { SetRecord } from './set-record.js';
import type { SetStore } from './sets.js';

/** What a sweep of a dir: destination works with; `backupLock` is this process's own backup lock (not counted). */
export interface SweepContext {
  layout: DirLayout;
  sets: SetStore;
  label: string;
  keyring?: Keyring;
  backupLock?: string;
}

/**
 * Mark and sweep under a prune lock (locks.ts): files of blobs/sha256 that no set but those of
 * `without` names. Nothing is swept while a backup holds its lock (it may be about to name a blob
 * that looks unused), nor while a set cannot be read: `skipped` says why. .tmp/ is never touched.
 * With `dryRun`, counts what would go (blobs, bytes) and removes nothing.
 */
export async function sweep(ctx: SweepContext, { without, dryRun }: { without: string[]; dryRun: boolean }): Promise<SweepResult> {
  const lock = dryRun ? undefined : await takeLock(ctx.layout.root, 'prune');
  try {
    const backups = await liveLocks(ctx.layout.root, 'backup', ctx.backupLock);
    if (backups.length > 0 && !dryRun)
      return { blobs: 0, bytes: 0, skipped: `a backup is writing to ${ctx.label} (locks/${backups[0]}); unused blobs are swept by a later prune` };
    const marked = await mark(ctx, without);
    if (typeof marked === 'string') return { blobs: 0, bytes: 0, skipped: marked };
    const dir = ctx.layout.blobs;
    let blobs = 0;
    let bytes = 0;
    for (const hex of await readdir(dir).catch(() => [] as string[])) {
      if (!isDigest(`sha256:${hex}`) || marked.has(`sha256:${hex}`)) continue;
      const size = await stat(join(dir, hex)).then(
        (st) => st.size,
        () => undefined,
      );
      if (size === undefined) continue;
      if (!dryRun) await rm(join(dir, hex), { force: true });
      blobs++;
      bytes += size;
    }
    return { blobs, bytes };
  } finally {
    if (lock) await rm(lock, { force: true });
  }
}

/** Every blob a set other than `without` names (its document included); a reason instead when a set cannot be read. */
async function mark(ctx: SweepContext, without: string[]): Promise<Set<string> | string> {
  const marked = new Set<string>();
  for (const tag of await ctx.sets.tags()) {
    if (without.includes(tag)) continue;
    try {
      const record = await ctx.sets.record(tag);
      if (!record) continue;
      if ('descriptor' in record) marked.add(record.descriptor.digest);
      for (const digest of await blobsOf(ctx, tag, record)) marked.add(digest);
    } catch (err) {
      return `snapshot ${tag} cannot be read (${(err as Error).message}), so the blobs it needs are unknown`;
    }
  }
  return marked;
}

/**
 * The stored digests a set references: an encrypted set's from its clear envelope (checked against
 * its digest), so a prune needs no key; with a key that opens the document, the envelope is also
 * checked against it (openSealed throws on a mismatch, and the sweep is skipped).
 */
async function blobsOf(ctx: SweepContext, tag: string, record: SetRecord): Promise<string[]> {
  if ('descriptor' in record && record.descriptor.mediaType === SET_AGE_MEDIA_TYPE) {
    const { blobs } = envelopeOf(record.descriptor.annotations, `${ctx.label} sets/${tag}.json`);
    if (!ctx.keyring?.decrypting) return blobs;
    const set = await ctx.sets.document(tag, record).catch((err: unknown) => {
      if (err instanceof KeyError) return undefined;
      throw err;
    });
    return set ? [...blobs, ...setBlobs(set).map((b) => b.digest)] : blobs;
  }
  return setBlobs(await ctx.sets.document(tag, record)).map((b) => b.digest);
}
