#!/usr/bin/env node
// Benchmark: container-snapshot (node dist/cli.js) against the docker CLI, side by side, in one run.
// It prints seconds, bytes on disk and peak memory with ratios, then the goals of issue 12 (B1…B9)
// met or not, and writes the whole result as JSON; it never asserts a speed.
//
//   node bench/run.mjs [--quick] [--mb 300] [--volume-mb 100] [--runs 1] [--json PATH] [--only backup,incremental,…]
//   env: BENCH_MB, BENCH_VOLUME_MB, BENCH_RUNS (flags win)
//
// Everything it makes (containers, volumes, images, temp dirs) carries a random prefix and is
// removed at the end, also on failure or Ctrl-C; so does the registry B4 starts (lib/registry.mjs).
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { evaluate } from './goals.mjs';
import { startArtifacts } from './lib/artifacts.mjs';
import { cleanup, makeFixture } from './lib/fixture.mjs';
import { findDockerd } from './lib/measure.mjs';
import { parseOptions } from './lib/options.mjs';
import { CLI, progress, shQuiet } from './lib/process.mjs';
import { startRegistry } from './lib/registry.mjs';
import { facts, loadAverage, printFacts, printGoals, printNotes, printTables, writeJson } from './lib/report.mjs';
import { runBackups } from './scenarios/backup.mjs';
import { runIncremental } from './scenarios/incremental.mjs';
import { runPauseAndParallel } from './scenarios/pause.mjs';
import { runRegistry } from './scenarios/registry.mjs';
import { runRestores } from './scenarios/restore.mjs';
import { sparseVolume } from './sparse.mjs';

async function main() {
  const opts = parseOptions(process.argv.slice(2));
  if (!existsSync(CLI)) throw new Error(`${CLI} not found: run npm run build`);
  const started = Date.now();
  const ctx = {
    opts,
    prefix: `csbench-${randomBytes(3).toString('hex')}`,
    tmp: mkdtempSync(join(tmpdir(), 'csbench-')),
    dockerd: findDockerd(),
    saved: {},
    loadStart: loadAverage(),
  };
  // Cleanup is synchronous, so it also runs from 'exit': after signals, uncaught errors, EPIPE.
  // The registry first: it writes under ctx.tmp, which cleanup removes.
  process.on('exit', () => {
    ctx.registry?.kill();
    cleanup(ctx);
  });
  const onSignal = (sig) => {
    console.error(`\n${sig}: cleaning up`);
    process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.stdout.on('error', () => process.exit(1));
  try {
    await makeFixture(ctx, opts);
    await startArtifacts(ctx);
    const machine = facts(ctx);
    printFacts(ctx, machine);
    const on = (name) => opts.only.has(name);
    let backup = null;
    if (on('backup')) {
      progress('backup');
      backup = await runBackups(ctx);
    }
    // Before the restores, which remove the fixture container.
    let incremental = null;
    if (on('incremental')) {
      progress('incremental backup (B2, B6)');
      incremental = await runIncremental(ctx);
    }
    let pause = null;
    if (on('pause')) {
      progress('pause and parallel containers');
      pause = await runPauseAndParallel(ctx);
    }
    let sparse = null;
    let printSparse = () => {};
    if (on('sparse')) {
      progress('sparse volume');
      ({ print: printSparse, ...sparse } = await sparseVolume(ctx));
    }
    // B4 makes B2's change again: after every scenario that backs up the fixture, before the
    // restores remove it (they restore sets taken before any change).
    let registry = null;
    if (!on('registry')) {
      // not asked for
    } else if (shQuiet('command -v docker-registry && command -v htpasswd') !== '') {
      progress('incremental backup to a registry (B4)');
      await startRegistry(ctx);
      registry = await runRegistry(ctx);
      await ctx.registry.stop();
    } else console.error('.. B4 not measured: docker-registry or htpasswd not found (Debian: docker-registry, apache2-utils)');
    let restore = null;
    if (on('restore')) {
      progress('restore');
      restore = await runRestores(ctx);
    }
    const results = { backup, incremental, registry, restore, pause, sparse };
    const goals = evaluate(results);
    printTables(results);
    printSparse();
    printGoals(goals);
    const loadEnd = loadAverage();
    printNotes(ctx, loadEnd);
    writeJson(opts.json, { facts: { ...machine, loadEnd, seconds: Math.round((Date.now() - started) / 1000) }, goals, results });
  } finally {
    await ctx.artifacts?.stop();
    await ctx.registry?.stop();
    cleanup(ctx);
  }
}

main().catch((err) => {
  console.error(`bench failed: ${err.stack || err.message}`);
  process.exit(1);
});
