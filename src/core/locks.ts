import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { checkableHere, isAlive, processHost, processStart } from './process-liveness.js';
import { stateDir } from './state-dir.js';

export class LockError extends Error {
  override name = 'LockError';
}

interface Holder {
  pid: number;
  started: string;
  host: string;
}

async function holderOf(path: string): Promise<Holder | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as Holder;
  } catch {
    return undefined;
  }
}

async function tryTake(path: string): Promise<boolean> {
  try {
    const handle = await open(path, 'wx');
    const me: Holder = { pid: process.pid, started: processStart(process.pid), host: processHost() };
    await handle.writeFile(JSON.stringify(me));
    await handle.close();
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
}

/**
 * Runs `fn` holding this host's lock on one container, so two backups never pause, commit and
 * unpause the same container at once. A second backup waits up to `timeoutMs`
 * (BackupOptions.lockTimeoutMs, from CONTAINER_SNAPSHOT_LOCK_TIMEOUT); a lock whose holder is no
 * longer alive is taken over; an aborted `signal` ends the wait. The lock is released when `fn`
 * settles, whatever the outcome.
 */
export async function withContainerLock<T>(
  env: NodeJS.ProcessEnv,
  container: { id: string; name: string },
  timeoutMs: number,
  fn: () => Promise<T>,
  signal?: AbortSignal,
): Promise<T> {
  const dir = join(stateDir(env), 'locks');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, `${container.id}.lock`);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    signal?.throwIfAborted();
    if (await tryTake(path)) break;
    const holder = await holderOf(path);
    if (holder && checkableHere(holder.host) && !isAlive(holder.pid, holder.started)) {
      await rm(path, { force: true });
      continue;
    }
    if (Date.now() >= deadline) {
      throw new LockError(
        `${container.name}: another backup${holder ? ` (pid ${holder.pid})` : ''} is taking this container; waited ${Math.round(timeoutMs / 1000)} s (CONTAINER_SNAPSHOT_LOCK_TIMEOUT)`,
      );
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  try {
    return await fn();
  } finally {
    await rm(path, { force: true });
  }
}
