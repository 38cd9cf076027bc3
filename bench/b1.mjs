#!/usr/bin/env node
// Goal B1 alone: the bench fixture (bench/lib/fixture.mjs), then in alternating turns a full backup
// to a fresh dir: by each --cli and `docker commit` + `docker save -o` + `docker cp` of the volume.
// Prints each step's seconds and the ratio of each build to the docker CLI (medians); with
// --phases, the seconds from the backup's start to each line of its log. It never asserts a speed.
//
//   node bench/b1.mjs [--cli dist/cli.js]... [--base-mb 400] [--mb 300] [--volume-mb 200] [--runs 1] [--phases]
//
// Several --cli compare builds side by side (`node scripts/build.mjs src/cli.ts=.tmp/cli-new/cli.js`).
// Everything it makes carries a random prefix and is removed at the end.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { cleanup, makeFixture, sizeOf } from './lib/fixture.mjs';
import { CLI, q } from './lib/process.mjs';
import { load, median, timed } from './lib/timed.mjs';

function parse(argv) {
  const opts = { clis: [], baseMB: 400, layerMB: 300, volumeMB: 200, runs: 1, phases: false };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--cli') opts.clis.push(resolve(argv[++i]));
    else if (argv[i] === '--base-mb') opts.baseMB = Number(argv[++i]);
    else if (argv[i] === '--mb') opts.layerMB = Number(argv[++i]);
    else if (argv[i] === '--volume-mb') opts.volumeMB = Number(argv[++i]);
    else if (argv[i] === '--runs') opts.runs = Number(argv[++i]);
    else if (argv[i] === '--phases') opts.phases = true;
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  if (opts.clis.length === 0) opts.clis.push(CLI);
  return opts;
}

async function main() {
  const opts = parse(process.argv.slice(2));
  const ctx = { prefix: `csb1-${randomBytes(3).toString('hex')}`, tmp: mkdtempSync(join(tmpdir(), 'csb1-')), saved: {} };
  const bye = () => cleanup(ctx);
  process.on('exit', bye);
  // SIGTERM too (timeout, a CI's cancel): the exit handler removes what the run made.
  process.on('SIGINT', () => process.exit(130));
  process.on('SIGTERM', () => process.exit(143));
  console.log(`load average at start: ${load()}`);
  await makeFixture(ctx, opts);
  console.log(`fixture: layer ${ctx.sizeRw} bytes, ${opts.volumeMB} MB volume`);
  const times = { docker: [], ...Object.fromEntries(opts.clis.map((c) => [c, []])) };
  for (let run = 0; run < opts.runs; run++) {
    const order = run % 2 === 0 ? ['docker', ...opts.clis] : [...opts.clis, 'docker'];
    for (const who of order) {
      if (who === 'docker') {
        const img = `${ctx.prefix}-commit:run${run}`;
        const cmd = `docker commit ${ctx.container} ${img} >/dev/null && docker save -o ${q(join(ctx.tmp, 'layer.tar'))} ${img} && docker cp ${ctx.container}:/data - > ${q(join(ctx.tmp, 'volume.tar'))}`;
        const r = await timed(cmd);
        execFileSync('sh', ['-c', `docker rmi ${img} >/dev/null; rm -f ${q(join(ctx.tmp, 'layer.tar'))} ${q(join(ctx.tmp, 'volume.tar'))}`]);
        times.docker.push(r.seconds);
        console.log(`run ${run} docker commit+save -o+cp  ${r.seconds.toFixed(2)} s  (load ${load()})`);
        continue;
      }
      const dir = join(ctx.tmp, `cs-${run}`);
      const r = await timed(`node ${q(who)} backup --containers ${ctx.container} --destination dir:${q(dir)} --tag cold`);
      const bytes = sizeOf(dir);
      execFileSync('rm', ['-rf', dir]);
      times[who].push(r.seconds);
      console.log(`run ${run} ${who}  ${r.seconds.toFixed(2)} s  ${(bytes / 1e6).toFixed(1)} MB  (load ${load()})`);
      if (opts.phases) for (const line of r.lines) console.log(`    ${line}`);
    }
  }
  const d = median(times.docker);
  for (const c of opts.clis) console.log(`B1 ${c}: x${(median(times[c]) / d).toFixed(2)} (${median(times[c]).toFixed(2)} s vs ${d.toFixed(2)} s)`);
  console.log(`load average at end: ${load()}`);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
