import type { IncomingMessage } from 'node:http';
import { isDigest, sha256Digest } from '../oci/digest.js';
import { MANIFEST_MEDIA_TYPES } from '../oci/media-types.js';
import { pullScope, pushScope } from './auth.js';
import { DigestMismatchError, RegistryError } from './errors.js';
import { manifestMediaType, nextLink } from './http.js';
import { checkDigest, checkReference, checkRepo, type Op } from './request.js';
import type { RegistryTransport } from './transport.js';

/**
 * Manifest and tag operations of the OCI distribution spec: "Pushing manifests", "Pulling
 * manifests", "Deleting manifests", "Listing tags" (paginated by `Link` headers).
 * Each throws RegistryError for an invalid repository, tag or digest before any request, and for
 * a failed request (RegistryAuthError when refused).
 */

/** The largest manifest this client reads back, in bytes. */
export const MANIFEST_LIMIT = 4 * 1024 * 1024;
/** The largest tag list page read, in bytes. */
const TAGS_LIMIT = 64 * 1024 * 1024;

/** A manifest as fetched: its media type (Content-Type, or the document's `mediaType`), its sha256 digest, its bytes. */
export interface FetchedManifest {
  mediaType: string;
  digest: string;
  body: Buffer;
}

/** Puts `body` under `reference` (a tag or digest); returns its digest (the registry's Docker-Content-Digest, or the sha256 of `body`). */
export async function putManifest(t: RegistryTransport, repo: string, reference: string, mediaType: string, body: Buffer): Promise<string> {
  checkRepo(repo);
  checkReference(reference);
  const op = { name: `put manifest ${reference}`, repo };
  const url = t.url(`/v2/${repo}/manifests/${reference}`);
  const headers = { 'content-type': mediaType };
  const res = await t.call({ op, method: 'PUT', url, scopes: [pushScope(repo)], headers, body, expect: [200, 201] });
  res.resume();
  const digest = res.headers['docker-content-digest'];
  return typeof digest === 'string' && isDigest(digest) ? digest : sha256Digest(body);
}

/**
 * The manifest at `reference`, asking for `accept` media types; undefined on a 404. Throws
 * DigestMismatchError when its sha256 is not the digest asked for (or, by tag, the registry's
 * Docker-Content-Digest), RegistryError when it is over MANIFEST_LIMIT bytes.
 */
export async function getManifest(
  t: RegistryTransport,
  repo: string,
  reference: string,
  accept: string[] = MANIFEST_MEDIA_TYPES,
): Promise<FetchedManifest | undefined> {
  checkRepo(repo);
  checkReference(reference);
  const op = { name: `get manifest ${reference}`, repo };
  const url = t.url(`/v2/${repo}/manifests/${reference}`);
  const headers = { accept: accept.join(', ') };
  const res = await t.call({ op, method: 'GET', url, scopes: [pullScope(repo)], headers, expect: [200, 404] });
  if (res.statusCode === 404) {
    res.resume();
    return undefined;
  }
  const body = await t.readSmall(res, op, MANIFEST_LIMIT);
  const digest = sha256Digest(body);
  // By tag, the registry's Docker-Content-Digest is the digest the tag points at (distribution spec, "Pulling manifests").
  const header = res.headers['docker-content-digest'];
  const expected = isDigest(reference) ? reference : typeof header === 'string' && isDigest(header) ? header : digest;
  if (digest !== expected) {
    throw new DigestMismatchError(`${t.where(op)} failed: the registry sent a manifest with digest ${digest}, expected ${expected}`, expected);
  }
  return { mediaType: manifestMediaType(res, body), digest, body };
}

/** Resolves when the manifest is gone, including when it was already gone (404). */
export async function deleteManifest(t: RegistryTransport, repo: string, digest: string): Promise<void> {
  checkRepo(repo);
  checkDigest(digest);
  const op = { name: `delete manifest ${digest}`, repo };
  const url = t.url(`/v2/${repo}/manifests/${digest}`);
  const res = await t.call({ op, method: 'DELETE', url, scopes: [pushScope(repo)], expect: [200, 202, 204, 404] });
  res.resume();
}

/** Every tag of `repo`, page after page (1000 a page); [] when the repository does not exist (404). */
export async function listTags(t: RegistryTransport, repo: string): Promise<string[]> {
  checkRepo(repo);
  const op = { name: 'list tags', repo };
  const tags: string[] = [];
  const seen = new Set<string>();
  let url: URL | undefined = t.url(`/v2/${repo}/tags/list?n=1000`);
  while (url && !seen.has(url.href)) {
    seen.add(url.href);
    const res = await t.call({ op, method: 'GET', url, scopes: [pullScope(repo)], expect: [200, 404] });
    if (res.statusCode === 404) {
      res.resume();
      break;
    }
    tags.push(...(await readTags(t, res, op)));
    url = nextLink(res.headers.link, url);
  }
  return tags;
}

async function readTags(t: RegistryTransport, res: IncomingMessage, op: Op): Promise<string[]> {
  const body = await t.readSmall(res, op, TAGS_LIMIT);
  try {
    const tags = (JSON.parse(body.toString('utf8')) as { tags?: unknown }).tags;
    return Array.isArray(tags) ? tags.filter((tag): tag is string => typeof tag === 'string') : [];
  } catch {
    throw new RegistryError(`${t.where(op)} failed: the registry sent invalid JSON`);
  }
}
