/**
 * Grammars of image references, from distribution's reference grammar
 * (github.com/distribution/reference, `reference.go`) and the OCI distribution spec
 * ("Pulling manifests": `<name>` and `<reference>`).
 */

/** A repository path: lowercase alphanumeric components joined by `.`, `_`, `__` or dashes, separated by `/`. */
export const REPOSITORY_PATH = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;

/** The repository rule in words, for error messages. */
export const REPOSITORY_RULE = "lowercase [a-z0-9] parts joined by '.', '_', '__' or '-', separated by '/'";

/** A tag: up to 128 characters of `[A-Za-z0-9_.-]`, not starting with `.` or `-`. */
export const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

/** The tag rule in words, for error messages. */
export const TAG_RULE = "1 to 128 characters of letters, digits, '_', '.' and '-', not starting with '.' or '-'";

export function isRepositoryPath(value: string): boolean {
  return REPOSITORY_PATH.test(value);
}

export function isTag(value: string): boolean {
  return TAG.test(value);
}
