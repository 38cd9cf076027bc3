// Timed steps: wall seconds, peak RSS of the step's process tree, growth of the engine's memory;
// and rounds of variants that alternate their order.
import { spawn, execFileSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, progress, shown } from './process.mjs';

const GNU_TIME = '/usr/bin/time';
export const POLL_MS = 100;

function vmKB(pid, field) {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

function descendants(pid) {
  const kids = [];
  try {
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      kids.push(...readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').split(' ').filter(Boolean).map(Number));
    }
  } catch {
    return [];
  }
  return kids.concat(kids.flatMap(descendants));
}

/**
 * The engine's pid, or null. The engine does the export/import work for the docker CLI (in dockerd
 * and in the docker-tar/docker-untar helpers it spawns), so that tree's memory is watched too.
 */
export function findDockerd() {
  const comm = (p) => {
    try {
      return readFileSync(`/proc/${p}/comm`, 'utf8').trim();
    } catch {
      return '';
    }
  };
  const pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p) && comm(p) === 'dockerd');
  return pids.length === 1 ? Number(pids[0]) : null;
}

// PSS, not RSS: the docker-tar/untar helpers are re-executed dockerd binaries whose pages
// are shared with dockerd; summing RSS would count them twice.
function pssKB(pid) {
  try {
    return Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

function engineKB(dockerd) {
  if (!dockerd) return 0;
  return [dockerd, ...descendants(dockerd)].reduce((sum, p) => sum + pssKB(p), 0);
}

// BENCH_NO_GNU_TIME=1 forces the polling fallback (to check it).
const HAVE_GNU_TIME = existsSync(GNU_TIME) && !process.env.BENCH_NO_GNU_TIME;
/** How peak RSS is measured, for the report. */
export const RSS_METHOD = HAVE_GNU_TIME
  ? `${GNU_TIME} -f %M: max RSS of the largest process of the step (sh, docker, zstd or node)`
  : `polling /proc/<pid>/status VmHWM of the step's process tree every ${POLL_MS} ms (no /usr/bin/time)`;

/**
 * Runs one shell command, timed: { seconds, rssKB (peak of its process tree), engineKB (peak growth
 * of the engine's PSS while it ran) }. Output goes to ctx.tmp/step.log, shown on failure (rejects).
 */
export function measure(ctx, cmd) {
  const log = join(ctx.tmp, 'step.log');
  const rssFile = join(ctx.tmp, 'step.rss');
  // Flush earlier steps' dirty pages first, so no step pays for another's writeback.
  execFileSync('sync');
  const fd = openSync(log, 'w');
  const argv = HAVE_GNU_TIME ? [GNU_TIME, '-f', '%M', '-o', rssFile, 'sh', '-c', cmd] : ['sh', '-c', cmd];
  const engineStart = engineKB(ctx.dockerd);
  let enginePeak = engineStart;
  let treePeak = 0;
  const start = process.hrtime.bigint();
  const child = spawn(argv[0], argv.slice(1), { cwd: ROOT, stdio: ['ignore', fd, fd], detached: true });
  ctx.running = child;
  const poll = setInterval(() => {
    if (ctx.dockerd) enginePeak = Math.max(enginePeak, engineKB(ctx.dockerd));
    if (!HAVE_GNU_TIME) for (const p of [child.pid, ...descendants(child.pid)]) treePeak = Math.max(treePeak, vmKB(p, 'VmHWM'));
  }, POLL_MS);
  return new Promise((resolvePromise, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      ctx.running = null;
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      clearInterval(poll);
      closeSync(fd);
      if (code !== 0) {
        const tail = readFileSync(log, 'utf8').split('\n').slice(-25).join('\n');
        return reject(new Error(`step failed (exit ${code}): ${cmd}\n${tail}`));
      }
      const rssKB = HAVE_GNU_TIME ? Number(readFileSync(rssFile, 'utf8').trim().split('\n').pop()) : treePeak;
      progress(`   ${seconds.toFixed(2).padStart(6)} s ${(rssKB / 1024).toFixed(0).padStart(4)} MB  ${shown(cmd, ctx)}`);
      resolvePromise({ seconds, rssKB, engineKB: Math.max(0, enginePeak - engineStart) });
    });
  });
}

/** Several steps run one after the other count as one: summed time, the largest peaks. */
export function combine(steps) {
  return {
    seconds: steps.reduce((s, x) => s + x.seconds, 0),
    rssKB: Math.max(...steps.map((x) => x.rssKB)),
    engineKB: Math.max(...steps.map((x) => x.engineKB)),
  };
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/**
 * Runs every variant once per round, in reverse order on odd rounds so that no variant
 * always goes first or last (the machine is shared and drifts). Keeps, per variant and row,
 * the median time and size (and paused window, when a row has one) and the largest peaks:
 * { variant: { row: { seconds, bytes, rssKB, engineKB, paused? } } }.
 */
export async function rounds(runs, variants) {
  const samples = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
  for (let i = 0; i < runs; i++) {
    const order = Object.keys(variants);
    if (i % 2 === 1) order.reverse();
    for (const key of order) samples[key].push(await variants[key](i));
  }
  const summary = (rows) => ({
    seconds: median(rows.map((r) => r.seconds)),
    bytes: median(rows.map((r) => r.bytes)),
    rssKB: Math.max(...rows.map((r) => r.rssKB)),
    engineKB: Math.max(...rows.map((r) => r.engineKB)),
    ...(rows[0].paused !== undefined && { paused: median(rows.map((r) => r.paused)) }),
  });
  return Object.fromEntries(
    Object.entries(samples).map(([key, runsOf]) => [key, Object.fromEntries(Object.keys(runsOf[0]).map((row) => [row, summary(runsOf.map((s) => s[row]))]))]),
  );
}
