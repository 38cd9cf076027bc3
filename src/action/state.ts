import * as core from '@actions/core';
import { UndoJournal, emptyUndo, type PendingUndo } from '../core/undo.js';

/** The whole contract between the backup's main step and its post step: what is still to undo. */
const KEY = 'pending';

export function readPending(): PendingUndo {
  const raw = core.getState(KEY);
  return raw ? (JSON.parse(raw) as PendingUndo) : emptyUndo();
}

/** A journal that saves the pending undo as step state after every change. */
export function stateJournal(): UndoJournal {
  return new UndoJournal((pending) => core.saveState(KEY, JSON.stringify(pending)));
}
