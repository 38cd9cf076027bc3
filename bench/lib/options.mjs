// Command-line options of bench/run.mjs.
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const USAGE =
  'usage: node bench/run.mjs [--quick] [--base-mb N] [--mb N] [--volume-mb N] [--runs N] [--json PATH] [--only SCENARIO,…]   (env: BENCH_BASE_MB, BENCH_MB, BENCH_VOLUME_MB, BENCH_RUNS)';

/** The scenarios in the order they run; `restore` restores what `backup` saved, so it brings `backup` along. */
export const SCENARIOS = ['backup', 'incremental', 'pause', 'sparse', 'registry', 'restore'];

/** The JSON result's default path: outside the worktree, overwritten by each run. */
export const DEFAULT_JSON = join(tmpdir(), 'container-snapshot-bench.json');

/**
 * Parses argv (without node and the script) over the BENCH_* environment: flags win.
 * Defaults: the scenario, a 400 MB base image, a 300 MB writable layer, a 200 MB volume.
 * --quick: a 40 MB base, a 30 MB layer, a 20 MB volume, B8 with 6 containers of 2 MB (B9: 0.25 GiB, sparse.mjs).
 * --only: a comma-separated subset of SCENARIOS (the goals they do not measure say "not measured").
 * Throws on an unknown flag, an unknown scenario or a non-positive size.
 */
export function parseOptions(argv, env = process.env) {
  const opts = {
    baseMB: Number(env.BENCH_BASE_MB ?? 400),
    layerMB: Number(env.BENCH_MB ?? 300),
    volumeMB: Number(env.BENCH_VOLUME_MB ?? 200),
    runs: Number(env.BENCH_RUNS ?? 1),
    json: DEFAULT_JSON,
    quick: false,
    only: new Set(SCENARIOS),
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') Object.assign(opts, { baseMB: 40, layerMB: 30, volumeMB: 20, quick: true });
    else if (a === '--base-mb') opts.baseMB = Number(argv[++i]);
    else if (a === '--mb') opts.layerMB = Number(argv[++i]);
    else if (a === '--volume-mb') opts.volumeMB = Number(argv[++i]);
    else if (a === '--runs') opts.runs = Number(argv[++i]);
    else if (a === '--json') opts.json = argv[++i];
    else if (a === '--only') {
      const names = String(argv[++i] ?? '')
        .split(',')
        .filter(Boolean);
      const unknown = names.filter((n) => !SCENARIOS.includes(n));
      if (names.length === 0 || unknown.length) throw new Error(`--only takes scenarios among ${SCENARIOS.join(', ')}, got ${unknown.join(', ') || 'nothing'}`);
      opts.only = new Set(names.includes('restore') ? [...names, 'backup'] : names);
    } else if (a === '--help' || a === '-h') {
      console.log(USAGE);
      process.exit(0);
    } else throw new Error(`unknown argument ${a}; ${USAGE}`);
  }
  for (const k of ['baseMB', 'layerMB', 'volumeMB', 'runs']) {
    if (!(opts[k] > 0)) throw new Error(`${k} must be a positive number, got ${opts[k]}`);
  }
  if (!opts.json) throw new Error('--json needs a path');
  // B8: 20 containers of 20 MB; --quick keeps CI short with fewer, smaller ones.
  opts.b8 = opts.quick ? { count: 6, mb: 2 } : { count: 20, mb: 20 };
  return opts;
}
