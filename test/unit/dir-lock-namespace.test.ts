import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DirDestination } from '../../src/destinations/dir/index.js';
import { prune } from '../../src/snapshot/prune.js';
import { takeLock } from '../../src/destinations/dir/locks.js';
import { processHost } from '../../src/core/process-liveness.js';
import { parseRetentionPolicy } from '../../src/core/retention-input.js';
import { putBlob as put, setNaming } from '../support/dir-sets.js';
import { recordingLog } from '../support/log.js';

let log = recordingLog();

/** A pid no process has here (above the kernel's pid_max of 2^22). */
const NO_PID = 4_194_304 + 17;

/**
 * A backup lock is its writer's host, pid and start time. A pid means a process only within one
 * PID namespace: a backup in a container run with the host's network (the host's name, pids of its
 * own) must not be taken for a dead process by a prune on the host, which would then sweep the
 * blobs that backup is writing.
 */
describe('dir: a backup lock of another PID namespace', () => {
  let root: string;
  let blobsBefore: string[];
  beforeEach(async () => {
    log = recordingLog();
    root = mkdtempSync(join(tmpdir(), 'cs-lock-ns-'));
    const dest = new DirDestination('dir:t', root);
    await dest.check('write');
    const old = await Promise.all([randomBytes(100), randomBytes(200)].map((b) => put(dest, b)));
    await dest.writeSet(setNaming('t1', old));
    const now = await Promise.all([randomBytes(300)].map((b) => put(dest, b)));
    await dest.writeSet(setNaming('t2', now));
    await dest.close();
    blobsBefore = readdirSync(join(root, 'blobs', 'sha256')).sort();
    mkdirSync(join(root, 'locks'), { recursive: true });
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  const lock = (host: string) => {
    const path = join(root, 'locks', `backup-${host}-${NO_PID}-abcd1234.json`);
    writeFileSync(path, JSON.stringify({ host, pid: NO_PID, started: '1' }));
    return path;
  };

  it('is written with this host and PID namespace, so that a process of another one can tell it is not its own', async () => {
    const path = await takeLock(root, 'backup');
    const holder = JSON.parse(readFileSync(path, 'utf8')) as { host: string; pid: number };
    expect(holder).toMatchObject({ host: processHost(), pid: process.pid });
    expect(holder.host).not.toBe(hostname());
  });

  it('counts as live: the prune sweeps no blob, and keeps the lock', async () => {
    const path = lock(`${hostname()}~pidns1`);
    await prune(new DirDestination('dir:t', root), parseRetentionPolicy('last=1')!, { dryRun: false, now: new Date(), log });
    expect(readdirSync(join(root, 'blobs', 'sha256')).sort()).toEqual(blobsBefore);
    expect(existsSync(path)).toBe(true);
    expect(log.lines.join('\n')).toMatch(/warning: dir:t: no blob swept: a backup is writing to dir:t/);
  });

  it('of a process gone on this host (an older version names the host alone): removed, and the prune sweeps', async () => {
    const path = lock(hostname());
    await prune(new DirDestination('dir:t', root), parseRetentionPolicy('last=1')!, { dryRun: false, now: new Date(), log });
    expect(existsSync(path)).toBe(false);
    expect(readdirSync(join(root, 'blobs', 'sha256')).length).toBeLessThan(blobsBefore.length);
  });
});
