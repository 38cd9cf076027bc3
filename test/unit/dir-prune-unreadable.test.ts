import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DirDestination } from '../../src/destinations/dir/index.js';
import { liveLocks } from '../../src/destinations/dir/locks.js';
import { prune } from '../../src/snapshot/prune.js';
import { parseRetentionPolicy } from '../../src/core/retention-input.js';
import { putBlob as put, setNaming } from '../support/dir-sets.js';

const log = { info: () => undefined, warning: () => undefined, error: () => undefined, group: <T>(_t: string, fn: () => Promise<T>) => fn() };

/**
 * A prune that cannot read the list of sets must not take it for "no sets": its sweep would delete
 * every blob the sets it could not see need (a readdir failing with EIO, ESTALE, EACCES, EMFILE…;
 * here ENOTDIR, which root cannot bypass).
 */
describe('dir: a prune when sets/ cannot be read', () => {
  let root: string;
  let blobsBefore: string[];
  beforeEach(async () => {
    root = mkdtempSync(join(tmpdir(), 'cs-prune-unreadable-'));
    const dest = new DirDestination('dir:t', root);
    await dest.check('write');
    const digests = await Promise.all([randomBytes(100), randomBytes(200)].map((b) => put(dest, b)));
    await dest.writeSet(setNaming('t1', digests));
    await dest.close();
    blobsBefore = readdirSync(join(root, 'blobs', 'sha256')).sort();
    expect(blobsBefore.length).toBeGreaterThanOrEqual(3);
    renameSync(join(root, 'sets'), join(root, 'sets-away'));
    writeFileSync(join(root, 'sets'), 'not a directory');
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('fails with one line naming sets/ and the error, and deletes no blob', async () => {
    const dest = new DirDestination('dir:t', root);
    await expect(prune(dest, parseRetentionPolicy('last=1')!, { dryRun: false, now: new Date(), log })).rejects.toThrow(
      'dir:t: the list of snapshots (sets/) cannot be read (ENOTDIR)',
    );
    expect(readdirSync(join(root, 'blobs', 'sha256')).sort()).toEqual(blobsBefore);
  });

  it('a sweep alone (as after a backup) fails the same way, and deletes no blob', async () => {
    const dest = new DirDestination('dir:t', root);
    await expect(dest.sweep({ without: [], dryRun: false })).rejects.toThrow('cannot be read (ENOTDIR)');
    expect(readdirSync(join(root, 'blobs', 'sha256')).sort()).toEqual(blobsBefore);
  });

  it('a store with no sets/ at all lists no snapshot (nothing to read is not an error)', async () => {
    rmSync(join(root, 'sets'));
    expect(await new DirDestination('dir:t', root).listSets()).toEqual([]);
  });
});

describe('dir: locks/ that cannot be read', () => {
  it('is an error, never "no backup is running" (a prune would sweep the blobs a backup is writing)', async () => {
    const root = mkdtempSync(join(tmpdir(), 'cs-locks-unreadable-'));
    try {
      writeFileSync(join(root, 'locks'), 'not a directory');
      await expect(liveLocks(root, 'backup')).rejects.toThrow(`${join(root, 'locks')} cannot be read (ENOTDIR)`);
      rmSync(join(root, 'locks'));
      expect(await liveLocks(root, 'backup')).toEqual([]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
