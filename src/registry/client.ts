import type { Readable } from 'node:stream';
import { MANIFEST_MEDIA_TYPES } from '../oci/media-types.js';
import * as blobs from './blobs.js';
import * as manifests from './manifests.js';
import { RegistryTransport, type RegistryClientOptions } from './transport.js';
import type { BlobUpload } from './upload.js';

export { DEFAULT_RETRY, type RegistryClientOptions, type RetryOptions } from './transport.js';
export { MANIFEST_LIMIT, type FetchedManifest } from './manifests.js';

/**
 * A client of one registry (OCI distribution spec): blobs (blobs.ts), manifests and tags
 * (manifests.ts), over one transport (transport.ts: retries, redirects, authentication, error
 * messages). Every method throws RegistryError for an invalid repository, digest or tag and for a
 * failed request; RegistryAuthError when the registry refuses the credentials; DigestMismatchError
 * for content that is not what its digest says. The constructor throws RegistryError for a host
 * that is not `host[:port]`.
 */
export class RegistryClient {
  /** `host[:port]` as given. */
  readonly host: string;
  private readonly transport: RegistryTransport;

  constructor(opts: RegistryClientOptions) {
    this.transport = new RegistryTransport(opts);
    this.host = opts.host;
  }

  /** GET /v2/ (distribution spec, "Determining support"): resolves when the registry answers 200, with credentials when it asks. */
  async ping(): Promise<void> {
    const t = this.transport;
    const res = await t.call({ op: { name: 'ping' }, method: 'GET', url: t.url('/v2/'), scopes: [], expect: [200] });
    res.resume();
  }

  /** Whether `repo` holds the blob `digest`. */
  hasBlob(repo: string, digest: string): Promise<boolean> {
    return blobs.hasBlob(this.transport, repo, digest);
  }

  /** Mounts `digest` from `fromRepo` into `repo` (cross-repository mount); false when the registry did not. */
  mountBlob(repo: string, digest: string, fromRepo: string): Promise<boolean> {
    return blobs.mountBlob(this.transport, repo, digest, fromRepo);
  }

  /** Starts a blob upload to `repo`: write its stream, then finish(digest), or cancel(). */
  createUpload(repo: string): Promise<BlobUpload> {
    return blobs.createUpload(this.transport, repo);
  }

  /** The blob's bytes, checked against `digest` (the stream fails with DigestMismatchError at its end). */
  getBlob(repo: string, digest: string): Promise<Readable> {
    return blobs.getBlob(this.transport, repo, digest);
  }

  /** Puts a manifest of `mediaType` under `reference` (tag or digest); returns its digest. */
  putManifest(repo: string, reference: string, mediaType: string, body: Buffer): Promise<string> {
    return manifests.putManifest(this.transport, repo, reference, mediaType, body);
  }

  /** The manifest at `reference` (tag or digest), checked against its digest; undefined when there is none. */
  getManifest(repo: string, reference: string, accept: string[] = MANIFEST_MEDIA_TYPES): Promise<manifests.FetchedManifest | undefined> {
    return manifests.getManifest(this.transport, repo, reference, accept);
  }

  /** Resolves when the manifest is gone, including when it was already gone. */
  deleteManifest(repo: string, digest: string): Promise<void> {
    return manifests.deleteManifest(this.transport, repo, digest);
  }

  /** Every tag of `repo`; [] when the repository does not exist. */
  listTags(repo: string): Promise<string[]> {
    return manifests.listTags(this.transport, repo);
  }
}
