import './shims.js';
import { readFileSync } from 'node:fs';
import { backup, list, prune, restore, verify } from './commands.js';
import { Input, DEFAULT_LOCATION, parseBackupInputs, parseDestinations, parseRestoreInputs, parseSource, parseSourceRun } from './core/inputs.js';
import { InputError, parseBoolean, parseCredentials, parseSnapshotRef } from './core/options.js';
import { errorMessage, type Logger } from './core/log.js';
import { guarded } from './core/guard.js';
import { fileJournal } from './core/recovery.js';
import { guardedRestore, restoreJournal } from './snapshot/restore-journal.js';
import { Engine } from './engine/engine.js';
import { failureLine, pruneReport, setsTable } from './report.js';
import { parseRetentionPolicy } from './core/retention-input.js';

const BOOLEAN_FLAGS = new Set<string>([Input.Pause, Input.Stop, Input.IncludeVolumes, Input.IncludeBindMounts, Input.DryRun, Input.Replace]);
const PASSWORD_ENV = 'CONTAINER_SNAPSHOT_REGISTRY_PASSWORD';
const TOKEN_ENV = 'GITHUB_TOKEN';

const COMMON = [Input.RegistryUsername, 'registry-password-stdin'];
const OTHER_RUN = [Input.RunId, Input.Repository];
const FLAGS: Record<string, string[]> = {
  backup: [Input.Containers, Input.Labels, Input.Exclude, Input.Destination, Input.Tag, Input.Pause, Input.Stop, Input.StopTimeout, Input.PreCommand, Input.PostCommand, Input.HookTimeout, Input.IncludeVolumes, Input.IncludeBindMounts, Input.OnError, Input.IfNoMatch, Input.DryRun, Input.Compression, Input.RetentionDays, Input.Keep, ...COMMON],
  restore: [Input.Source, Input.Snapshot, Input.Containers, Input.Rename, Input.Replace, Input.Start, Input.IncludeVolumes, ...OTHER_RUN, ...COMMON],
  list: [Input.Source, ...OTHER_RUN, ...COMMON],
  verify: [Input.Source, Input.Snapshot, ...OTHER_RUN, ...COMMON],
  prune: [Input.Destination, Input.Keep, Input.DryRun, ...COMMON],
};

const HELP = `container-snapshot: back up Docker containers (writable layer, volumes, configuration) and restore them.

Usage:
  node dist/cli.js backup  [--containers a,web-*,/^db-/] [--labels k=v] [--exclude x] [--destination ${DEFAULT_LOCATION}]
                           [--tag T] [--pause true|false] [--stop [--stop-timeout S]] [--include-volumes true|false] [--include-bind-mounts]
                           [--pre-command CMD] [--post-command CMD] [--hook-timeout S]
                           [--on-error continue|abort] [--if-no-match warn|error|ignore] [--dry-run]
                           [--compression auto|zstd|gzip] [--retention-days 1-90] [--keep last=N,daily=N,…]
  node dist/cli.js restore [--source ${DEFAULT_LOCATION}] [--snapshot latest|TAG] [--containers a,b]
                           [--rename old=new] [--replace] [--start auto|always|never] [--include-volumes true|false]
                           [--run-id ID [--repository OWNER/NAME]]
  node dist/cli.js list    [--source ${DEFAULT_LOCATION}] [--run-id ID [--repository OWNER/NAME]]
  node dist/cli.js verify  [--source ${DEFAULT_LOCATION}] [--snapshot latest|TAG] [--run-id ID [--repository OWNER/NAME]]
  node dist/cli.js prune   --keep last=N,hourly=N,daily=N,weekly=N,monthly=N,yearly=N,within=1y2m3d4h
                           [--destination ${DEFAULT_LOCATION}] [--dry-run]

Locations: dir:PATH, registry:HOST[:PORT]/PREFIX or artifact:NAME. Several destinations: repeat --destination or separate with commas.
Artifacts: backing up to artifact:NAME works only inside a workflow run (it needs the runner's artifact service);
reading another run's artifacts works anywhere with --run-id, --repository (default GITHUB_REPOSITORY) and a token
with actions:read in ${TOKEN_ENV}.
Registry credentials: --registry-username U with --registry-password-stdin (or ${PASSWORD_ENV}),
else the Docker config (DOCKER_CONFIG or ~/.docker/config.json) as written by docker login.
Lists (containers, labels, exclude, rename) take commas or repeated flags.`;

function parseArgs(command: string, argv: string[]): Map<string, string> {
  const allowed = FLAGS[command];
  const values = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) throw new InputError(`Unexpected argument '${arg}'. Expected --flag value; see --help.`);
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    if (!allowed.includes(name)) throw new InputError(`Unknown flag --${name} for ${command}. Expected one of: ${allowed.map((f) => `--${f}`).join(' ')}.`);
    let value: string;
    if (eq !== -1) value = arg.slice(eq + 1);
    else if (BOOLEAN_FLAGS.has(name) || name === 'registry-password-stdin') {
      value = /^(true|false|True|False|TRUE|FALSE)$/.test(argv[i + 1] ?? '') ? argv[++i] : 'true';
    } else {
      if (i + 1 >= argv.length) throw new InputError(`Flag --${name} needs a value.`);
      value = argv[++i];
    }
    const previous = values.get(name);
    values.set(name, previous === undefined ? value : `${previous}\n${value}`);
  }
  return values;
}

/**
 * Stdout carries the command's result only, so it can be piped. What libraries write there for
 * a runner (@actions/core's progress lines and workflow commands) goes to stderr; the commands
 * only inside a workflow run, where the runner reads them from stderr too, and never on a
 * terminal (::add-mask:: would print the secret itself).
 */
const stdoutWrite = process.stdout.write.bind(process.stdout);
const print = (text: string) => stdoutWrite(`${text}\n`);
process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
  const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
  if (text.startsWith('::') && process.env.GITHUB_ACTIONS !== 'true') return true;
  return process.stderr.write(chunk, ...(rest as []));
}) as typeof process.stdout.write;

const cliLogger: Logger = {
  info: (m) => console.error(m),
  warning: (m) => console.error(`warning: ${m}`),
  error: (m) => console.error(`error: ${m}`),
  group: async (title, fn) => {
    console.error(`== ${title}`);
    return fn();
  },
};

/**
 * The registry credentials as the CLI takes them, refused in its own words when half given:
 * --registry-password-stdin needs --registry-username and a non-empty stdin.
 */
function cliCredentials(flags: Map<string, string>): { username: string; password: string } {
  const username = (flags.get(Input.RegistryUsername) ?? '').trim();
  const fromStdin = flags.get('registry-password-stdin') === 'true';
  if (fromStdin && username === '') throw new InputError('--registry-password-stdin needs --registry-username. Expected --registry-username U --registry-password-stdin.');
  const password = fromStdin ? readFileSync(0, 'utf8').replace(/\r?\n$/, '') : (process.env[PASSWORD_ENV] ?? '');
  if (fromStdin && password === '') throw new InputError('--registry-password-stdin read an empty password. Expected the registry password on stdin.');
  if (username !== '' && password === '') throw new InputError(`--registry-username needs a password. Expected --registry-password-stdin or ${PASSWORD_ENV}.`);
  if (username === '' && password !== '') throw new InputError(`${PASSWORD_ENV} is set without --registry-username. Expected both or neither.`);
  return { username, password };
}

function reader(flags: Map<string, string>, credentials: { username: string; password: string }): (name: string) => string {
  return (name) => {
    if (name === Input.GithubToken) return process.env[TOKEN_ENV] ?? '';
    if (name === Input.Repository) return flags.get(name) ?? process.env.GITHUB_REPOSITORY ?? '';
    if (name === Input.RegistryUsername) return credentials.username;
    if (name === Input.RegistryPassword) return credentials.password;
    return flags.get(name) ?? '';
  };
}

/** One error line for all the containers that failed; the exit status. */
function failures(containers: Array<{ name: string; error?: string; failed: boolean }>): number {
  const line = failureLine(containers, 'failed');
  if (line) console.error(`error: ${line}`);
  return line ? 1 : 0;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    print(HELP);
    return command ? 0 : 2;
  }
  if (!(command in FLAGS)) throw new InputError(`Unknown command '${command}'. Expected backup, restore, list, verify or prune.`);
  if (rest.includes('--help') || rest.includes('-h')) {
    print(HELP);
    return 0;
  }
  const flags = parseArgs(command, rest);
  if (!flags.has(Input.Snapshot)) flags.set(Input.Snapshot, 'latest');
  const get = reader(flags, cliCredentials(flags));
  const deps = { log: cliLogger, env: process.env };
  if (command === 'backup') {
    const opts = parseBackupInputs(get, undefined, process.env);
    const engine = new Engine();
    const handle = fileJournal(process.env);
    const result = await guarded(handle, engine, cliLogger, (signal) => backup(opts, { ...deps, engine, journal: handle.journal, signal }));
    print(JSON.stringify({ snapshot: result.tag, failed: result.failed, destinations: result.destinations, containers: result.containers, artifacts: result.artifacts, pruned: result.pruned }, null, 2));
    const code = failures(result.containers.map((c) => ({ name: c.name, error: c.error, failed: c.status === 'failed' })));
    if (result.incomplete) console.error(`error: ${result.incomplete}`);
    return result.incomplete ? 1 : code;
  }
  if (command === 'restore') {
    const opts = parseRestoreInputs(get);
    const handle = restoreJournal(process.env);
    const result = await guardedRestore(handle, cliLogger, () => restore(opts, { ...deps, txn: handle.txn }));
    print(JSON.stringify({ snapshot: result.tag, failed: result.failed, containers: result.containers }, null, 2));
    return failures(result.containers.map((c) => ({ name: c.from, error: c.error, failed: c.status === 'failed' })));
  }
  if (command === 'prune') return runPrune(get);
  const source = parseSource(get);
  const otherRun = parseSourceRun(get, source);
  const credentials = parseCredentials(get(Input.RegistryUsername), get(Input.RegistryPassword));
  if (command === 'list') {
    const sets = await list(source, credentials, deps, otherRun);
    print(sets.length > 0 ? setsTable(sets) : `No snapshot sets in ${source.raw}.`);
    return 0;
  }
  const verified = await verify(source, parseSnapshotRef(get(Input.Snapshot)), credentials, deps, otherRun);
  print(`Snapshot ${verified.tag}: ${verified.blobs} blob(s) verified.`);
  return 0;
}

/** `prune`: the policy applied to each --destination, a report of each on stdout. */
async function runPrune(get: (name: string) => string): Promise<number> {
  const policy = parseRetentionPolicy(get(Input.Keep), '--keep');
  if (!policy) throw new InputError('prune needs --keep. Expected --keep last=N,daily=N,… (see --help).');
  const dryRun = parseBoolean(Input.DryRun, get(Input.DryRun), false);
  const credentials = parseCredentials(get(Input.RegistryUsername), get(Input.RegistryPassword));
  const results = await prune(parseDestinations(get), policy, dryRun, credentials, { log: cliLogger, env: process.env });
  print(results.map(pruneReport).join('\n\n'));
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(`error: ${errorMessage(err)}`);
    process.exitCode = 1;
  },
);

