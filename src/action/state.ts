import * as core from '@actions/core';
import type { Journal } from '../snapshot/backup.js';

/** The whole contract between the backup's main step and its post step: what is still to undo. */
export interface PendingUndo {
  paused: string[];
  tempImages: string[];
}

const KEY = 'pending';

export function readPending(): PendingUndo {
  const raw = core.getState(KEY);
  if (!raw) return { paused: [], tempImages: [] };
  return JSON.parse(raw) as PendingUndo;
}

/** A journal that keeps the post step's state current after every change. */
export function stateJournal(): Journal {
  const pending: PendingUndo = { paused: [], tempImages: [] };
  const save = () => core.saveState(KEY, JSON.stringify(pending));
  const drop = (list: string[], id: string) => list.splice(list.indexOf(id) >>> 0, list.includes(id) ? 1 : 0);
  return {
    paused: (id) => (pending.paused.push(id), save()),
    unpaused: (id) => (drop(pending.paused, id), save()),
    tempImage: (id) => (pending.tempImages.push(id), save()),
    tempImageRemoved: (id) => (drop(pending.tempImages, id), save()),
  };
}
