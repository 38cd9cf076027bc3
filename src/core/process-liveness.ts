/**
 * Whether a process that wrote a journal, a lock or a temporary file is still running: its pid, and
 * its start time from /proc/<pid>/stat (proc(5), field 22, in clock ticks since boot) so that a pid
 * the kernel gave again to another process is not taken for the same one. Linux only.
 */
import { readFileSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';

/** The start time of process `pid` (field 22 of /proc/<pid>/stat, clock ticks since boot), or '' when it cannot be read. Never throws. */
export function processStart(pid: number): string {
  try {
    // Field 22 of /proc/<pid>/stat, counted after the command name (which may hold spaces).
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
  } catch {
    return '';
  }
}

/** Whether `pid` is alive and, when `started` is given, is the process that started then (EPERM counts as alive). Never throws. */
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

/** The inode number of this process's PID namespace (readlink /proc/self/ns/pid: `pid:[4026531836]`), or '' where it cannot be read. Never throws. */
function pidNamespace(): string {
  try {
    return /\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/pid'))?.[1] ?? '';
  } catch {
    return '';
  }
}

/**
 * This process's host as a lock, journal, temporary file or run label names its writer: the host
 * name, and its PID namespace where it can be read (`vm~pidns4026531836`). A pid names a process
 * only within one PID namespace: a backup in a container run with the host's network has the
 * host's name but pids of its own, and a prune on the host took its lock for a dead process's,
 * removed it and swept the blobs the backup was writing (its set then restored nothing).
 */
export function processHost(): string {
  const ns = pidNamespace();
  return ns ? `${hostname()}~pidns${ns}` : hostname();
}

/**
 * Whether a writer named `host` (processHost's form) can be checked here by its pid (isAlive):
 * one of this host and PID namespace, or one named by the host name alone (written by a version
 * before the namespace was recorded, or where it could not be read). Any other counts as alive.
 */
export function checkableHere(host: string): boolean {
  return host === processHost() || host === hostname();
}
