/**
 * Which containers a backup takes (containers, labels, projects, exclude, if-no-match) and how
 * they are grouped (group-by): the typed selection and the parsing of its inputs.
 */
import { globToRegExp } from './input-values.js';
import { InputError } from './input-error.js';

/**
 * One item of the containers or exclude input: a container name, an ID (12 to 64 lowercase hex),
 * a glob (`value` as written, `pattern` anchored) or a regex between slashes (`pattern` unanchored).
 */
export type Selector =
  | { kind: 'name'; value: string }
  | { kind: 'id'; value: string }
  | { kind: 'glob'; value: string; pattern: RegExp }
  | { kind: 'regex'; value: string; pattern: RegExp };

/** One item of the labels input: a label `key`, and its `value` when written key=value (any value when absent). */
export interface LabelFilter {
  key: string;
  value?: string;
}

/** Which containers a backup takes: the containers, labels, projects and exclude inputs, and what to do when none match. */
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

/** A container name as the engine accepts it. */
const CONTAINER_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
/** A full or shortened container ID. */
const HEX_ID = /^[0-9a-f]{12,64}$/;

/** A container selector (see Selector); a leading / of a name is dropped. Throws InputError when it is none of them. */
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
    throw new InputError(`Invalid container selector '${value}'. Expected a container name, an ID, a glob (web-*) or a regex in slashes (/^db-[0-9]+$/).`);
  }
  if (HEX_ID.test(name)) return { kind: 'id', value: name };
  return { kind: 'name', value: name };
}

/** A label filter, key or key=value; throws InputError when the key is empty or holds white space. */
export function parseLabelFilter(raw: string): LabelFilter {
  const value = raw.trim();
  const eq = value.indexOf('=');
  const key = eq === -1 ? value : value.slice(0, eq);
  if (key.length === 0 || /\s/.test(key)) {
    throw new InputError(`Invalid label filter '${raw}'. Expected key or key=value.`);
  }
  return eq === -1 ? { key } : { key, value: value.slice(eq + 1) };
}

/** A container name ([a-zA-Z0-9][a-zA-Z0-9_.-]*, a leading / dropped); throws InputError naming `what`. */
export function parseContainerName(raw: string, what = 'container name'): string {
  const value = raw.trim().replace(/^\//, '');
  if (!CONTAINER_NAME.test(value)) {
    throw new InputError(`Invalid ${what} '${raw}'. Expected [a-zA-Z0-9][a-zA-Z0-9_.-]*.`);
  }
  return value;
}

/** group-by: none (or ''), compose-project, or label:KEY (a key without white space or =). Throws InputError naming `name`. */
export function parseGroupBy(raw: string, name = 'group-by'): GroupBy {
  const value = raw.trim();
  if (value === '' || value === 'none') return { kind: 'none' };
  if (value === 'compose-project') return { kind: 'compose-project' };
  const key = value.startsWith('label:') ? value.slice('label:'.length) : '';
  if (key === '' || /[\s=]/.test(key))
    throw new InputError(`Invalid ${name} '${raw}'. Expected none, compose-project or label:KEY (a label key, like label:app).`);
  return { kind: 'label', key };
}

/** A Compose project name, as Compose writes it in com.docker.compose.project: lowercase letters, digits, - and _, starting with a letter or digit. Throws InputError naming `name`. */
export function parseProjectName(raw: string, name = 'projects'): string {
  const value = raw.trim();
  if (!/^[a-z0-9][a-z0-9_-]*$/.test(value))
    throw new InputError(`Invalid ${name} '${raw}'. Expected Compose project names: lowercase letters, digits, - and _, starting with a letter or digit.`);
  return value;
}
