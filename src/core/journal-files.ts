/**
 * Journal files: one JSON file per run in a directory of the state directory, written whole or not
 * at all, each naming the process, host and engine that wrote it, so the next run on this host
 * knows which belong to runs that are gone.
 */
import { readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkableHere, isAlive, processHost, processStart } from './process-liveness.js';

/** Who wrote a journal file: a process of a host, talking to an engine. */
export interface JournalOwner {
  pid: number;
  /** The process's start time (from /proc), so a reused pid is not taken for the same run. */
  started: string;
  host: string;
  engine: string;
}

/** This process as a journal's owner, for the engine `env` names. */
export function journalOwner(env: NodeJS.ProcessEnv): JournalOwner {
  return { pid: process.pid, started: processStart(process.pid), host: processHost(), engine: engineId(env) };
}

/** The engine a run talks to, as journals name it: DOCKER_HOST, else the default socket. */
function engineId(env: NodeJS.ProcessEnv): string {
  return env.DOCKER_HOST || 'unix:///var/run/docker.sock';
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
      if (!checkableHere(entry.host) || entry.engine !== engineId(env)) continue;
      out.push({ path, entry, gone: entry.pid !== process.pid && !isAlive(entry.pid, entry.started) });
    } catch {
      // Being written, or not ours.
    }
  }
  return out;
}
