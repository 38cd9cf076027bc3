import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { errorMessage, type Logger } from '../core/log.js';
import { checkableHere, isAlive, processHost, processStart } from '../core/process-liveness.js';
import { journalOwner, readJournals, writeJournalFile, type JournalOwner } from '../core/journal-files.js';
import { stateDir } from '../core/state-dir.js';
import type { Engine } from '../engine/engine.js';
import { RestoreTransaction, forgetLeftovers, hasChanges, hasPending, type RestorePending } from './transaction.js';
import { removeLeftovers, removeRunHelpers, removeRunVolumes, rollBackTargets } from './restore-rollback.js';

/** One restore's journal file: who wrote it, what it has not committed, and what its commits have yet to remove. */
interface RestoreJournalFile extends JournalOwner {
  pending: RestorePending;
}

function journalDir(env: NodeJS.ProcessEnv): string {
  return join(stateDir(env), 'restore-journal');
}

/** This process's run label value, `<host>/<pid>/<process start>` (see `RUN_LABEL`). */
export function runLabelValue(): string {
  return `${processHost()}/${process.pid}/${processStart(process.pid)}`;
}

/** Whether the run a label value names is over: a process of this host that is no longer alive. */
export function runIsGone(value: string): boolean {
  const [host, pid, started] = value.split('/');
  if (!checkableHere(host) || !/^\d+$/.test(pid ?? '')) return false;
  return Number(pid) !== process.pid && !isAlive(Number(pid), started ?? '');
}

/**
 * A restore transaction whose pending changes are saved, after every change, in a file of the state
 * directory (`<state>/restore-journal/<host>-<pid>.json`), and passed to `onChange` (the action keeps
 * them as step state for its post step). `close()` removes the file once nothing is pending.
 */
export function restoreJournal(env: NodeJS.ProcessEnv, onChange?: (pending: RestorePending) => void): { txn: RestoreTransaction; close(): void } {
  const dir = journalDir(env);
  const file = join(dir, `${processHost()}-${process.pid}.json`);
  const txn = new RestoreTransaction(runLabelValue(), (pending) => {
    onChange?.(pending);
    const record: RestoreJournalFile = { ...journalOwner(env), pending };
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeJournalFile(file, JSON.stringify(record));
  });
  return { txn, close: () => rmSync(file, { force: true }) };
}

/**
 * Rolls back every uncommitted target of `pending` and finishes its commits (removes their
 * `leftovers`); returns what could not be put back. `save` is called after each step, with
 * `pending` less what is done.
 */
export async function rollBackAll(engine: Engine, pending: RestorePending, log: Logger, save: () => void = () => undefined): Promise<string[]> {
  // A helper of the run may still hold a volume to put back.
  await removeRunHelpers(engine, (run) => run === pending.run);
  // Its own helpers carry this process's label: another run's sweep of the gone run's must not take them.
  const problems = await rollBackTargets(engine, runLabelValue(), pending.helperImage, pending.targets, log, save, pending.run);
  pending.targets = pending.targets.filter(hasChanges);
  if (pending.leftovers) forgetLeftovers(pending, await removeLeftovers(engine, pending.leftovers, log));
  save();
  return problems;
}

/**
 * Writes the journal file of the run `pending` belongs to (a main step killed before it wrote
 * one, or whose file is gone), unless it is there: the journal file is the one record a rollback
 * marks its progress in.
 */
export function adoptPending(env: NodeJS.ProcessEnv, pending: RestorePending): void {
  const [host, pid, started] = pending.run.split('/');
  if (!checkableHere(host) || !/^\d+$/.test(pid ?? '')) return;
  const dir = journalDir(env);
  const file = join(dir, `${host}-${pid}.json`);
  if (existsSync(file)) return;
  const record: RestoreJournalFile = { ...journalOwner(env), pid: Number(pid), started: started ?? '', host, pending };
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeJournalFile(file, JSON.stringify(record));
}

/**
 * Puts back what restores on this host that are no longer alive left uncommitted, and finishes
 * what their commits had yet to remove (from their journal files, each rewritten as it goes), then
 * removes the helpers those runs left and the aside volumes of the runs finished. A journal is
 * removed once nothing is left in it; one with a leftover the engine would not remove yet (said in
 * a warning) stays for the next run. An aside volume of a run whose journal is not in this
 * state directory (another user's, another `CONTAINER_SNAPSHOT_STATE_DIR`) is that journal's to put
 * back and is kept. Returns how many runs were finished, and what could not be put back.
 */
export async function recoverAbandonedRestores(engine: Engine, log: Logger, env: NodeJS.ProcessEnv): Promise<{ recovered: number; problems: string[] }> {
  const recovered = new Set<string>();
  const problems: string[] = [];
  const keep = new Set<string>();
  await removeRunHelpers(engine, runIsGone);
  for (const { path, entry, gone } of readJournals<RestoreJournalFile>(journalDir(env), env)) {
    const asides = entry.pending.targets.flatMap((t) => t.replaced.flatMap((v) => (v.aside ? [v.aside] : [])));
    if (!gone) {
      asides.forEach((v) => keep.add(v));
      continue;
    }
    if (entry.pending.targets.length > 0) {
      log.warning(
        `A restore (pid ${entry.pid}) ended before it finished (${entry.pending.targets.map((t) => t.target).join(', ')}); putting back what it changed`,
      );
    } else if (entry.pending.leftovers) {
      log.info(`A restore (pid ${entry.pid}) ended after it committed, before it removed what it replaced: removing it`);
    }
    const save = () => {
      writeJournalFile(path, JSON.stringify(entry));
    };
    const failed = await rollBackAll(engine, entry.pending, log, save).catch((err: unknown) => [errorMessage(err)]);
    if (failed.length > 0) {
      entry.pending.targets.flatMap((t) => t.replaced.flatMap((v) => (v.aside ? [v.aside] : []))).forEach((v) => keep.add(v));
      log.error(`Could not put back everything the interrupted restore changed: ${failed.join('; ')}`);
      problems.push(...failed);
      continue;
    }
    // What the engine would not remove yet (each said in a warning): the journal keeps it for the next run.
    if (hasPending(entry.pending)) continue;
    rmSync(path, { force: true });
    recovered.add(entry.pending.run);
  }
  await removeRunVolumes(engine, (run) => recovered.has(run), keep);
  return { recovered: recovered.size, problems };
}

/**
 * Runs a restore with its journal guarded. On SIGINT or SIGTERM the restore is cancelled: it stops
 * at its next step and puts back what it changed (one owner of the undo: the restore itself), then
 * the process exits 130 or 143. A second signal exits at once and leaves the journal to the post step
 * or the next run. The journal file is removed once nothing is pending.
 */
export async function guardedRestore<T>(handle: { txn: RestoreTransaction; close(): void }, log: Logger, fn: () => Promise<T>): Promise<T> {
  let code: number | undefined;
  const handler = (signal: NodeJS.Signals) => {
    if (code !== undefined) process.exit(code);
    code = signal === 'SIGINT' ? 130 : 143;
    log.error(`Received ${signal}: stopping the restore and putting back what it changed`);
    handle.txn.abort(`Received ${signal}`);
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  try {
    return await fn();
  } finally {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
    if (!hasPending(handle.txn.pending)) handle.close();
    if (code !== undefined) process.exit(code);
  }
}
