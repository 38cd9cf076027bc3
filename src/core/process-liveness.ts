/**
 * Whether a process that wrote a journal, a lock or a temporary file is still running: its pid, and
 * its start time from /proc/<pid>/stat (proc(5), field 22, in clock ticks since boot) so that a pid
 * the kernel gave again to another process is not taken for the same one. Linux only.
 */
import { readFileSync } from 'node:fs';

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
