/**
 * What a run that was killed outright left on this host, found and put back by the next run: its
 * journal's pending undo (containers left paused or stopped), its spool directory, its temporary
 * images. The files' contracts: journal-files.ts, state-dir.ts, run-names.ts.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Engine } from '../engine/engine.js';
import { errorMessage, type Logger } from './log.js';
import { TEMP_IMAGE_REPOSITORY, runNameOwner, tempImageOwner } from './run-names.js';
import { isAlive } from './process-liveness.js';
import { journalOwner, readJournals, writeJournalFile, type JournalOwner } from './journal-files.js';
import { spoolRoot, stateDir } from './state-dir.js';
import { UndoJournal, hasPending, pendingFrom, undo, type PendingUndo } from './undo.js';

/** One run's record of what it changed and has not put back, kept on disk while it runs. */
interface JournalFile extends JournalOwner {
  pending: PendingUndo;
}

/**
 * A journal that also keeps its pending undo in a file of the state directory, so that if this
 * process is killed outright, the next run on this host finds and undoes what it left.
 */
export function fileJournal(env: NodeJS.ProcessEnv, onChange?: (pending: PendingUndo) => void): { journal: UndoJournal; close(): void } {
  const dir = join(stateDir(env), 'journal');
  const file = join(dir, `${hostname()}-${process.pid}.json`);
  const record = (pending: PendingUndo): JournalFile => ({ ...journalOwner(env), pending });
  const journal = new UndoJournal((pending) => {
    onChange?.(pending);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeJournalFile(file, JSON.stringify(record(pending)));
  });
  return { journal, close: () => rmSync(file, { force: true }) };
}

/** Removes the spool directories of processes on this host that are gone (killed mid-backup), with a warning where they held files; returns how many. */
export async function sweepSpools(env: NodeJS.ProcessEnv, log: Logger): Promise<number> {
  const root = spoolRoot(env);
  let removed = 0;
  for (const name of await readdir(root).catch(() => [] as string[])) {
    const pid = runNameOwner(name);
    if (pid === undefined || pid === process.pid || isAlive(pid, '')) continue;
    const held = await readdir(join(root, name)).then(
      (files) => files.length,
      () => 0,
    );
    await rm(join(root, name), { recursive: true, force: true });
    // An empty one (killed after its last upload) held nothing worth a word.
    if (held > 0) log.warning(`Removed the spool ${join(root, name)}, left by an interrupted backup`);
    removed++;
  }
  return removed;
}

/**
 * Removes temporary commit images of processes on this host that are gone. A commit in flight
 * when its process was killed lands in the engine after the fact, even after a recovery that
 * found nothing to remove yet: this catches it on a later run.
 */
async function sweepTempImages(engine: Engine, log: Logger): Promise<void> {
  for (const tag of await engine.imageTags(`${TEMP_IMAGE_REPOSITORY}/*`).catch(() => [])) {
    const pid = tempImageOwner(tag);
    if (pid === undefined || pid === process.pid || isAlive(pid, '')) continue;
    await engine.removeImage(tag, { force: true }).then(
      () => log.warning(`Removed temporary image ${tag}, left by an interrupted backup`),
      () => undefined,
    );
  }
}

/**
 * Undoes what runs on this host that are no longer alive left stopped, paused or committed (and removes their spools);
 * returns how many runs. A journal is removed once each thing it names is back as it was or gone.
 */
export async function recoverAbandoned(engine: Engine, log: Logger, env: NodeJS.ProcessEnv): Promise<number> {
  let recovered = 0;
  for (const { path, entry, gone } of readJournals<JournalFile>(join(stateDir(env), 'journal'), env)) {
    if (!gone) continue;
    const pending = pendingFrom(entry.pending);
    if (!hasPending(pending)) {
      // Killed when nothing was held (between containers, or writing the set): nothing to undo or say.
      rmSync(path, { force: true });
      continue;
    }
    const what = `${pending.paused.length} paused container(s), ${pending.stopped.length} stopped container(s), ${pending.tempImages.length} temporary image(s)`;
    log.warning(`A backup (pid ${entry.pid}) ended without cleaning up (${what}); undoing it now`);
    const { problems, left } = await undo(pending, engine, log).catch((err: unknown) => ({ problems: [errorMessage(err)], left: pending }));
    if (problems.length > 0) {
      // What was put back (or is gone) is not tried again; the rest is, by the next run.
      writeJournalFile(path, JSON.stringify({ ...entry, pending: left }));
      log.error(`Could not undo everything the interrupted backup left: ${problems.join('; ')}`);
      continue;
    }
    rmSync(path, { force: true });
    recovered++;
  }
  await sweepTempImages(engine, log);
  await sweepSpools(env, log);
  return recovered;
}
