import { availableParallelism } from 'node:os';
import { posix, resolve } from 'node:path';
import type { Decryption, Encryption } from '../crypto/keyring.js';
import type { RetentionPolicy } from '../snapshot/retention.js';
import { ACTION_WORDS, type Vocabulary } from './words.js';
import { isRepositoryPath, isTag } from '../oci/reference.js';
import type { EngineAddress } from './engine-address.js';
import type { PortMapping } from './port-map.js';
import { InputError } from './input-error.js';

export { InputError } from './input-error.js';

export type Selector =
  | { kind: 'name'; value: string }
  | { kind: 'id'; value: string }
  | { kind: 'glob'; value: string; pattern: RegExp }
  | { kind: 'regex'; value: string; pattern: RegExp };

export interface LabelFilter {
  key: string;
  value?: string;
}

export type DestinationSpec =
  | { kind: 'dir'; path: string; raw: string }
  /** `insecure`: reached over plain HTTP, as named in registry-insecure (loopback hosts are without it). */
  | { kind: 'registry'; host: string; prefix: string; raw: string; insecure?: boolean }
  | { kind: 'artifact'; name: string; raw: string };

/** Another workflow run whose artifacts a restore reads (GitHub's REST API, with a token). */
export interface ArtifactRun {
  runId: number;
  owner: string;
  repo: string;
  token: string;
}

export interface Credentials {
  username?: string;
  password?: string;
}

export interface Selection {
  containers: Selector[];
  labels: LabelFilter[];
  /** Compose project names (the com.docker.compose.project label); a container must be in one of them when any is given. */
  projects: string[];
  exclude: Selector[];
  ifNoMatch: 'warn' | 'error' | 'ignore';
}

/**
 * How selected containers are gathered into consistency groups (held together): none, by their
 * Compose project, or by the value of a label. The label container-snapshot.group groups whatever this says.
 */
export type GroupBy = { kind: 'none' } | { kind: 'compose-project' } | { kind: 'label'; key: string };

export interface BackupOptions {
  selection: Selection;
  destinations: DestinationSpec[];
  tag: string;
  pause: boolean;
  /** Stop each running container for its snapshot (else the label container-snapshot.stop decides). */
  stop: boolean;
  /** Seconds to wait for a stop before the engine kills; undefined: the container's own StopTimeout. */
  stopTimeout?: number;
  /** Run inside each running container before its snapshot (sh -c); a failure fails that container. */
  preCommand?: string;
  /** Run inside each running container after its snapshot, also after a failed pre-command. */
  postCommand?: string;
  /** Seconds a pre- or post-command may take. */
  hookTimeout: number;
  includeVolumes: boolean;
  includeBindMounts: boolean;
  onError: 'continue' | 'abort';
  dryRun: boolean;
  compression: 'auto' | 'zstd' | 'gzip';
  /** Days an artifact destination keeps the set; undefined: the repository's setting. */
  retentionDays?: number;
  /** Applied to each dir: and registry: destination after the set is written there (retention.ts); undefined: keep every set. */
  keep?: RetentionPolicy;
  /** Apply `keep` to the destinations and back up nothing (the action's prune-only). */
  pruneOnly: boolean;
  credentials: Credentials;
  /** Environment variables left out of the captured configuration and the committed image config (exclude-env). */
  excludeEnv: RegExp[];
  /** Blobs and set documents stored encrypted (age) to these keys; undefined: stored in clear. */
  encryption?: Encryption;
  /** Milliseconds a backup waits for another backup's lock on a container (CONTAINER_SNAPSHOT_LOCK_TIMEOUT). */
  lockTimeoutMs: number;
  /** The engine to back up from (docker-host, else DOCKER_HOST); absent: the client's default (DOCKER_HOST as dockerode reads it, else the local socket). */
  engine?: EngineAddress;
  /** How many containers (or consistency groups, each as one) are backed up at once. */
  parallelism: number;
  /** Which containers are held together, as one consistency group (group-by). */
  groupBy: GroupBy;
  /** Delta layers on a full writable layer before the whole layer is taken again; 0: always the whole layer. Absent: 8. */
  layerCompaction?: number;
  /** The words of the interface the options came from, for messages; the action's when absent. */
  words?: Vocabulary;
}

export type StartPolicy = 'auto' | 'always' | 'never';

export interface RestoreOptions {
  source: DestinationSpec;
  snapshot: string;
  containers: string[];
  rename: Map<string, string>;
  replace: boolean;
  start: StartPolicy;
  includeVolumes: boolean;
  /** Absolute container paths: restore only these, from volumes, into the existing containers (empty: a whole restore). */
  paths: string[];
  credentials: Credentials;
  /** The keys an encrypted set is read with; undefined: only a clear set can be restored. */
  decryption?: Decryption;
  /** Set when the source is artifact:NAME of another workflow run. */
  artifactRun?: ArtifactRun;
  /** The engine to restore onto (docker-host, else DOCKER_HOST); absent: the client's default, as for BackupOptions. */
  engine?: EngineAddress;
  /** Published host ports to change on the way (port-map); none when absent. */
  portMap?: PortMapping[];
  /** The words of the interface the options came from, for messages; the action's when absent. */
  words?: Vocabulary;
}

const CONTAINER_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const HEX_ID = /^[0-9a-f]{12,64}$/;
const REGISTRY_HOST = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]{1,5})?$/;

export const DESTINATION_FORMAT = 'dir:PATH, registry:HOST[:PORT]/PREFIX or artifact:NAME';

/** Characters GitHub refuses in an artifact name. */
const ARTIFACT_FORBIDDEN = ['"', ':', '<', '>', '|', '*', '?', '\\', '/', '\r', '\n'];
/** Leaves room in GitHub's artifact name for the tag and the suffixes this tool adds. */
const ARTIFACT_NAME_MAX = 100;
const REPOSITORY = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})\/[A-Za-z0-9._-]{1,100}$/;

/** Splits a List (newline) or CSV input into trimmed, non-empty items. */
export function splitList(input: string): string[] {
  return input
    .split(/[\n,]/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

export function parseBoolean(name: string, value: string, fallback: boolean): boolean {
  const v = value.trim();
  if (v === '') return fallback;
  if (['true', 'True', 'TRUE'].includes(v)) return true;
  if (['false', 'False', 'FALSE'].includes(v)) return false;
  throw new InputError(`Invalid ${name} '${value}'. Expected true or false.`);
}

export function parseChoice<T extends string>(name: string, value: string, choices: readonly T[], fallback: T): T {
  const v = value.trim();
  if (v === '') return fallback;
  if ((choices as readonly string[]).includes(v)) return v as T;
  throw new InputError(`Invalid ${name} '${value}'. Expected one of: ${choices.join(', ')}.`);
}

function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body.replace(/\[!/g, '[^')}$`);
}

/** An exclude-env item: a variable name, or a glob of name characters and * ?. Throws InputError naming `name`. */
export function parseEnvPattern(raw: string, name = 'exclude-env'): RegExp {
  const value = raw.trim();
  if (!/^[A-Za-z0-9_*?]+$/.test(value)) throw new InputError(`Invalid ${name} '${value}'. Expected an environment variable name or a glob of name characters and * ?, like *_PASSWORD.`);
  return globToRegExp(value);
}

export function parseSelector(raw: string): Selector {
  const value = raw.trim();
  if (value.length >= 2 && value.startsWith('/') && value.endsWith('/')) {
    try {
      return { kind: 'regex', value, pattern: new RegExp(value.slice(1, -1)) };
    } catch (err) {
      throw new InputError(
        `Invalid container selector '${value}': ${(err as Error).message}. Expected a regular expression between slashes, like /^db-[0-9]+$/.`,
      );
    }
  }
  if (/[*?[]/.test(value)) {
    if (!/^[a-zA-Z0-9_.*?[\]!-]+$/.test(value)) {
      throw new InputError(`Invalid container selector '${value}'. Expected a glob of name characters and * ? [ ], like web-*.`);
    }
    return { kind: 'glob', value, pattern: globToRegExp(value) };
  }
  const name = value.startsWith('/') ? value.slice(1) : value;
  if (!CONTAINER_NAME.test(name)) {
    throw new InputError(
      `Invalid container selector '${value}'. Expected a container name, an ID, a glob (web-*) or a regex in slashes (/^db-[0-9]+$/).`,
    );
  }
  if (HEX_ID.test(name)) return { kind: 'id', value: name };
  return { kind: 'name', value: name };
}

export function parseLabelFilter(raw: string): LabelFilter {
  const value = raw.trim();
  const eq = value.indexOf('=');
  const key = eq === -1 ? value : value.slice(0, eq);
  if (key.length === 0 || /\s/.test(key)) {
    throw new InputError(`Invalid label filter '${raw}'. Expected key or key=value.`);
  }
  return eq === -1 ? { key } : { key, value: value.slice(eq + 1) };
}

/** A location; `name` is the input it came from (destination, source, --source), for the message. */
export function parseDestination(raw: string, name = 'destination'): DestinationSpec {
  const value = raw.trim();
  const colon = value.indexOf(':');
  const scheme = colon === -1 ? '' : value.slice(0, colon);
  const rest = colon === -1 ? '' : value.slice(colon + 1);
  if (scheme === 'dir') {
    if (rest.length === 0 || rest.includes('\0')) {
      throw new InputError(`Invalid ${name} '${raw}'. Expected ${DESTINATION_FORMAT}: dir: needs a path.`);
    }
    return { kind: 'dir', path: rest, raw: value };
  }
  if (scheme === 'registry') {
    const slash = rest.indexOf('/');
    const host = slash === -1 ? rest : rest.slice(0, slash);
    const prefix = slash === -1 ? '' : rest.slice(slash + 1).replace(/\/+$/, '');
    if (!REGISTRY_HOST.test(host) || !isRepositoryPath(prefix)) {
      throw new InputError(
        `Invalid ${name} '${raw}'. Expected ${DESTINATION_FORMAT}, with a lowercase repository prefix like registry:ghcr.io/acme/backups.`,
      );
    }
    return { kind: 'registry', host, prefix, raw: value };
  }
  if (scheme === 'artifact') return { kind: 'artifact', name: parseArtifactName(rest, raw, name), raw: value };
  throw new InputError(`Invalid ${name} '${raw}'. Expected ${DESTINATION_FORMAT}.`);
}

/**
 * The registry-insecure input: registries reached over plain HTTP, as the Docker daemon's
 * `insecure-registries` (each an exact HOST[:PORT], compared without case; no address ranges).
 */
export function parseInsecureRegistries(items: string[], name = 'registry-insecure'): Set<string> {
  for (const item of items) {
    if (!REGISTRY_HOST.test(item)) throw new InputError(`Invalid ${name} '${item}'. Expected HOST[:PORT] of a registry, as in registry:HOST[:PORT]/PREFIX (e.g. registry.lan:5000).`);
  }
  return new Set(items.map((i) => i.toLowerCase()));
}

/** A registry location whose host is in `insecure`, marked to be reached over plain HTTP; others as they are. */
export function markInsecure(d: DestinationSpec, insecure: Set<string>): DestinationSpec {
  return d.kind === 'registry' && insecure.has(d.host.toLowerCase()) ? { ...d, insecure: true } : d;
}

/** Where a destination stores: a dir:'s absolute path, a registry's lowercase host and prefix, an artifact's name. */
function destinationPlace(d: DestinationSpec): string {
  if (d.kind === 'dir') return `dir:${resolve(d.path)}`;
  if (d.kind === 'registry') return `registry:${d.host.toLowerCase()}/${d.prefix}`;
  return `artifact:${d.name}`;
}

/** Refuses two destinations that are one place (dir:/x and dir:/x/, or one registry host in two cases). */
export function checkDistinctDestinations(destinations: DestinationSpec[], name = 'destination'): void {
  const seen = new Map<string, string>();
  for (const d of destinations) {
    const place = destinationPlace(d);
    const first = seen.get(place);
    if (first !== undefined) {
      const same = first === d.raw ? `'${d.raw}' is listed twice` : `'${first}' and '${d.raw}' are the same place (${place})`;
      throw new InputError(`Invalid ${name}: ${same}. Expected each destination once.`);
    }
    seen.set(place, d.raw);
  }
}

/** CONTAINER_SNAPSHOT_LOCK_TIMEOUT: seconds (a decimal allowed), '' for 600; returns milliseconds. */
export function parseLockTimeout(raw: string | undefined, fallbackSeconds = 600): number {
  const value = (raw ?? '').trim();
  if (value === '') return fallbackSeconds * 1000;
  const seconds = /^\d{1,7}(?:\.\d+)?$/.test(value) ? Number(value) : NaN;
  if (!Number.isFinite(seconds)) throw new InputError(`Invalid CONTAINER_SNAPSHOT_LOCK_TIMEOUT '${raw}'. Expected a number of seconds, like 600.`);
  return Math.round(seconds * 1000);
}

export function defaultTag(now: Date = new Date()): string {
  return now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}

export function parseTag(raw: string, now?: Date, name = 'tag'): string {
  const value = raw.trim();
  if (value === '') return defaultTag(now);
  if (!isTag(value)) {
    throw new InputError(`Invalid ${name} '${raw}'. Expected an OCI tag: up to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'.`);
  }
  if (value === 'latest') {
    throw new InputError(`Invalid ${name} 'latest'. Expected a specific tag: 'latest' always means the newest complete set.`);
  }
  return value;
}

/** An empty value is refused: it comes from an expression that found nothing (the input's default is latest). */
export function parseSnapshotRef(raw: string, name = 'snapshot'): string {
  const value = raw.trim();
  if (value === '') throw new InputError(`Invalid ${name} ''. Expected a tag or latest; an empty value never means latest.`);
  if (value === 'latest') return 'latest';
  if (!isTag(value)) {
    throw new InputError(`Invalid ${name} '${raw}'. Expected a tag or latest.`);
  }
  return value;
}

/** An absolute path inside a container, normalized (`..` cannot climb above `/`, which itself is refused). */
export function parseContainerPath(raw: string, what: string): string {
  const value = raw.trim();
  const path = posix.normalize(value).replace(/\/+$/, '');
  if (!value.startsWith('/') || path === '') throw new InputError(`Invalid ${what} '${raw}'. Expected an absolute path below /, as in /var/lib/data/uploads.`);
  return path;
}

export function parseContainerName(raw: string, what = 'container name'): string {
  const value = raw.trim().replace(/^\//, '');
  if (!CONTAINER_NAME.test(value)) {
    throw new InputError(`Invalid ${what} '${raw}'. Expected [a-zA-Z0-9][a-zA-Z0-9_.-]*.`);
  }
  return value;
}

export function parseRename(items: string[], name = 'rename'): Map<string, string> {
  const map = new Map<string, string>();
  const targets = new Set<string>();
  for (const item of items) {
    const eq = item.indexOf('=');
    if (eq === -1) throw new InputError(`Invalid ${name} '${item}'. Expected old=new.`);
    const from = parseContainerName(item.slice(0, eq), 'rename source');
    const to = parseContainerName(item.slice(eq + 1), 'rename target');
    if (map.has(from)) throw new InputError(`Invalid ${name} '${item}': '${from}' is renamed twice. Expected each old name once.`);
    if (targets.has(to)) throw new InputError(`Invalid ${name} '${item}': two containers would be named '${to}'. Expected distinct new names.`);
    map.set(from, to);
    targets.add(to);
  }
  return map;
}

export function parseCredentials(username: string, password: string, words: Vocabulary = ACTION_WORDS): Credentials {
  const u = username.trim();
  if ((u === '') !== (password === '')) {
    throw new InputError(`Invalid registry credentials. Expected both ${words.credentials}, or neither.`);
  }
  return u === '' ? {} : { username: u, password };
}

export function parseArtifactName(name: string, raw = `artifact:${name}`, what = 'destination'): string {
  const bad = ARTIFACT_FORBIDDEN.find((c) => name.includes(c));
  if (name.length === 0 || bad !== undefined || name !== name.trim() || name.length > ARTIFACT_NAME_MAX) {
    const why = bad !== undefined ? `: GitHub refuses ${JSON.stringify(bad)} in artifact names` : '';
    throw new InputError(
      `Invalid ${what} '${raw}'${why}. Expected artifact:NAME, a name of 1 to ${ARTIFACT_NAME_MAX} characters without " : < > | * ? \\ / or line breaks.`,
    );
  }
  return name;
}

/** Days 1 to 90, or '' for the repository's setting. */
export function parseRetentionDays(raw: string, name = 'retention-days'): number | undefined {
  return parseWholeNumber(name, raw, 1, 90, 'a whole number of days from 1 to 90');
}

/**
 * The run whose artifacts a restore reads. '' run-id: this run, through the runtime token.
 * `repository` and `token` fall back to the workflow's own (GITHUB_REPOSITORY, the token input).
 */
export function parseArtifactRun(source: DestinationSpec, runId: string, repository: string, token: string, words: Vocabulary = ACTION_WORDS): ArtifactRun | undefined {
  const id = runId.trim();
  if (id === '') return undefined;
  const [runIdName, sourceName] = [words.name('run-id'), words.name('source')];
  if (!/^[1-9]\d{0,18}$/.test(id)) throw new InputError(`Invalid ${runIdName} '${runId}'. Expected the numeric ID of a workflow run.`);
  if (source.kind !== 'artifact') {
    throw new InputError(`Invalid ${runIdName} '${runId}' with ${sourceName} '${source.raw}'. Expected ${runIdName} only with ${sourceName} artifact:NAME.`);
  }
  const repo = repository.trim();
  if (repo === '') throw new InputError(`Missing repository for ${runIdName} ${id}. Expected owner/name in ${words.repository}.`);
  if (!REPOSITORY.test(repo)) throw new InputError(`Invalid repository '${repository}'. Expected owner/name, the repository of run ${id}, in ${words.repository}.`);
  if (token.trim() === '') throw new InputError(`Missing ${words.token} for ${runIdName} ${id}. Expected a token with actions:read on ${repo}.`);
  const [owner, name] = repo.split('/');
  return { runId: Number(id), owner, repo: name, token: token.trim() };
}

/** Seconds, 0 to 3600, or '' for the container's own stop timeout. */
export function parseStopTimeout(raw: string, name = 'stop-timeout'): number | undefined {
  return parseWholeNumber(name, raw, 0, 3600, 'whole seconds from 0 to 3600');
}

/** The most containers a backup takes at once. */
export const MAX_PARALLELISM = 64;

/** Containers backed up at once, 1 to MAX_PARALLELISM; '' for the default (the number of CPUs). */
export function parseParallelism(raw: string, name = 'parallelism'): number {
  return parseWholeNumber(name, raw, 1, MAX_PARALLELISM, `a whole number from 1 to ${MAX_PARALLELISM}`) ?? Math.min(availableParallelism(), MAX_PARALLELISM);
}

/** Delta layers on a full writable layer before a backup takes the whole layer again (layer-compaction). */
export const DEFAULT_LAYER_COMPACTION = 8;
export const MAX_LAYER_COMPACTION = 100;

/** Delta layers before the next full writable layer, 0 (never a delta) to MAX_LAYER_COMPACTION; '' for DEFAULT_LAYER_COMPACTION. */
export function parseLayerCompaction(raw: string, name = 'layer-compaction'): number {
  return parseWholeNumber(name, raw, 0, MAX_LAYER_COMPACTION, `a whole number from 0 to ${MAX_LAYER_COMPACTION}`) ?? DEFAULT_LAYER_COMPACTION;
}

/** Seconds, 1 to 86400; '' for the default. */
export function parseHookTimeout(raw: string, fallback = 300, name = 'hook-timeout'): number {
  return parseWholeNumber(name, raw, 1, 86400, 'whole seconds from 1 to 86400') ?? fallback;
}

/** A whole number from `min` to `max` (written with no more digits than `max` has), or undefined when empty. */
function parseWholeNumber(name: string, raw: string, min: number, max: number, expected: string): number | undefined {
  const value = raw.trim();
  if (value === '') return undefined;
  const n = new RegExp(`^\\d{1,${String(max).length}}$`).test(value) ? Number(value) : NaN;
  if (!(n >= min && n <= max)) throw new InputError(`Invalid ${name} '${raw}'. Expected ${expected}.`);
  return n;
}

/** group-by: none (or ''), compose-project, or label:KEY. */
export function parseGroupBy(raw: string, name = 'group-by'): GroupBy {
  const value = raw.trim();
  if (value === '' || value === 'none') return { kind: 'none' };
  if (value === 'compose-project') return { kind: 'compose-project' };
  const key = value.startsWith('label:') ? value.slice('label:'.length) : '';
  if (key === '' || /[\s=]/.test(key)) throw new InputError(`Invalid ${name} '${raw}'. Expected none, compose-project or label:KEY (a label key, like label:app).`);
  return { kind: 'label', key };
}

/** A Compose project name, as Compose writes it in com.docker.compose.project: lowercase letters, digits, - and _, starting with a letter or digit. */
export function parseProjectName(raw: string, name = 'projects'): string {
  const value = raw.trim();
  if (!/^[a-z0-9][a-z0-9_-]*$/.test(value)) throw new InputError(`Invalid ${name} '${raw}'. Expected Compose project names: lowercase letters, digits, - and _, starting with a letter or digit.`);
  return value;
}

/** A shell command, or undefined when empty. */
export function parseCommand(raw: string): string | undefined {
  const value = raw.trim();
  if (value.includes('\0')) throw new InputError('Invalid command: it contains a NUL byte. Expected a shell command line.');
  return value === '' ? undefined : value;
}
