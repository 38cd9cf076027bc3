import type { Readable } from 'node:stream';
import { pullScope, pushScope } from './auth.js';
import { DigestMismatchError } from './errors.js';
import { EMPTY, open, verified } from './http.js';
import { checkDigest, checkRepo } from './request.js';
import type { RegistryTransport } from './transport.js';
import { BufferedUpload, StreamingUpload, type BlobUpload } from './upload.js';

/**
 * Blob operations of the OCI distribution spec: "Checking if content exists in the registry"
 * (HEAD), "Mounting a blob from another repository", "Pushing a blob in chunks" (POST, PATCH,
 * PUT with the digest), "Pulling blobs" (GET, redirects followed, content verified).
 * Each throws RegistryError for an invalid repository or digest before any request, and for a
 * failed request (RegistryAuthError when refused).
 */

/** Whether `repo` holds the blob `digest` (HEAD: 200 yes, 404 no). */
export async function hasBlob(t: RegistryTransport, repo: string, digest: string): Promise<boolean> {
  checkRepo(repo);
  checkDigest(digest);
  const op = { name: `check blob ${digest}`, repo };
  const url = t.url(`/v2/${repo}/blobs/${digest}`);
  const res = await t.call({ op, method: 'HEAD', url, scopes: [pullScope(repo)], expect: [200, 404] });
  res.resume();
  return res.statusCode === 200;
}

/** Mounts blob `digest` of `fromRepo` into `repo`: true when mounted (201); false when the registry opened an upload instead (202; it is cancelled). */
export async function mountBlob(t: RegistryTransport, repo: string, digest: string, fromRepo: string): Promise<boolean> {
  checkRepo(repo);
  checkRepo(fromRepo);
  checkDigest(digest);
  const op = { name: `mount blob ${digest} from ${fromRepo}`, repo };
  const url = t.url(`/v2/${repo}/blobs/uploads/`);
  url.searchParams.set('mount', digest);
  url.searchParams.set('from', fromRepo);
  const scopes = [pushScope(repo), pullScope(fromRepo)];
  const res = await t.call({ op, method: 'POST', url, scopes, body: EMPTY, expect: [201, 202] });
  res.resume();
  if (res.statusCode === 201) return true;
  const session = res.headers.location;
  if (session) await discardUpload(t, repo, new URL(session, url), scopes).catch(() => undefined);
  return false;
}

/**
 * Opens an upload session in `repo`: write the blob to the upload's stream, then finish() with its
 * digest. A blob of up to WHOLE_UPLOAD_MAX bytes goes whole in the PUT that completes it; a larger
 * one in one PATCH, streamed (upload.ts BufferedUpload).
 */
export async function createUpload(t: RegistryTransport, repo: string): Promise<BlobUpload> {
  checkRepo(repo);
  const scopes = [pushScope(repo)];
  const start = t.url(`/v2/${repo}/blobs/uploads/`);
  const op = { name: 'start blob upload', repo };
  const res = await t.call({ op, method: 'POST', url: start, scopes, body: EMPTY, expect: [202] });
  res.resume();
  const location = t.location(res, start, op);
  const patchOp = { name: 'upload blob', repo };
  const discard = () => discardUpload(t, repo, location, scopes);
  return new BufferedUpload({
    streaming: async () => {
      const headers = await t.headers(location, scopes, { 'content-type': 'application/octet-stream' });
      const pending = open('PATCH', location, headers, t.timeoutMs, t.failure(patchOp, location));
      return new StreamingUpload(pending, location, {
        rejection: (patch) => t.rejection(patch, patchOp),
        commit: (next, digest) => commitUpload(t, repo, next, digest, scopes),
        discard,
      });
    },
    whole: (body, digest) => commitUpload(t, repo, location, digest, scopes, body),
    discard,
  });
}

/** The blob's bytes; the stream fails with DigestMismatchError at its end when their sha256 is not `digest`. */
export async function getBlob(t: RegistryTransport, repo: string, digest: string): Promise<Readable> {
  checkRepo(repo);
  checkDigest(digest);
  const op = { name: `get blob ${digest}`, repo };
  const url = t.url(`/v2/${repo}/blobs/${digest}`);
  const res = await t.followRedirects({ op, method: 'GET', url, scopes: [pullScope(repo)], expect: [200] });
  const mismatch = (actual: string) => new DigestMismatchError(`${t.where(op)} failed: the registry sent content with digest ${actual}`, digest);
  return verified(res, digest, t.failure(op, url), mismatch);
}

/** PUT <location>?digest=…: completes the upload, with `body` its last (or only) bytes. */
async function commitUpload(t: RegistryTransport, repo: string, location: URL, digest: string, scopes: string[], body: Buffer = EMPTY): Promise<void> {
  const url = new URL(location);
  url.searchParams.set('digest', digest);
  const op = { name: `finish blob upload ${digest}`, repo };
  const headers = body.length > 0 ? { 'content-type': 'application/octet-stream' } : undefined;
  const res = await t.call({ op, method: 'PUT', url, scopes, headers, body, expect: [201] });
  res.resume();
}

async function discardUpload(t: RegistryTransport, repo: string, location: URL, scopes: string[]): Promise<void> {
  const op = { name: 'cancel blob upload', repo };
  const res = await t.call({ op, method: 'DELETE', url: location, scopes, expect: [200, 202, 204, 404] });
  res.resume();
}
