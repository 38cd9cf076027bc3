#!/usr/bin/env node
// Goal B3 alone: the bench fixture (bench/lib/fixture.mjs), one backup to dir: (by the first --cli)
// and one `docker commit` + `docker save -o` + `docker cp` of the volume; then in alternating turns
// a restore by each --cli and `docker load -i` + create + `docker cp` into the volume + start, as
// bench/scenarios/restore.mjs runs them. Prints each restore's seconds and the ratio of each build
// to the docker CLI (medians); with --phases, the seconds from the restore's start to each line of
// its log. It never asserts a speed.
//
//   node bench/b3.mjs [--cli dist/cli.js]... [--base-mb 400] [--mb 300] [--volume-mb 200] [--runs 1] [--phases] [--cpu-prof DIR] [--node-option OPTION]...
//
// Several --cli compare builds side by side (`node scripts/build.mjs src/cli.ts=.tmp/cli-new/cli.js`).
// Everything it makes carries a random prefix and is removed at the end.
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { checkRestored, cleanup, makeFixture, removeContainerAndVolume } from './lib/fixture.mjs';
import { CLI, q, shQuiet } from './lib/process.mjs';
import { load, median, timed } from './lib/timed.mjs';

function parse(argv) {
  const opts = { clis: [], baseMB: 400, layerMB: 300, volumeMB: 200, runs: 1, phases: false, prof: undefined, nodeOptions: [] };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--cli') opts.clis.push(resolve(argv[++i]));
    else if (argv[i] === '--base-mb') opts.baseMB = Number(argv[++i]);
    else if (argv[i] === '--mb') opts.layerMB = Number(argv[++i]);
    else if (argv[i] === '--volume-mb') opts.volumeMB = Number(argv[++i]);
    else if (argv[i] === '--runs') opts.runs = Number(argv[++i]);
    else if (argv[i] === '--phases') opts.phases = true;
    else if (argv[i] === '--cpu-prof') opts.prof = resolve(argv[++i]);
    else if (argv[i] === '--node-option') opts.nodeOptions.push(argv[++i]);
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  if (opts.clis.length === 0) opts.clis.push(CLI);
  return opts;
}

/**
 * Runs `cmd` in sh (lib/timed.mjs); with `phases`, its output lines and the engine's events that name
 * `prefix` or a helper (`docker events`, on the same clock), in time order.
 */
function timedWithEvents(cmd, phases, prefix = '') {
  if (!phases) return timed(cmd);
  const start = process.hrtime.bigint();
  const wallNs = BigInt(Date.now()) * 1_000_000n;
  const format = '{{.TimeNano}} {{.Type}} {{.Action}} {{.Actor.ID}} {{.Actor.Attributes.name}} {{.Actor.Attributes.image}}';
  const events = spawn('docker', ['events', '--since', (Date.now() / 1000).toFixed(3), '--format', format], { stdio: ['ignore', 'pipe', 'ignore'] });
  const seen = [];
  let partial = '';
  events.stdout.on('data', (d) => {
    const all = (partial + d.toString()).split('\n');
    partial = all.pop();
    for (const line of all) {
      const [ns, type, action, id, ...rest] = line.split(' ');
      // Other runs share the engine: only what names this one, or a helper's.
      if (!/^\d+$/.test(ns) || !(line.includes(prefix) || line.includes('container-snapshot/'))) continue;
      seen.push(`${(Number(BigInt(ns) - wallNs) / 1e9).toFixed(2).padStart(7)}  [engine] ${type} ${action} ${id.slice(0, 24)} ${rest.join(' ')}`);
    }
  });
  const extra = async () => {
    await new Promise((r) => setTimeout(r, 500));
    events.kill();
    return seen;
  };
  return timed(cmd, { start, extra }).then((r) => ({ ...r, lines: r.lines.sort((x, y) => parseFloat(x) - parseFloat(y)) }));
}

async function main() {
  const opts = parse(process.argv.slice(2));
  const ctx = { prefix: `csb3-${randomBytes(3).toString('hex')}`, tmp: mkdtempSync(join(tmpdir(), 'csb3-')), saved: {} };
  process.on('exit', () => cleanup(ctx));
  // SIGTERM too (timeout, a CI's cancel): the exit handler removes what the run made.
  process.on('SIGINT', () => process.exit(130));
  process.on('SIGTERM', () => process.exit(143));
  console.log(`load average at start: ${load()}`);
  await makeFixture(ctx, opts);
  console.log(`fixture: layer ${ctx.sizeRw} bytes, ${opts.volumeMB} MB volume`);
  const dir = join(ctx.tmp, 'cs');
  await timed(`node ${q(opts.clis[0])} backup --containers ${ctx.container} --destination dir:${q(dir)} --tag cold`);
  const img = `${ctx.prefix}-commit:saved`;
  const layerFile = join(ctx.tmp, 'layer.tar');
  const volFile = join(ctx.tmp, 'volume.tar');
  execFileSync('sh', [
    '-c',
    `docker commit ${ctx.container} ${img} >/dev/null && docker save -o ${q(layerFile)} ${img} && docker cp ${ctx.container}:/data - > ${q(volFile)}`,
  ]);
  execFileSync('sh', ['-c', `docker rmi ${img} >/dev/null`]);
  const times = { docker: [], ...Object.fromEntries(opts.clis.map((c) => [c, []])) };
  for (let run = 0; run < opts.runs; run++) {
    const order = run % 2 === 0 ? ['docker', ...opts.clis] : [...opts.clis].reverse().concat('docker');
    for (const who of order) {
      removeContainerAndVolume(ctx);
      if (who === 'docker') {
        const cmd = [
          `docker load -i ${q(layerFile)} >/dev/null`,
          `docker create --name ${ctx.container} -v ${ctx.volume}:/data ${img} >/dev/null`,
          `docker cp - ${ctx.container}:/ < ${q(volFile)}`,
          `docker start ${ctx.container} >/dev/null`,
        ].join(' && ');
        const r = await timedWithEvents(cmd, opts.phases, ctx.prefix);
        checkRestored(ctx, 'docker restore');
        removeContainerAndVolume(ctx);
        shQuiet(`docker rmi ${img}`);
        times.docker.push(r.seconds);
        console.log(`run ${run} docker load+create+cp+start  ${r.seconds.toFixed(2)} s  (load ${load()})`);
        if (opts.phases) for (const line of r.lines) console.log(`    ${line}`);
        continue;
      }
      const i = opts.clis.indexOf(who);
      const prof = opts.prof ? `--cpu-prof --cpu-prof-dir ${q(opts.prof)} --cpu-prof-name ${q(`cli${i}-run${run}.cpuprofile`)} ` : '';
      const r = await timedWithEvents(
        `node ${prof}${opts.nodeOptions.map(q).join(' ')} ${q(who)} restore --source dir:${q(dir)} --snapshot cold`,
        opts.phases,
        ctx.prefix,
      );
      checkRestored(ctx, `${who} restore`);
      removeContainerAndVolume(ctx);
      shQuiet(`docker rmi container-snapshot/${ctx.container}:cold`);
      times[who].push(r.seconds);
      console.log(`run ${run} ${who}  ${r.seconds.toFixed(2)} s  (load ${load()})`);
      if (opts.phases) for (const line of r.lines.filter((l) => !/^\s*[\d.]+ {2}(\s|[{}[\]"])/.test(l))) console.log(`    ${line}`);
    }
  }
  const d = median(times.docker);
  for (const c of opts.clis) console.log(`B3 ${c}: x${(median(times[c]) / d).toFixed(2)} (${median(times[c]).toFixed(2)} s vs ${d.toFixed(2)} s)`);
  console.log(`load average at end: ${load()}`);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
