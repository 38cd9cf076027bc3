/**
 * Where sets are stored and read (dir:, registry:, artifact:), the registry credentials and the
 * other workflow run an artifact: source is read from: their typed shapes and their parsing.
 */
import { resolve } from 'node:path';
import { isRepositoryPath } from '../oci/reference.js';
import { ACTION_WORDS, type Vocabulary } from './words.js';
import { InputError } from './input-error.js';

/**
 * A location sets are stored in or read from, as parsed by parseDestination: a directory (`path` as
 * written), a registry (`host` [PORT], repository `prefix` without trailing /) or a GitHub artifact
 * `name`; `raw` is the item as written (trimmed), for messages.
 */
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

/** Registry credentials (registry-username, registry-password): both or neither; never logged. */
export interface Credentials {
  username?: string;
  password?: string;
}

/** HOST[:PORT] of a registry: DNS labels or a bracketed IPv6 address. */
const REGISTRY_HOST = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]{1,5})?$/;

/** The forms of a location, as messages name them. */
export const DESTINATION_FORMAT = 'dir:PATH, registry:HOST[:PORT]/PREFIX or artifact:NAME';

/** Characters GitHub refuses in an artifact name. */
const ARTIFACT_FORBIDDEN = ['"', ':', '<', '>', '|', '*', '?', '\\', '/', '\r', '\n'];
/** Leaves room in GitHub's artifact name for the tag and the suffixes this tool adds. */
const ARTIFACT_NAME_MAX = 100;
/** owner/name of a GitHub repository. */
const REPOSITORY = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})\/[A-Za-z0-9._-]{1,100}$/;

/** A location (see DestinationSpec); `name` is the input it came from (destination, source, --source), for the message. Throws InputError. */
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
      throw new InputError(`Invalid ${name} '${raw}'. Expected ${DESTINATION_FORMAT}, with a lowercase repository prefix like registry:ghcr.io/acme/backups.`);
    }
    return { kind: 'registry', host, prefix, raw: value };
  }
  if (scheme === 'artifact') return { kind: 'artifact', name: parseArtifactName(rest, raw, name), raw: value };
  throw new InputError(`Invalid ${name} '${raw}'. Expected ${DESTINATION_FORMAT}.`);
}

/**
 * The registry-insecure input: registries reached over plain HTTP, as the Docker daemon's
 * `insecure-registries` (each an exact HOST[:PORT], compared without case; no address ranges). Returns them lowercase;
 * throws InputError naming `name` for an item that is not HOST[:PORT].
 */
export function parseInsecureRegistries(items: string[], name = 'registry-insecure'): Set<string> {
  for (const item of items) {
    if (!REGISTRY_HOST.test(item))
      throw new InputError(`Invalid ${name} '${item}'. Expected HOST[:PORT] of a registry, as in registry:HOST[:PORT]/PREFIX (e.g. registry.lan:5000).`);
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

/** Refuses (InputError naming `name`) two destinations that are one place (dir:/x and dir:/x/, or one registry host in two cases). */
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

/** registry-username and registry-password: both or neither (InputError otherwise, in the words of the interface); the password is kept as given. */
export function parseCredentials(username: string, password: string, words: Vocabulary = ACTION_WORDS): Credentials {
  const u = username.trim();
  if ((u === '') !== (password === '')) {
    throw new InputError(`Invalid registry credentials. Expected both ${words.credentials}, or neither.`);
  }
  return u === '' ? {} : { username: u, password };
}

/** The NAME of artifact:NAME as GitHub accepts it (1 to ARTIFACT_NAME_MAX characters, none of ARTIFACT_FORBIDDEN, no outer spaces); throws InputError naming `what` and quoting `raw`. */
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

/**
 * The run whose artifacts a restore reads. '' run-id: this run, through the runtime token.
 * `repository` and `token` fall back to the workflow's own (GITHUB_REPOSITORY, the token input). Throws InputError when run-id is not
 * a number, the source is not artifact:, or the repository or token is missing or malformed.
 */
export function parseArtifactRun(
  source: DestinationSpec,
  runId: string,
  repository: string,
  token: string,
  words: Vocabulary = ACTION_WORDS,
): ArtifactRun | undefined {
  const id = runId.trim();
  if (id === '') return undefined;
  const [runIdName, sourceName] = [words.name('run-id'), words.name('source')];
  if (!/^[1-9]\d{0,18}$/.test(id)) throw new InputError(`Invalid ${runIdName} '${runId}'. Expected the numeric ID of a workflow run.`);
  if (source.kind !== 'artifact') {
    throw new InputError(`Invalid ${runIdName} '${runId}' with ${sourceName} '${source.raw}'. Expected ${runIdName} only with ${sourceName} artifact:NAME.`);
  }
  const repo = repository.trim();
  if (repo === '') throw new InputError(`Missing repository for ${runIdName} ${id}. Expected owner/name in ${words.repository}.`);
  if (!REPOSITORY.test(repo))
    throw new InputError(`Invalid repository '${repository}'. Expected owner/name, the repository of run ${id}, in ${words.repository}.`);
  if (token.trim() === '') throw new InputError(`Missing ${words.token} for ${runIdName} ${id}. Expected a token with actions:read on ${repo}.`);
  const [owner, name] = repo.split('/');
  return { runId: Number(id), owner, repo: name, token: token.trim() };
}
