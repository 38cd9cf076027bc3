import { DEFAULT_LOCATION, Input } from './core/inputs.js';
import { InputError } from './core/input-error.js';
import { DECRYPTION_PASSPHRASE_ENV, ENCRYPTION_PASSPHRASE_ENV, IDENTITY_ENV, PASSWORD_ENV, TOKEN_ENV } from './core/words.js';
import { closest } from './core/spelling.js';

/** One flag of one command, as its help line shows it: what it takes, its default, what it does. */
export interface Flag {
  name: string;
  /** The value's shape (`LIST`, `S`, `auto|zstd|gzip`); absent for a switch (true when given alone). */
  takes?: string;
  /** The default in words; absent when there is none. */
  default?: string;
  help: string;
}

export type Command = 'backup' | 'restore' | 'list' | 'verify' | 'prune' | 'ls' | 'extract' | 'diff';

/** A command's positional arguments: as its usage line spells them, and how many it takes. */
export interface Operands {
  usage: string;
  min: number;
  max: number;
}

const SWITCH = '[true|false]';
const flag = (name: string, takes: string | undefined, dflt: string | undefined, help: string): Flag => ({ name, takes, default: dflt, help });

const CREDENTIALS: Flag[] = [
  flag(
    Input.RegistryUsername,
    'USER',
    'the Docker config, as docker login writes it',
    `registry user; the password from --registry-password-stdin or ${PASSWORD_ENV}`,
  ),
  flag('registry-password-stdin', undefined, undefined, 'read the registry password from stdin (needs --registry-username)'),
  flag(Input.RegistryInsecure, 'LIST', 'loopback only', "registries (HOST[:PORT]) reached over plain HTTP, like docker's insecure-registries"),
];
const ENCRYPTION: Flag[] = [
  flag(Input.EncryptionRecipients, 'LIST', undefined, 'encrypt blobs and the set document (age) to these public keys (age1…) or recipients files'),
  flag('encryption-passphrase-stdin', undefined, undefined, `encrypt with a passphrase read from stdin (or ${ENCRYPTION_PASSPHRASE_ENV})`),
  flag(Input.RegistryPullableImage, SWITCH, 'false', 'with a key: keep image layers and configs in clear so registry: images stay pullable'),
];
const DECRYPTION: Flag[] = [
  flag(Input.DecryptionIdentity, 'FILE', IDENTITY_ENV, 'an age identity file (AGE-SECRET-KEY-1…) to read encrypted sets with'),
  flag('decryption-passphrase-stdin', undefined, undefined, `read encrypted sets with a passphrase read from stdin (or ${DECRYPTION_PASSPHRASE_ENV})`),
];
const SOURCE = flag(Input.Source, 'LOCATION', DEFAULT_LOCATION, 'where to read: dir:PATH, registry:HOST[:PORT]/PREFIX or artifact:NAME');
const SNAPSHOT = flag(Input.Snapshot, 'TAG|latest', 'latest', 'the set to read');
const OTHER_RUN: Flag[] = [
  flag(Input.RunId, 'ID', 'this workflow run', `read artifact:NAME from another workflow run (a token with actions:read in ${TOKEN_ENV})`),
  flag(Input.Repository, 'OWNER/NAME', 'GITHUB_REPOSITORY', 'the repository of --run-id'),
];
const KEEP = flag(
  Input.Keep,
  'RULES',
  undefined,
  'retention policy applied after the set is written, counted per container: last=N, hourly|daily|weekly|monthly|yearly=N, within=DURATION',
);
const JSON_OUT = flag('json', SWITCH, 'false', 'print JSON instead of a table');
const DOCKER_HOST = flag(
  Input.DockerHost,
  'ADDRESS',
  'DOCKER_HOST, else unix:///var/run/docker.sock',
  'the engine: unix:///PATH, tcp://HOST:PORT (TLS with DOCKER_TLS_VERIFY and DOCKER_CERT_PATH) or ssh://[USER@]HOST',
);
const INCLUDE_VOLUMES = flag(Input.IncludeVolumes, SWITCH, 'true', 'named and anonymous volumes too');

/**
 * Every command's flags: the one table the CLI's parser, its help and its suggestions read.
 * The words follow the inputs of action.yml and restore/action.yml, shortened to a line.
 */
export const COMMANDS: Record<Command, { summary: string; flags: Flag[]; operands?: Operands }> = {
  backup: {
    summary: 'take a snapshot set of the selected containers',
    flags: [
      flag(Input.Containers, 'LIST', 'all', 'names, IDs, globs (web-*) or regular expressions in slashes (/^db-/)'),
      flag(Input.Labels, 'LIST', undefined, 'key or key=value; a container must match all'),
      flag(Input.Projects, 'LIST', undefined, 'Compose project names (com.docker.compose.project); a container must be in one'),
      flag(Input.Exclude, 'LIST', undefined, 'as --containers; removed from the selection'),
      flag(Input.Destination, 'LOCATION', DEFAULT_LOCATION, 'dir:PATH, registry:HOST[:PORT]/PREFIX or artifact:NAME; several: repeat or commas'),
      flag(Input.Tag, 'TAG', 'UTC time YYYYMMDDTHHMMSSZ', "the set's tag (never latest)"),
      flag(Input.Pause, SWITCH, 'true', 'pause each running container while it is taken'),
      flag(Input.Stop, SWITCH, 'false', 'stop each running container while it is taken, start it again after'),
      flag(Input.StopTimeout, 'S', "the container's own", 'seconds before the engine kills a stopping container, 0 to 3600'),
      flag(Input.PreCommand, 'CMD', undefined, 'shell command run inside each running container before its snapshot'),
      flag(Input.PostCommand, 'CMD', undefined, 'shell command run inside each running container after its snapshot'),
      flag(Input.HookTimeout, 'S', '300', 'seconds a pre- or post-command may take, 1 to 86400'),
      INCLUDE_VOLUMES,
      flag(Input.IncludeBindMounts, SWITCH, 'false', 'the content of bind-mounted host paths too'),
      flag(Input.OnError, 'continue|abort', 'continue', 'on a failed container: go on with the others, or stop and write no set'),
      flag(Input.IfNoMatch, 'warn|error|ignore', 'warn', 'when no container matches'),
      flag(Input.DryRun, SWITCH, 'false', 'print the plan and check the destinations; change nothing'),
      flag(Input.Compression, 'auto|zstd|gzip', 'auto', 'layer and volume compression (auto: zstd, gzip for old engines pushing to a registry)'),
      flag(Input.Parallelism, 'N', 'the number of CPUs', 'containers (a group counts as one) backed up at once, 1 to 64'),
      flag(
        Input.GroupBy,
        'none|compose-project|label:KEY',
        'none',
        'hold these containers together, one consistency group each (and those labelled container-snapshot.group)',
      ),
      flag(
        Input.LayerCompaction,
        'N',
        '8',
        'delta layers (what changed since the last snapshot) before the whole writable layer is taken again; 0: always whole',
      ),
      flag(Input.RetentionDays, '1-90', 'the repository setting', 'days an artifact: destination keeps the set'),
      KEEP,
      flag(Input.ExcludeEnv, 'LIST', undefined, 'environment variable names or globs left out of the stored configuration and image config'),
      ...ENCRYPTION,
      DOCKER_HOST,
      ...CREDENTIALS,
    ],
  },
  restore: {
    summary: 'recreate containers, volumes and configuration from a set',
    flags: [
      SOURCE,
      SNAPSHOT,
      flag(Input.Containers, 'LIST', 'every container of the set', 'names of containers in the set'),
      flag(Input.Rename, 'OLD=NEW', undefined, 'restore a container or named volume under another name; repeat or commas'),
      flag(Input.Replace, SWITCH, 'false', 'replace existing containers and non-empty volumes of the same names'),
      flag(Input.Start, 'auto|always|never', 'auto', 'auto: start what was running'),
      INCLUDE_VOLUMES,
      flag(Input.Paths, 'LIST', undefined, 'absolute paths: only these, from volumes, into the existing containers (--replace when they exist there)'),
      ...DECRYPTION,
      flag(Input.PortMap, 'PORT=NEWPORT', undefined, 'publish a host port of the set on another host port (8080=18080, 53/udp=5353); repeat or commas'),
      DOCKER_HOST,
      ...OTHER_RUN,
      ...CREDENTIALS,
    ],
  },
  list: { summary: 'print the complete sets of a location, newest first', flags: [SOURCE, ...DECRYPTION, ...OTHER_RUN, ...CREDENTIALS] },
  verify: {
    summary: 'read every blob of a set (or of every set), check its checksums and that it decrypts, one line per set and per container',
    flags: [
      SOURCE,
      SNAPSHOT,
      flag('all', SWITCH, 'false', 'every set of --source instead of one (--snapshot all says the same)'),
      ...DECRYPTION,
      ...OTHER_RUN,
      ...CREDENTIALS,
    ],
  },
  prune: {
    summary: 'remove the sets a retention policy does not keep, then the blobs no set uses',
    flags: [
      flag(Input.Destination, 'LOCATION', DEFAULT_LOCATION, 'dir:PATH or registry:HOST[:PORT]/PREFIX; several: repeat or commas'),
      { ...KEEP, help: 'retention policy (required), counted per container: last=N, hourly|daily|weekly|monthly|yearly=N, within=DURATION' },
      flag(Input.DryRun, SWITCH, 'false', 'print what would be removed; change nothing'),
      ...CREDENTIALS,
    ],
  },
  ls: {
    summary:
      "list a set's containers and their mounts (the newest set when no SNAPSHOT is given), or the files of one (writable layer and mounts), restoring nothing",
    operands: { usage: '[SNAPSHOT [CONTAINER[:PATH]]]', min: 0, max: 2 },
    flags: [SOURCE, JSON_OUT, ...DECRYPTION, ...OTHER_RUN, ...CREDENTIALS],
  },
  extract: {
    summary: "write one file or directory of a set's container (a mount or its writable layer) to a host directory",
    operands: { usage: 'SNAPSHOT CONTAINER:PATH', min: 2, max: 2 },
    flags: [
      SOURCE,
      flag('to', 'DIR', undefined, 'the host directory to write into (required; made when missing)'),
      flag('overwrite', SWITCH, 'false', 'replace files that exist in DIR'),
      flag('keep-special', SWITCH, 'false', 'make devices (as root) and keep setuid/setgid bits; else devices are left out and those bits dropped'),
      ...DECRYPTION,
      ...OTHER_RUN,
      ...CREDENTIALS,
    ],
  },
  diff: {
    summary: 'list the files added, changed and removed between two sets, per container and mount',
    operands: { usage: 'SNAPSHOT1 SNAPSHOT2', min: 2, max: 2 },
    flags: [SOURCE, JSON_OUT, ...DECRYPTION, ...OTHER_RUN, ...CREDENTIALS],
  },
};

const PROGRAM = 'node dist/cli.js';

/** Exit statuses, as the CLI returns them. */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

/** Whether `name` is one of the CLI's commands. */
export function isCommand(name: string): name is Command {
  return Object.hasOwn(COMMANDS, name);
}

/** The global usage: each command with its summary, where to find its flags, the exit statuses. */
export function usage(): string {
  const names = Object.keys(COMMANDS) as Command[];
  const width = Math.max(...names.map((n) => n.length));
  return [
    'container-snapshot: back up Docker containers (writable layer, volumes, configuration) and restore them.',
    '',
    `Usage: ${PROGRAM} COMMAND [--flag value ...]`,
    '',
    'Commands:',
    ...names.map((n) => `  ${n.padEnd(width)}  ${COMMANDS[n].summary}`),
    '',
    `${PROGRAM} COMMAND --help (or help COMMAND) lists its flags. ${PROGRAM} --version prints the version.`,
    'Exit status: 0 done, 1 failed (one error: line on stderr), 2 usage printed for no command, 130/143 interrupted (SIGINT/SIGTERM).',
  ].join('\n');
}

/** One command's usage: one line per flag with what it takes and its default. */
export function commandHelp(command: Command): string {
  const { summary, flags, operands } = COMMANDS[command];
  const left = flags.map((f) => `--${f.name}${f.takes ? ` ${f.takes}` : ''}`);
  const width = Math.max(...left.map((l) => l.length));
  const lines = flags.map((f, i) => `  ${left[i].padEnd(width)}  ${f.help}${f.default ? ` (default: ${f.default})` : ''}`);
  return [
    `${PROGRAM} ${command}: ${summary}.`,
    '',
    `Usage: ${PROGRAM} ${command}${operands ? ` ${operands.usage}` : ''} [--flag value ...]`,
    '',
    ...lines,
    '',
    'Lists take commas or repeated flags. A switch given alone means true. --flag=value works for every flag.',
  ].join('\n');
}

/**
 * Flags other tools (or this tool's other commands) name so, and the flag that does it here:
 * `--force` is what a user of `cp`/`docker rm` reaches for; list and verify read a location
 * (--source) that backup and prune write (--destination); extract writes to --to.
 */
const SAME_MEANING: ReadonlyMap<string, readonly string[]> = new Map([
  ['force', ['replace', 'overwrite']],
  ['overwrite', ['replace']],
  ['clobber', ['replace', 'overwrite']],
  ['source', ['destination']],
  ['destination', ['to', 'source']],
]);

function unknownFlag(command: Command, name: string): InputError {
  const names = COMMANDS[command].flags.map((f) => f.name);
  const near = SAME_MEANING.get(name)?.find((n) => names.includes(n)) ?? closest(name, names);
  const elsewhere = (Object.keys(COMMANDS) as Command[]).filter((c) => c !== command && COMMANDS[c].flags.some((f) => f.name === name));
  const hint = near ? ` Did you mean --${near}?` : elsewhere.length > 0 ? ` It is a flag of ${elsewhere.join(', ')}.` : '';
  return new InputError(`Unknown flag --${name} for ${command}.${hint} See ${PROGRAM} ${command} --help.`);
}

/** The refusal of an unknown command, with the nearest command when there is one. */
export function unknownCommand(name: string): InputError {
  const near = closest(name, Object.keys(COMMANDS));
  const names = Object.keys(COMMANDS);
  const expected = `${names.slice(0, -1).join(', ')} or ${names.at(-1)}`;
  return new InputError(`Unknown command '${name}'.${near ? ` Did you mean ${near}?` : ''} Expected ${expected}; see ${PROGRAM} --help.`);
}

/**
 * A command's flags as raw values by input name (a repeated flag's values joined by newlines, as a
 * List input). A switch alone is 'true'; a switch followed by a word takes it as its value, so
 * `--pause no` is refused like `--pause=no`. Throws InputError naming the flag, and on any
 * positional argument (see parseCommandLine for the commands that take them).
 */
export function parseArgs(command: Command, argv: string[]): Map<string, string> {
  return parseCommandLine(command, argv).flags;
}

/**
 * A command's flags (as parseArgs) and its positional arguments, checked against its operands.
 * In a command with operands a switch takes the next word only when it is true or false, so that
 * `ls --json SNAPSHOT` reads SNAPSHOT as an operand. Throws InputError in the CLI's words.
 */
export function parseCommandLine(command: Command, argv: string[]): { flags: Map<string, string>; operands: string[] } {
  const { flags, operands: takes } = COMMANDS[command];
  const values = new Map<string, string>();
  const operands: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) {
      if (!takes) throw new InputError(`Unexpected argument '${arg}' for ${command}. Expected --flag value; see ${PROGRAM} ${command} --help.`);
      operands.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    const spec = flags.find((f) => f.name === name);
    if (!spec) throw unknownFlag(command, name);
    let value: string;
    if (eq !== -1) value = arg.slice(eq + 1);
    else if (spec.takes === undefined || spec.takes === SWITCH) {
      const next = argv[i + 1];
      const takesNext = next !== undefined && !next.startsWith('--') && (!takes || /^(true|false)$/i.test(next));
      value = takesNext ? argv[++i] : 'true';
    } else {
      if (i + 1 >= argv.length) throw new InputError(`Flag --${name} needs a value: ${spec.takes}.`);
      // A flag right after (this command's or not, a typo): the value was left out (taking it would drop that flag, --dry-run say).
      const next = argv[i + 1];
      if (/^--[A-Za-z]/.test(next))
        throw new InputError(`Flag --${name} needs a value: ${spec.takes}, not ${next} (a value that starts with -- goes as --${name}=VALUE).`);
      value = argv[++i];
    }
    const previous = values.get(name);
    values.set(name, previous === undefined ? value : `${previous}\n${value}`);
  }
  if (takes && (operands.length < takes.min || operands.length > takes.max)) {
    throw new InputError(
      `${command} takes ${takes.usage}, given ${operands.length === 0 ? 'nothing' : operands.map((o) => `'${o}'`).join(' ')}. See ${PROGRAM} ${command} --help.`,
    );
  }
  return { flags: values, operands };
}
