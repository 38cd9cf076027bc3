// B8's one-run step alone, for memory work (`node bench/many.mjs [--count 20] [--mb 20] [--runs 3]`):
// `count` running containers of ~`mb` MB each (a volume), then `runs` backups of all of them in one
// run, each into a fresh directory. Prints each run's wall seconds and peak RSS (lib/measure.mjs),
// then the largest peak; asserts nothing. Everything it makes carries a random prefix and is removed
// at the end, also on failure or Ctrl-C.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cleanup } from './lib/fixture.mjs';
import { findDockerd } from './lib/measure.mjs';
import { CLI, ROOT, q, sh } from './lib/process.mjs';
import { backupAllInOneRun, makeSmallContainers } from './scenarios/pause.mjs';

const USAGE = 'usage: node bench/many.mjs [--count N] [--mb N] [--runs N]';

function parse(argv) {
  const opts = { count: 20, mb: 20, runs: 3 };
  for (let i = 0; i < argv.length; i++) {
    const key = { '--count': 'count', '--mb': 'mb', '--runs': 'runs' }[argv[i]];
    if (!key) throw new Error(`unknown argument ${argv[i]}; ${USAGE}`);
    opts[key] = Number(argv[++i]);
    if (!(opts[key] > 0)) throw new Error(`${argv[i - 1]} takes a positive number; ${USAGE}`);
  }
  return opts;
}

async function main() {
  const opts = parse(process.argv.slice(2));
  if (!existsSync(CLI)) throw new Error(`${CLI} not found: run npm run build`);
  const ctx = { opts, prefix: `csbench-${randomBytes(3).toString('hex')}`, tmp: mkdtempSync(join(tmpdir(), 'csbench-')), dockerd: findDockerd() };
  process.on('exit', () => cleanup(ctx));
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));
  ctx.image = sh(`${q(join(ROOT, 'scripts/demo-image.sh'))} ${q(`${ctx.prefix}-base:busybox`)}`).trim();
  makeSmallContainers(ctx, opts.count, opts.mb);
  const peaks = [];
  for (let i = 0; i < opts.runs; i++) peaks.push((await backupAllInOneRun(ctx, i)).rssKB);
  console.log(
    `B8 one run, ${opts.count} x ${opts.mb} MB, ${opts.runs} run(s): peak RSS ${peaks.map((k) => (k / 1024).toFixed(0)).join(', ')} MB; largest ${(Math.max(...peaks) / 1024).toFixed(0)} MB`,
  );
}

main().catch((err) => {
  console.error(`bench failed: ${err.stack || err.message}`);
  process.exit(1);
});
