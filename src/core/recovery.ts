import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { homedir, hostname } from 'node:os';
import { join } from 'node:path';
import type { Engine } from '../engine/engine.js';
import { errorMessage, type Logger } from './log.js';
import { TEMP_IMAGE_REPOSITORY, runNameOwner, tempImageOwner } from './run-names.js';
import { UndoJournal, hasPending, pendingFrom, undo, type PendingUndo } from './undo.js';

/** Who wrote a journal file: a process of a host, talking to an engine. */
export interface JournalOwner {
  pid: number;
  /** The process's start time (from /proc), so a reused pid is not taken for the same run. */
  started: string;
  host: string;
  engine: string;
}

/** One run's record of what it changed and has not put back, kept on disk while it runs. */
interface JournalFile extends JournalOwner {
  pending: PendingUndo;
}

/** This process as a journal's owner, for the engine `env` names. */
export function journalOwner(env: NodeJS.ProcessEnv): JournalOwner {
  return { pid: process.pid, started: processStart(process.pid), host: hostname(), engine: engineId(env) };
}

/** `<journal>.json.<writer pid>.tmp`: a journal being written, named after the process writing it. */
const TEMP_FILE = /^.+\.json\.(\d+)\.tmp$/;

/**
 * Writes a journal file whole or not at all: to a temporary file named after this process, then
 * renamed over it. A process killed between the two leaves the temporary file, whose change it
 * had not made yet (a journal is written before each change); readJournals removes it once that
 * process is gone. Throws the file system's error.
 */
export function writeJournalFile(path: string, body: string): void {
  const temp = `${path}.${process.pid}.tmp`;
  writeFileSync(temp, body, { mode: 0o600 });
  renameSync(temp, path);
}

/**
 * The journal files (`*.json`) of `dir` written for this host's engine, parsed; `gone` says their
 * process is no longer alive (so what they name is for this run to put back). Unreadable files are skipped.
 * Temporary files that writers gone left (see writeJournalFile) are removed.
 */
export function readJournals<T extends JournalOwner>(dir: string, env: NodeJS.ProcessEnv): Array<{ path: string; entry: T; gone: boolean }> {
  let all: string[];
  try {
    all = readdirSync(dir);
  } catch {
    return [];
  }
  for (const name of all) {
    const writer = Number(TEMP_FILE.exec(name)?.[1] ?? NaN);
    if (Number.isInteger(writer) && writer !== process.pid && !isAlive(writer, '')) rmSync(join(dir, name), { force: true });
  }
  const names = all.filter((n) => n.endsWith('.json'));
  const out: Array<{ path: string; entry: T; gone: boolean }> = [];
  for (const name of names) {
    const path = join(dir, name);
    try {
      const entry = JSON.parse(readFileSync(path, 'utf8')) as T;
      if (entry.host !== hostname() || entry.engine !== engineId(env)) continue;
      out.push({ path, entry, gone: entry.pid !== process.pid && !isAlive(entry.pid, entry.started) });
    } catch {
      // Being written, or not ours.
    }
  }
  return out;
}

export function stateDir(env: NodeJS.ProcessEnv): string {
  if (env.CONTAINER_SNAPSHOT_STATE_DIR) return env.CONTAINER_SNAPSHOT_STATE_DIR;
  return join(env.XDG_STATE_HOME || join(homedir(), '.local', 'state'), 'container-snapshot');
}

function engineId(env: NodeJS.ProcessEnv): string {
  return env.DOCKER_HOST || 'unix:///var/run/docker.sock';
}

export function processStart(pid: number): string {
  try {
    // Field 22 of /proc/<pid>/stat, counted after the command name (which may hold spaces).
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
  } catch {
    return '';
  }
}

export function isAlive(pid: number, started: string): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  if (!started) return true;
  const now = processStart(pid);
  return now === '' || now === started;
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

/**
 * Where a backup spools what it read while a container was held, when no dir: destination
 * takes the spool: `$RUNNER_TEMP/container-snapshot-spool`, else `<state dir>/spool`. Each run
 * spools in a directory of its own there, named `<host prefix>-<pid>-<random>`.
 */
export function spoolRoot(env: NodeJS.ProcessEnv): string {
  return env.RUNNER_TEMP ? join(env.RUNNER_TEMP, 'container-snapshot-spool') : join(stateDir(env), 'spool');
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
