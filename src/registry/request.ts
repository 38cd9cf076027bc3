import { DIGEST_RULE, isDigest } from '../oci/digest.js';
import { REPOSITORY_RULE, isRepositoryPath, isTag } from '../oci/reference.js';
import { RegistryError } from './errors.js';

/**
 * One request to a registry as the client describes it, and the checks of the names that go
 * into its path (distribution spec, "Pulling manifests": `<name>` and `<reference>`).
 */

/** What a request is for, in messages: `name` (e.g. "get blob sha256:…") and the repository, when there is one. */
export interface Op {
  name: string;
  repo?: string;
}

/**
 * A request with a buffered body (or none): `scopes` are the token scopes it needs (auth.ts),
 * `expect` the HTTP statuses that are an answer rather than a failure.
 */
export interface Call {
  op: Op;
  method: string;
  url: URL;
  scopes: string[];
  expect: number[];
  headers?: Record<string, string>;
  body?: Buffer;
}

/** Throws RegistryError unless `repo` is a repository path (distribution reference grammar). */
export function checkRepo(repo: string): void {
  if (!isRepositoryPath(repo)) throw new RegistryError(`Invalid repository name "${repo}": expected ${REPOSITORY_RULE}`);
}

/** Throws RegistryError unless `digest` is a sha256 digest (image-spec descriptor.md, "Digests"). */
export function checkDigest(digest: string): void {
  if (!isDigest(digest)) throw new RegistryError(`Invalid digest "${digest}": expected ${DIGEST_RULE}`);
}

/** Throws RegistryError unless `reference` is a tag or a digest. */
export function checkReference(reference: string): void {
  if (!isDigest(reference) && !isTag(reference)) {
    throw new RegistryError(`Invalid tag or digest "${reference}"`);
  }
}
