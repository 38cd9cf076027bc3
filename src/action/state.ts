import * as core from '@actions/core';
import { fileJournal } from '../core/recovery.js';
import { emptyUndo, parsePending, type PendingUndo, type UndoJournal } from '../core/undo.js';
import { restoreJournal } from '../snapshot/restore-journal.js';
import type { RestorePending, RestoreTransaction } from '../snapshot/transaction.js';
import { State } from './surface.js';

/** The whole contract between the backup's main step and its post step: what is still to undo. */
const KEY = State.BackupPending;

export function readPending(): PendingUndo {
  const raw = core.getState(KEY);
  return raw ? parsePending(raw) : emptyUndo();
}

/**
 * A journal that saves the pending undo as step state (for the post step) and in the state
 * directory (for the next run, should the runner itself be killed) after every change.
 */
export function stateJournal(env: NodeJS.ProcessEnv = process.env): { journal: UndoJournal; close(): void } {
  return fileJournal(env, (pending) => core.saveState(KEY, JSON.stringify(pending)));
}

/** The contract between the restore's main step and its post step: what it has not committed. */
const RESTORE_KEY = State.RestorePending;

export function readRestorePending(): RestorePending | undefined {
  const raw = core.getState(RESTORE_KEY);
  return raw ? (JSON.parse(raw) as RestorePending) : undefined;
}

/** A restore journal that also saves its pending changes as step state, for the post step. */
export function restoreStateJournal(env: NodeJS.ProcessEnv = process.env): { txn: RestoreTransaction; close(): void } {
  return restoreJournal(env, (pending) => core.saveState(RESTORE_KEY, JSON.stringify(pending)));
}
