import type { BackupOptions, RestoreOptions } from './options.js';
import { InputError } from './input-error.js';
import { parseBoolean, parseChoice, splitList } from './input-values.js';
import { parseContainerName, parseLabelFilter, parseGroupBy, parseProjectName, parseSelector } from './selection-input.js';
import {
  parseArtifactRun,
  checkDistinctDestinations,
  parseCredentials,
  parseDestination,
  parseInsecureRegistries,
  markInsecure,
  type ArtifactRun,
  type Credentials,
  type DestinationSpec,
} from './destination-input.js';
import {
  parseLockTimeout,
  parseSettleSeconds,
  parseRetentionDays,
  parseStopTimeout,
  parseCommand,
  parseHookTimeout,
  parseParallelism,
  parseLayerCompaction,
  parseEnvPattern,
  parseTag,
} from './backup-input.js';
import { parseContainerPath, parseRename, parseSnapshotRef } from './restore-input.js';
import { parseDecryption, parseEncryption } from './key-inputs.js';
import { parseRetentionPolicy } from './retention-input.js';
import { parseEngineAddress, type EngineAddress } from './engine-address.js';
import { parsePortMap } from './port-map.js';
import { ACTION_WORDS, type Vocabulary } from './words.js';

export const Input = {
  Containers: 'containers',
  Labels: 'labels',
  Exclude: 'exclude',
  Projects: 'projects',
  GroupBy: 'group-by',
  Destination: 'destination',
  Tag: 'tag',
  Pause: 'pause',
  Stop: 'stop',
  StopTimeout: 'stop-timeout',
  PreCommand: 'pre-command',
  PostCommand: 'post-command',
  HookTimeout: 'hook-timeout',
  IncludeVolumes: 'include-volumes',
  IncludeBindMounts: 'include-bind-mounts',
  RegistryUsername: 'registry-username',
  RegistryPassword: 'registry-password',
  RegistryInsecure: 'registry-insecure',
  OnError: 'on-error',
  IfNoMatch: 'if-no-match',
  DryRun: 'dry-run',
  Compression: 'compression',
  Parallelism: 'parallelism',
  LayerCompaction: 'layer-compaction',
  RetentionDays: 'retention-days',
  Keep: 'keep',
  PruneOnly: 'prune-only',
  Source: 'source',
  Snapshot: 'snapshot',
  Rename: 'rename',
  Replace: 'replace',
  Start: 'start',
  RunId: 'run-id',
  Repository: 'repository',
  GithubToken: 'github-token',
  Paths: 'paths',
  ExcludeEnv: 'exclude-env',
  RegistryPullableImage: 'registry-pullable-image',
  EncryptionRecipients: 'encryption-recipients',
  EncryptionPassphrase: 'encryption-passphrase',
  DecryptionIdentity: 'decryption-identity',
  DecryptionPassphrase: 'decryption-passphrase',
  DockerHost: 'docker-host',
  PortMap: 'port-map',
  VerifyOnly: 'verify-only',
} as const;

export const DEFAULT_LOCATION = 'dir:./container-snapshots';

/** Reads one raw input by name; '' when not given. */
export type InputReader = (name: string) => string;

/**
 * Every backup input, and the environment variables a backup reads (CONTAINER_SNAPSHOT_LOCK_TIMEOUT),
 * checked before anything is changed. `words`: the interface's names for its inputs, used in every
 * message from here on (the action's by default).
 */
export function parseBackupInputs(get: InputReader, now?: Date, env: NodeJS.ProcessEnv = {}, words: Vocabulary = ACTION_WORDS): BackupOptions {
  const n = words.name;
  const destinations = parseDestinations(get, words);
  const keep = parseRetentionPolicy(get(Input.Keep), n(Input.Keep));
  const pruneOnly = parseBoolean(n(Input.PruneOnly), get(Input.PruneOnly), false);
  const encryption = parseEncryption(get(Input.EncryptionRecipients), get(Input.EncryptionPassphrase), {
    recipients: n(Input.EncryptionRecipients),
    passphrase: n(Input.EncryptionPassphrase),
  });
  const pullableImage = parseBoolean(n(Input.RegistryPullableImage), get(Input.RegistryPullableImage), false);
  if (encryption && pullableImage) encryption.pullableImage = true;
  if (pruneOnly && !keep)
    throw new InputError(`${n(Input.PruneOnly)} needs ${n(Input.Keep)}. Expected ${n(Input.Keep)} with at least one rule, e.g. last=7,daily=14.`);
  return {
    selection: {
      containers: splitList(get(Input.Containers)).map(parseSelector),
      labels: splitList(get(Input.Labels)).map(parseLabelFilter),
      projects: splitList(get(Input.Projects)).map((p) => parseProjectName(p, n(Input.Projects))),
      exclude: splitList(get(Input.Exclude)).map(parseSelector),
      ifNoMatch: parseChoice(n(Input.IfNoMatch), get(Input.IfNoMatch), ['warn', 'error', 'ignore'], 'warn'),
    },
    destinations,
    tag: parseTag(get(Input.Tag), now, n(Input.Tag)),
    pause: parseBoolean(n(Input.Pause), get(Input.Pause), true),
    stop: parseBoolean(n(Input.Stop), get(Input.Stop), false),
    stopTimeout: parseStopTimeout(get(Input.StopTimeout), n(Input.StopTimeout)),
    preCommand: parseCommand(get(Input.PreCommand)),
    postCommand: parseCommand(get(Input.PostCommand)),
    hookTimeout: parseHookTimeout(get(Input.HookTimeout), undefined, n(Input.HookTimeout)),
    includeVolumes: parseBoolean(n(Input.IncludeVolumes), get(Input.IncludeVolumes), true),
    includeBindMounts: parseBoolean(n(Input.IncludeBindMounts), get(Input.IncludeBindMounts), false),
    onError: parseChoice(n(Input.OnError), get(Input.OnError), ['continue', 'abort'], 'continue'),
    dryRun: parseBoolean(n(Input.DryRun), get(Input.DryRun), false),
    compression: parseChoice(n(Input.Compression), get(Input.Compression), ['auto', 'zstd', 'gzip'], 'auto'),
    parallelism: parseParallelism(get(Input.Parallelism), n(Input.Parallelism)),
    groupBy: parseGroupBy(get(Input.GroupBy), n(Input.GroupBy)),
    layerCompaction: parseLayerCompaction(get(Input.LayerCompaction), n(Input.LayerCompaction)),
    retentionDays: parseRetentionDays(get(Input.RetentionDays), n(Input.RetentionDays)),
    keep,
    pruneOnly,
    credentials: parseCredentials(get(Input.RegistryUsername), get(Input.RegistryPassword), words),
    excludeEnv: splitList(get(Input.ExcludeEnv)).map((p) => parseEnvPattern(p, n(Input.ExcludeEnv))),
    encryption,
    lockTimeoutMs: parseLockTimeout(env.CONTAINER_SNAPSHOT_LOCK_TIMEOUT),
    settleSeconds: parseSettleSeconds(env.CONTAINER_SNAPSHOT_SETTLE_SECONDS),
    engine: parseEngineInput(get, env, words),
    words,
  };
}

/** The destination input (or flag): several, distinct; the default location when empty. */
export function parseDestinations(get: InputReader, words: Vocabulary = ACTION_WORDS): DestinationSpec[] {
  const name = words.name(Input.Destination);
  const destinations = splitList(get(Input.Destination)).map((d) => parseDestination(d, name));
  if (destinations.length === 0) destinations.push(parseDestination(DEFAULT_LOCATION));
  checkDistinctDestinations(destinations, name);
  const insecure = parseInsecure(get, words);
  return destinations.map((d) => markInsecure(d, insecure));
}

/** The one location a restore, list or verify reads from. */
export function parseSource(get: InputReader, words: Vocabulary = ACTION_WORDS): DestinationSpec {
  const sources = splitList(get(Input.Source));
  const name = words.name(Input.Source);
  if (sources.length > 1) throw new InputError(`Invalid ${name} '${sources.join(', ')}'. Expected one location.`);
  return markInsecure(parseDestination(sources[0] ?? DEFAULT_LOCATION, name), parseInsecure(get, words));
}

/** The registries the registry-insecure input (or flag) names. */
function parseInsecure(get: InputReader, words: Vocabulary): Set<string> {
  return parseInsecureRegistries(splitList(get(Input.RegistryInsecure)), words.name(Input.RegistryInsecure));
}

/** The other workflow run to read artifact:NAME from; undefined for this run (or another kind of source). */
export function parseSourceRun(get: InputReader, source: DestinationSpec, words: Vocabulary = ACTION_WORDS): ArtifactRun | undefined {
  return parseArtifactRun(source, get(Input.RunId), get(Input.Repository), get(Input.GithubToken), words);
}

/**
 * The engine: docker-host (or --docker-host), else DOCKER_HOST with DOCKER_TLS_VERIFY and
 * DOCKER_CERT_PATH. Undefined when neither is given: the client's default socket.
 */
export function parseEngineInput(get: InputReader, env: NodeJS.ProcessEnv, words: Vocabulary = ACTION_WORDS): EngineAddress | undefined {
  const given = get(Input.DockerHost);
  if (given.trim() === '' && (env.DOCKER_HOST ?? '').trim() === '') return undefined;
  return parseEngineAddress(given, env, words.name(Input.DockerHost));
}

/**
 * Every restore input, checked before anything is changed; `words` as for parseBackupInputs;
 * `env`: where DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH are read.
 */
export function parseRestoreInputs(get: InputReader, words: Vocabulary = ACTION_WORDS, env: NodeJS.ProcessEnv = {}): RestoreOptions {
  const n = words.name;
  const source = parseSource(get, words);
  return {
    source,
    artifactRun: parseSourceRun(get, source, words),
    snapshot: parseSnapshotRef(get(Input.Snapshot), n(Input.Snapshot)),
    containers: splitList(get(Input.Containers)).map((c) => parseContainerName(c)),
    rename: parseRename(splitList(get(Input.Rename)), n(Input.Rename)),
    replace: parseBoolean(n(Input.Replace), get(Input.Replace), false),
    start: parseChoice(n(Input.Start), get(Input.Start), ['auto', 'always', 'never'], 'auto'),
    includeVolumes: parseBoolean(n(Input.IncludeVolumes), get(Input.IncludeVolumes), true),
    paths: splitList(get(Input.Paths)).map((p) => parseContainerPath(p, n(Input.Paths))),
    credentials: parseCredentials(get(Input.RegistryUsername), get(Input.RegistryPassword), words),
    decryption: parseKeys(get, words),
    engine: parseEngineInput(get, env, words),
    portMap: parsePortMap(splitList(get(Input.PortMap)), n(Input.PortMap)),
    words,
  };
}

/** What the restore action's verify-only reads: one location, a set (a tag, latest, or all: every set), its keys. */
export interface VerifyOptions {
  source: DestinationSpec;
  artifactRun?: ArtifactRun;
  /** A tag, `latest`, or `all` (snapshot/verify.ts ALL_SETS). */
  snapshot: string;
  credentials: Credentials;
  decryption?: RestoreOptions['decryption'];
}

/** The restore action's verify-only input (Bool, default false). */
export function parseVerifyOnly(get: InputReader, words: Vocabulary = ACTION_WORDS): boolean {
  return parseBoolean(words.name(Input.VerifyOnly), get(Input.VerifyOnly), false);
}

/**
 * The inputs of a verify-only run. The inputs that say what a restore changes (containers, rename,
 * paths) are refused: a verification reads every container of the set and changes nothing.
 */
export function parseVerifyInputs(get: InputReader, words: Vocabulary = ACTION_WORDS): VerifyOptions {
  const n = words.name;
  const given = [Input.Containers, Input.Rename, Input.Paths].filter((name) => get(name).trim() !== '');
  if (given.length > 0) {
    throw new InputError(
      `${given.map(n).join(', ')} cannot be used with ${n(Input.VerifyOnly)}: true. Expected them empty: a verification reads every container of the set and restores nothing.`,
    );
  }
  const source = parseSource(get, words);
  return {
    source,
    artifactRun: parseSourceRun(get, source, words),
    snapshot: parseSnapshotRef(get(Input.Snapshot), n(Input.Snapshot)),
    credentials: parseCredentials(get(Input.RegistryUsername), get(Input.RegistryPassword), words),
    decryption: parseKeys(get, words),
  };
}

/** The decryption-identity and decryption-passphrase inputs (restore, verify, list). */
export function parseKeys(get: InputReader, words: Vocabulary = ACTION_WORDS): RestoreOptions['decryption'] {
  return parseDecryption(get(Input.DecryptionIdentity), get(Input.DecryptionPassphrase), {
    identity: words.name(Input.DecryptionIdentity),
    passphrase: words.name(Input.DecryptionPassphrase),
  });
}
