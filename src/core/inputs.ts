import {
  InputError,
  parseArtifactRun,
  checkDistinctDestinations,
  parseBoolean,
  parseLockTimeout,
  parseChoice,
  parseContainerName,
  parseCredentials,
  parseDestination,
  parseLabelFilter,
  parseRename,
  parseRetentionDays,
  parseStopTimeout,
  parseCommand,
  parseHookTimeout,
  parseSelector,
  parseSnapshotRef,
  parseTag,
  splitList,
  type ArtifactRun,
  type BackupOptions,
  type DestinationSpec,
  type RestoreOptions,
} from './options.js';
import { parseRetentionPolicy } from './retention-input.js';

export const Input = {
  Containers: 'containers',
  Labels: 'labels',
  Exclude: 'exclude',
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
  OnError: 'on-error',
  IfNoMatch: 'if-no-match',
  DryRun: 'dry-run',
  Compression: 'compression',
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
} as const;

export const DEFAULT_LOCATION = 'dir:./container-snapshots';

/** Reads one raw input by name; '' when not given. */
export type InputReader = (name: string) => string;

/**
 * Every backup input, and the environment variables a backup reads (CONTAINER_SNAPSHOT_LOCK_TIMEOUT),
 * checked before anything is changed.
 */
export function parseBackupInputs(get: InputReader, now?: Date, env: NodeJS.ProcessEnv = {}): BackupOptions {
  const destinations = parseDestinations(get);
  const keep = parseRetentionPolicy(get(Input.Keep), Input.Keep);
  const pruneOnly = parseBoolean(Input.PruneOnly, get(Input.PruneOnly), false);
  if (pruneOnly && !keep) throw new InputError(`${Input.PruneOnly} needs ${Input.Keep}. Expected ${Input.Keep} with at least one rule, e.g. last=7,daily=14.`);
  return {
    selection: {
      containers: splitList(get(Input.Containers)).map(parseSelector),
      labels: splitList(get(Input.Labels)).map(parseLabelFilter),
      exclude: splitList(get(Input.Exclude)).map(parseSelector),
      ifNoMatch: parseChoice(Input.IfNoMatch, get(Input.IfNoMatch), ['warn', 'error', 'ignore'], 'warn'),
    },
    destinations,
    tag: parseTag(get(Input.Tag), now),
    pause: parseBoolean(Input.Pause, get(Input.Pause), true),
    stop: parseBoolean(Input.Stop, get(Input.Stop), false),
    stopTimeout: parseStopTimeout(get(Input.StopTimeout)),
    preCommand: parseCommand(get(Input.PreCommand)),
    postCommand: parseCommand(get(Input.PostCommand)),
    hookTimeout: parseHookTimeout(get(Input.HookTimeout)),
    includeVolumes: parseBoolean(Input.IncludeVolumes, get(Input.IncludeVolumes), true),
    includeBindMounts: parseBoolean(Input.IncludeBindMounts, get(Input.IncludeBindMounts), false),
    onError: parseChoice(Input.OnError, get(Input.OnError), ['continue', 'abort'], 'continue'),
    dryRun: parseBoolean(Input.DryRun, get(Input.DryRun), false),
    compression: parseChoice(Input.Compression, get(Input.Compression), ['auto', 'zstd', 'gzip'], 'auto'),
    retentionDays: parseRetentionDays(get(Input.RetentionDays)),
    keep,
    pruneOnly,
    credentials: parseCredentials(get(Input.RegistryUsername), get(Input.RegistryPassword)),
    lockTimeoutMs: parseLockTimeout(env.CONTAINER_SNAPSHOT_LOCK_TIMEOUT),
  };
}

/** The destination input (or flag): several, distinct; the default location when empty. */
export function parseDestinations(get: InputReader): DestinationSpec[] {
  const destinations = splitList(get(Input.Destination)).map(parseDestination);
  if (destinations.length === 0) destinations.push(parseDestination(DEFAULT_LOCATION));
  checkDistinctDestinations(destinations, Input.Destination);
  return destinations;
}

/** The one location a restore, list or verify reads from. */
export function parseSource(get: InputReader): DestinationSpec {
  const sources = splitList(get(Input.Source));
  if (sources.length > 1) throw new InputError(`Invalid source '${sources.join(', ')}'. Expected one location.`);
  return parseDestination(sources[0] ?? DEFAULT_LOCATION);
}

/** The other workflow run to read artifact:NAME from; undefined for this run (or another kind of source). */
export function parseSourceRun(get: InputReader, source: DestinationSpec): ArtifactRun | undefined {
  return parseArtifactRun(source, get(Input.RunId), get(Input.Repository), get(Input.GithubToken));
}

export function parseRestoreInputs(get: InputReader): RestoreOptions {
  const source = parseSource(get);
  return {
    source,
    artifactRun: parseSourceRun(get, source),
    snapshot: parseSnapshotRef(get(Input.Snapshot)),
    containers: splitList(get(Input.Containers)).map((n) => parseContainerName(n)),
    rename: parseRename(splitList(get(Input.Rename))),
    replace: parseBoolean(Input.Replace, get(Input.Replace), false),
    start: parseChoice(Input.Start, get(Input.Start), ['auto', 'always', 'never'], 'auto'),
    includeVolumes: parseBoolean(Input.IncludeVolumes, get(Input.IncludeVolumes), true),
    credentials: parseCredentials(get(Input.RegistryUsername), get(Input.RegistryPassword)),
  };
}
