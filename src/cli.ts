import './shims.js';
import { readFileSync } from 'node:fs';
import { backup, diff, engineAt, extract, list, ls, prune, restore, verifyReport, type SetSource } from './commands.js';
import { Input, parseBackupInputs, parseDestinations, parseKeys, parseRestoreInputs, parseSource, parseSourceRun } from './core/inputs.js';
import { InputError } from './core/input-error.js';
import { parseBoolean } from './core/input-values.js';
import { parseCredentials } from './core/destination-input.js';
import { parseSnapshotRef } from './core/restore-input.js';
import { CLI_WORDS, DECRYPTION_PASSPHRASE_ENV, ENCRYPTION_PASSPHRASE_ENV, IDENTITY_ENV, PASSWORD_ENV, TOKEN_ENV } from './core/words.js';
import { engineEnv } from './core/engine-address.js';
import { EXIT, commandHelp, isCommand, parseArgs, parseCommandLine, unknownCommand, usage, type Command } from './cli-args.js';
import { parseTarget, type Target } from './browse/paths.js';
import { diffText, pathListingText, setListingText } from './browse/format.js';
import { TOOL } from './version.js';
import { errorMessage, type Logger } from './core/log.js';
import { guarded } from './core/guard.js';
import { fileJournal } from './core/recovery.js';
import { guardedRestore, restoreJournal } from './snapshot/restore-journal.js';
import { failureLine, pruneReport, setsTable, verifyFailureLine, verifyLines } from './report.js';
import { ALL_SETS } from './snapshot/verify.js';
import { parseRetentionPolicy } from './core/retention-input.js';

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

/**
 * A reader of stdout or stderr that goes away (`| head`, a closed terminal) leaves writes failing
 * with EPIPE. Unhandled, each is an uncaught exception mid-run: the backup's guard cancels the run
 * and logs that, which fails again, without end. What is written there is dropped instead, and the
 * run ends as it would have: every container put back, the set written or not, the exit status the same.
 */
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE' && err.code !== 'ERR_STREAM_DESTROYED') throw err;
  });
}

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
  const fromStdin = parseBoolean('--registry-password-stdin', flags.get('registry-password-stdin') ?? '', false);
  if (fromStdin && username === '')
    throw new InputError('--registry-password-stdin needs --registry-username. Expected --registry-username U --registry-password-stdin.');
  const password = fromStdin ? readFileSync(0, 'utf8').replace(/\r?\n$/, '') : (process.env[PASSWORD_ENV] ?? '');
  if (fromStdin && password === '') throw new InputError('--registry-password-stdin read an empty password. Expected the registry password on stdin.');
  if (username !== '' && password === '') throw new InputError(`--registry-username needs a password. Expected --registry-password-stdin or ${PASSWORD_ENV}.`);
  if (username === '' && password !== '') throw new InputError(`${PASSWORD_ENV} is set without --registry-username. Expected both or neither.`);
  return { username, password };
}

/** The CLI's stdin switches: stdin is read once, so one of them at most. */
const STDIN_FLAGS = ['registry-password-stdin', 'encryption-passphrase-stdin', 'decryption-passphrase-stdin'];

/**
 * The keys as the CLI takes them: passphrases from stdin or an environment variable, an identity from
 * a file (--decryption-identity) or an environment variable; never a key or passphrase on argv.
 */
function cliKeys(flags: Map<string, string>): Map<string, string> {
  const onStdin = STDIN_FLAGS.filter((f) => parseBoolean(`--${f}`, flags.get(f) ?? '', false));
  if (onStdin.length > 1)
    throw new InputError(`--${onStdin.join(' and --')} both read stdin. Expected one of them; give the other in its environment variable.`);
  const fromStdin = (flag: string, env: string) => {
    if (!onStdin.includes(flag)) return process.env[env] ?? '';
    const value = readFileSync(0, 'utf8').replace(/\r?\n$/, '');
    if (value === '') throw new InputError(`--${flag} read an empty passphrase. Expected the passphrase on stdin.`);
    return value;
  };
  const identity = flags.get(Input.DecryptionIdentity);
  if (identity?.includes('AGE-SECRET-KEY-')) {
    throw new InputError(
      `--${Input.DecryptionIdentity} takes a file: a key on the command line shows in ps. Expected --${Input.DecryptionIdentity} FILE, or the key in ${IDENTITY_ENV}.`,
    );
  }
  return new Map([
    [Input.EncryptionPassphrase, fromStdin('encryption-passphrase-stdin', ENCRYPTION_PASSPHRASE_ENV)],
    [Input.DecryptionPassphrase, fromStdin('decryption-passphrase-stdin', DECRYPTION_PASSPHRASE_ENV)],
    [Input.DecryptionIdentity, identity ?? process.env[IDENTITY_ENV] ?? ''],
  ]);
}

function reader(flags: Map<string, string>, credentials: { username: string; password: string }): (name: string) => string {
  const keys = cliKeys(flags);
  return (name) => {
    const key = keys.get(name);
    if (key !== undefined) return key;
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
  return line ? EXIT.failed : EXIT.ok;
}

/** Usage, help or the version, when that is what was asked for: the exit status; else undefined. */
function helpOrVersion(command: string | undefined, rest: string[]): number | undefined {
  if (!command) {
    print(usage());
    return EXIT.usage;
  }
  if (command === '--version' || command === '-V') {
    print(TOOL.version);
    return EXIT.ok;
  }
  if (command === '--help' || command === '-h' || command === 'help') {
    const topic = rest[0];
    if (topic !== undefined && !isCommand(topic)) throw unknownCommand(topic);
    print(topic ? commandHelp(topic) : usage());
    return EXIT.ok;
  }
  if (isCommand(command) && (rest.includes('--help') || rest.includes('-h'))) {
    print(commandHelp(command));
    return EXIT.ok;
  }
  return undefined;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const answered = helpOrVersion(command, rest);
  if (answered !== undefined) return answered;
  if (!isCommand(command)) throw unknownCommand(command);
  if (command === 'ls' || command === 'extract' || command === 'diff') return runBrowse(command, rest);
  const flags = parseArgs(command, rest);
  const snapshotGiven = flags.has(Input.Snapshot);
  if (!snapshotGiven) flags.set(Input.Snapshot, 'latest');
  const get = reader(flags, cliCredentials(flags));
  const deps = { log: cliLogger, env: process.env, words: CLI_WORDS };
  if (command === 'backup') {
    const opts = parseBackupInputs(get, undefined, process.env, CLI_WORDS);
    const engine = engineAt(opts.engine);
    const env = engineEnv(process.env, opts.engine);
    const handle = fileJournal(env);
    const result = await guarded(handle, engine, cliLogger, (signal) => backup(opts, { ...deps, env, engine, journal: handle.journal, signal }));
    // No tag where no set was written (nothing matched, every container failed): nothing to restore by it.
    const snapshot = result.written || opts.dryRun ? result.tag : undefined;
    print(
      JSON.stringify(
        {
          snapshot,
          failed: result.failed,
          engine: result.engine,
          destinations: result.destinations,
          containers: result.containers,
          groups: result.groups ?? [],
          artifacts: result.artifacts,
          pruned: result.pruned,
        },
        null,
        2,
      ),
    );
    const code = failures(result.containers.map((c) => ({ name: c.name, error: c.error, failed: c.status === 'failed' })));
    if (result.incomplete) console.error(`error: ${result.incomplete}`);
    return result.incomplete ? EXIT.failed : code;
  }
  if (command === 'restore') {
    const opts = parseRestoreInputs(get, CLI_WORDS, process.env);
    const env = engineEnv(process.env, opts.engine);
    const handle = restoreJournal(env);
    const result = await guardedRestore(handle, cliLogger, () => restore(opts, { ...deps, env, txn: handle.txn }));
    print(
      JSON.stringify(
        { snapshot: result.tag, failed: result.failed, engine: result.engine, sourceEngine: result.sourceEngine, containers: result.containers },
        null,
        2,
      ),
    );
    return failures(result.containers.map((c) => ({ name: c.from, error: c.error, failed: c.status === 'failed' })));
  }
  if (command === 'prune') return runPrune(get);
  const source = parseSource(get, CLI_WORDS);
  const otherRun = parseSourceRun(get, source, CLI_WORDS);
  const credentials = parseCredentials(get(Input.RegistryUsername), get(Input.RegistryPassword), CLI_WORDS);
  const keyed = { ...deps, decryption: parseKeys(get, CLI_WORDS) };
  if (command === 'list') {
    const sets = await list(source, credentials, keyed, otherRun);
    print(sets.length > 0 ? setsTable(sets) : `No snapshot sets in ${source.raw}.`);
    return EXIT.ok;
  }
  const snapshot = verifiedSnapshot(get, snapshotGiven);
  const report = await verifyReport(source, snapshot, credentials, keyed, otherRun);
  print(verifyLines(report).join('\n'));
  const damaged = verifyFailureLine(report);
  if (damaged) console.error(`error: ${damaged}`);
  return damaged ? EXIT.failed : EXIT.ok;
}

/** The set(s) `verify` reads: --snapshot (latest by default), or every set with --all (or --snapshot all). */
function verifiedSnapshot(get: (name: string) => string, snapshotGiven: boolean): string {
  const all = parseBoolean('--all', get('all'), false);
  if (all && snapshotGiven) throw new InputError('--all and --snapshot both choose the sets to verify. Expected one of them.');
  return all ? ALL_SETS : parseSnapshotRef(get(Input.Snapshot), '--snapshot');
}

/** `ls`, `extract` and `diff`: sets read from --source (encrypted ones with the decryption keys), by the tags given as operands; the engine is not used. */
async function runBrowse(command: Command, argv: string[]): Promise<number> {
  const { flags, operands } = parseCommandLine(command, argv);
  const get = reader(flags, cliCredentials(flags));
  const spec = parseSource(get, CLI_WORDS);
  const from: SetSource = {
    spec,
    credentials: parseCredentials(get(Input.RegistryUsername), get(Input.RegistryPassword), CLI_WORDS),
    artifactRun: parseSourceRun(get, spec, CLI_WORDS),
  };
  const deps = { log: cliLogger, env: process.env, words: CLI_WORDS, decryption: parseKeys(get, CLI_WORDS) };
  const json = parseBoolean('--json', get('json'), false);
  // ls alone lists the newest set; the others name their sets.
  const snapshot = command === 'ls' && operands.length === 0 ? 'latest' : parseSnapshotRef(operands[0], command === 'diff' ? 'SNAPSHOT1' : 'SNAPSHOT');
  if (command === 'ls') {
    const target = operands[1] === undefined ? undefined : parseTarget(operands[1], 'CONTAINER[:PATH]');
    const listing = await ls(from, snapshot, target, deps);
    // Which set `latest` was, said beside the table (stderr), so that stdout stays the listing alone.
    if (operands.length === 0 && !json) cliLogger.info(`snapshot ${listing.snapshot} (the newest in ${spec.raw})`);
    print(json ? JSON.stringify(listing, null, 2) : 'entries' in listing ? pathListingText(listing) : setListingText(listing));
    return EXIT.ok;
  }
  if (command === 'extract') {
    const target = parseTarget(operands[1], 'CONTAINER:PATH', true) as Required<Target>;
    const to = get('to');
    if (to.trim() === '') throw new InputError('extract needs --to. Expected --to DIR, the host directory to write into.');
    const overwrite = parseBoolean('--overwrite', get('overwrite'), false);
    const keepSpecial = parseBoolean('--keep-special', get('keep-special'), false);
    const r = await extract(from, snapshot, target, { to, overwrite, keepSpecial, words: CLI_WORDS }, deps);
    const w = r.written;
    print(
      `${r.container}:${r.path} from snapshot ${r.snapshot} written to ${r.to}: ${w.files} file(s), ${w.directories} directory(ies), ${w.links} link(s), ${w.special} special file(s)${r.skipped.length ? `; ${r.skipped.length} left out (see warnings)` : ''}${r.stripped.length ? `; setuid/setgid dropped on ${r.stripped.length}` : ''}.`,
    );
    return EXIT.ok;
  }
  const changes = await diff(from, snapshot, parseSnapshotRef(operands[1], 'SNAPSHOT2'), deps);
  print(json ? JSON.stringify(changes, null, 2) : diffText(changes));
  return EXIT.ok;
}

/** `prune`: the policy applied to each --destination, a report of each on stdout. */
async function runPrune(get: (name: string) => string): Promise<number> {
  const policy = parseRetentionPolicy(get(Input.Keep), '--keep');
  if (!policy) throw new InputError('prune needs --keep. Expected --keep last=N,daily=N,… (see --help).');
  const dryRun = parseBoolean('--dry-run', get(Input.DryRun), false);
  const credentials = parseCredentials(get(Input.RegistryUsername), get(Input.RegistryPassword), CLI_WORDS);
  const destinations = parseDestinations(get, CLI_WORDS);
  // An artifact's retention is GitHub's (retention-days): nothing here removes one.
  const artifact = destinations.find((d) => d.kind === 'artifact');
  if (artifact) throw new InputError(`prune takes dir: or registry: locations, not ${artifact.raw}: artifacts expire after their retention-days.`);
  const results = await prune(destinations, policy, dryRun, credentials, { log: cliLogger, env: process.env });
  print(results.map(pruneReport).join('\n\n'));
  return EXIT.ok;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(`error: ${errorMessage(err)}`);
    process.exitCode = EXIT.failed;
  },
);
