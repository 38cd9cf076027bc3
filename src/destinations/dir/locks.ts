import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { checkableHere, isAlive, processHost, processStart } from '../../core/process-liveness.js';

/**
 * The locks of a dir: destination, one file each in <root>/locks: `backup-…` while a backup writes
 * (from its check to the end of its run), `prune-…` while a prune sweeps blobs. Each side takes its
 * own lock and only then looks for the other's, so at least one of two that start together sees the
 * other: a prune that sees a backup sweeps nothing; a backup that sees a prune waits for it.
 */
export type LockKind = 'backup' | 'prune';

interface Holder {
  host: string;
  pid: number;
  started: string;
}

const DIR_MODE = 0o700;

/** Takes a lock of `kind`; returns its path (remove it to release). */
export async function takeLock(root: string, kind: LockKind): Promise<string> {
  const dir = join(root, 'locks');
  await mkdir(dir, { mode: DIR_MODE }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw err;
  });
  const me: Holder = { host: processHost(), pid: process.pid, started: processStart(process.pid) };
  const path = join(dir, `${kind}-${me.host}-${me.pid}-${randomBytes(4).toString('hex')}.json`);
  await writeFile(path, JSON.stringify(me), { flag: 'wx', mode: 0o600 });
  return path;
}

/**
 * The locks of `kind` whose holder may still be running, by file name. A lock of a process of this
 * host that is gone is removed; one of another host counts as live (its process cannot be checked),
 * and the message that names it says which file to remove by hand. No locks/ is no lock; a locks/
 * that cannot be read (EIO, EACCES, EMFILE…) throws: taken for "no lock", a prune would sweep the
 * blobs a running backup is writing.
 */
export async function liveLocks(root: string, kind: LockKind, except?: string): Promise<string[]> {
  const dir = join(root, 'locks');
  const names = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [] as string[];
    throw new Error(`${dir} cannot be read (${err.code ?? err.message}), so whether a backup or a prune is running there is unknown`);
  });
  const live: string[] = [];
  for (const name of names.filter((n) => n.startsWith(`${kind}-`) && join(dir, n) !== except)) {
    const holder = await readFile(join(dir, name), 'utf8').then(
      (t) => JSON.parse(t) as Holder,
      () => undefined,
    );
    if (holder && checkableHere(holder.host) && !isAlive(holder.pid, holder.started)) {
      await rm(join(dir, name), { force: true });
      continue;
    }
    // Unreadable (being written, or of another host): live.
    live.push(name);
  }
  return live;
}

/** Waits while a live lock of `kind` exists; throws after `timeoutMs` with what to do. */
export async function waitForNone(root: string, kind: LockKind, timeoutMs: number, label: string): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const live = await liveLocks(root, kind);
    if (live.length === 0) return;
    if (Date.now() >= until) {
      throw new Error(
        `a ${kind} holds ${label} (locks/${live[0]}); waited ${Math.round(timeoutMs / 1000)} s. Expected it to end, or remove that file if its process is gone`,
      );
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}
