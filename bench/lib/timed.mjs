// The single-goal bench scripts' (b1, b3, b4) way of timing a shell command and summing runs.
import { execFileSync, spawn } from 'node:child_process';
import { loadavg } from 'node:os';

/**
 * Runs `cmd` in sh after an untimed `sync` (no step pays for an earlier one's writeback). Resolves
 * with its wall-clock seconds and its output lines (stdout and stderr), each prefixed with the
 * seconds since `start` (process.hrtime.bigint(), ns; when the command starts by default) and
 * followed by `extra()`'s lines once it has ended; rejects with its stderr on a non-zero exit.
 */
export function timed(cmd, { start, extra } = {}) {
  execFileSync('sync');
  return new Promise((done, fail) => {
    const from = start ?? process.hrtime.bigint();
    const child = spawn('sh', ['-c', cmd], { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines = [];
    let err = '';
    const stamp = (data) => {
      const t = Number(process.hrtime.bigint() - from) / 1e9;
      for (const line of data.toString().split('\n').filter(Boolean)) lines.push(`${t.toFixed(2).padStart(7)}  ${line}`);
    };
    child.stdout.on('data', stamp);
    child.stderr.on('data', (d) => {
      err += d;
      stamp(d);
    });
    child.on('close', async (code) => {
      const seconds = Number(process.hrtime.bigint() - from) / 1e9;
      if (extra) lines.push(...(await extra()));
      if (code !== 0) fail(new Error(`${cmd} exited ${code}\n${err}`));
      else done({ seconds, lines });
    });
  });
}

/** The median of a list of numbers (the upper one of an even count). */
export const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** The 1, 5 and 15 minute load averages, as printed. */
export const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
