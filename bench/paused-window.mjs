#!/usr/bin/env node
// Where the paused window goes: the quick fixture (30 MB layer, 10 MB volume), then N rounds of a
// full backup to a fresh dir:, B2's change (a new 1 MB file in the layer, 1 MB rewritten in the
// volume), and the next backup into the same dir. Prints each backup's paused window (the log's
// `paused for N ms`), `docker commit -p` once a round, and the medians; with --prof DIR, each
// backup's log (every line stamped with the ms since it started) and CPU profile (node --cpu-prof);
// with --against PATH, another build's dist/cli.js in turns on the same fixture. Asserts nothing.
// --base-mb, --mb and --volume-mb size the fixture's base layer, writable layer and volume (default 0, 30 and 10; the full bench uses 400, 300 and 200).
// --settle S waits S seconds after the fixture is made, so that its files count as settled (unchanged for the kernel's writeback
// interval and more, ~40 s: file-index.ts racyMarginNs) as a scheduled backup finds them; without it nothing has settled in round 0.
//   npm run build && node bench/paused-window.mjs [--runs 3] [--base-mb 0] [--mb 30] [--volume-mb 10] [--settle 45] [--prof DIR] [--against /other/dist/cli.js]
import { randomBytes } from 'node:crypto';
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cleanup, makeFixture } from './lib/fixture.mjs';
import { CLI, MB, sh } from './lib/process.mjs';
import { largest, put, rewriteMiddle } from './scenarios/incremental.mjs';

const args = process.argv.slice(2);
const flag = (name, dflt) => {
  const n = args.includes(name) ? Number(args[args.indexOf(name) + 1]) : NaN;
  return Number.isFinite(n) && n >= 0 ? n : dflt;
};
const runs = Math.max(1, flag('--runs', 3));
const prof = args.includes('--prof') ? args[args.indexOf('--prof') + 1] : undefined;
// --against PATH: another build's dist/cli.js, run in turns with this one on the same fixture (each round: ours, then theirs, the order reversed every other round).
const against = args.includes('--against') ? args[args.indexOf('--against') + 1] : undefined;
const ctx = { prefix: `csbench-${randomBytes(3).toString('hex')}`, tmp: mkdtempSync(join(tmpdir(), 'csbench-')) };
process.on('exit', () => cleanup(ctx));
// SIGTERM too (timeout, a CI's cancel): the exit handler removes what the run made.
process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));

/** One backup, each line of its output stamped with the ms since it started. */
async function backup(dir, tag, label, cli = CLI) {
  const node = prof ? ['--cpu-prof', '--cpu-prof-dir', prof, '--cpu-prof-name', `${label}.cpuprofile`] : [];
  const started = performance.now();
  const child = spawn('node', [...node, cli, 'backup', '--containers', ctx.container, '--destination', `dir:${dir}`, '--tag', tag], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines = [];
  let rest = '';
  const onData = (d) => {
    const parts = (rest + d).split('\n');
    rest = parts.pop();
    for (const l of parts) lines.push(`${String(Math.round(performance.now() - started)).padStart(6)} ${l}`);
  };
  child.stdout.setEncoding('utf8').on('data', onData);
  child.stderr.setEncoding('utf8').on('data', onData);
  const code = await new Promise((resolve) => child.on('close', resolve));
  const out = lines.join('\n');
  if (code !== 0) throw new Error(`${label}: exit ${code}\n${out}`);
  const seconds = (performance.now() - started) / 1000;
  const paused = Number(/paused for (\d+) ms/.exec(out)?.[1]);
  if (prof) writeFileSync(join(prof, `${label}.log`), out);
  return { seconds, paused };
}

const load = () => execFileSync('cat', ['/proc/loadavg'], { encoding: 'utf8' }).split(' ').slice(0, 3).join(' ');

if (prof) mkdirSync(prof, { recursive: true });
await makeFixture(ctx, { baseMB: flag('--base-mb', 0), layerMB: flag('--mb', 30), volumeMB: flag('--volume-mb', 10) });
const volFile = largest(ctx.payload.volume, '/data');
console.log(`fixture ${ctx.container}: layer ${ctx.payload.layer.files.length} files, volume ${ctx.payload.volume.files.length} files; load ${load()}`);
const settle = flag('--settle', 0);
if (settle > 0) await new Promise((resolve) => setTimeout(resolve, settle * 1000));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const builds = { ours: CLI, ...(against ? { theirs: against } : {}) };
const rows = Object.fromEntries(Object.keys(builds).map((k) => [k, []]));
const commits = [];
let n = 0;
for (let i = 0; i < runs; i++) {
  const t = performance.now();
  sh(`docker commit -p ${ctx.container} ${ctx.prefix}-pw:c${i} >/dev/null`);
  commits.push(performance.now() - t);
  sh(`docker rmi ${ctx.prefix}-pw:c${i} >/dev/null`);
  const order = i % 2 ? Object.entries(builds).reverse() : Object.entries(builds);
  for (const [which, cli] of order) {
    const dir = join(ctx.tmp, `pw-${n++}`);
    const full = await backup(dir, 'full', `${which}-full-${i}`, cli);
    put(ctx, '', `usr/bench-new-${n}`, randomBytes(MB));
    rewriteMiddle(ctx, volFile);
    const inc = await backup(dir, 'inc', `${which}-inc-${i}`, cli);
    rows[which].push({ full, inc });
    console.log(
      `round ${i} ${which}: full paused ${full.paused} ms (${full.seconds.toFixed(2)} s), incremental paused ${inc.paused} ms (${inc.seconds.toFixed(2)} s), ratio ${(inc.paused / full.paused).toFixed(2)}; load ${load()}`,
    );
  }
}
const commit = median(commits);
console.log(`docker commit -p: median ${Math.round(commit)} ms of ${runs}`);
for (const [which, rs] of Object.entries(rows)) {
  const fp = median(rs.map((r) => r.full.paused));
  const ip = median(rs.map((r) => r.inc.paused));
  console.log(
    `${which}, median of ${runs}: full paused ${fp} ms (x${(fp / commit).toFixed(2)} of docker commit -p), incremental paused ${ip} ms, ratio ${(ip / fp).toFixed(2)}; full ${median(rs.map((r) => r.full.seconds)).toFixed(2)} s, incremental ${median(rs.map((r) => r.inc.seconds)).toFixed(2)} s`,
  );
}
