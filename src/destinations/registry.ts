import type { Readable } from 'node:stream';
import { repoComponent } from '../core/names.js';
import { sha256Digest } from '../oci/digest.js';
import type { ImageManifest } from '../oci/descriptor.js';
import { OCI_MANIFEST } from '../oci/media-types.js';
import { MANIFEST_LIMIT, type RegistryClient } from '../registry/client.js';
import { DigestMismatchError, RegistryError } from '../registry/errors.js';
import type { Keyring } from '../crypto/keyring.js';
import { envelopeOf, openSealed, sealSet, sealedSummary } from '../snapshot/sealed-sets.js';
import {
  IMAGE_CONFIG_MEDIA_TYPE,
  SET_AGE_MEDIA_TYPE,
  SET_MEDIA_TYPE,
  SetDigestError,
  damagedSummary,
  newestFirst,
  setScopeBlobs,
  summarize,
  type SetSummary,
  type SnapshotSet,
} from '../snapshot/manifest.js';
import { readSmall } from '../util/streams.js';
import { CREATED, descriptorOf, ENCRYPTED_IMAGE_CONFIG_MEDIA_TYPE, ociLabels } from './registry-image.js';
import { DestinationError, type BlobScope, type BlobWriter, type Destination, type SetReceipt, type StoredRef } from './types.js';

/**
 * Bytes one chunk takes in a set manifest, an upper bound: its descriptor (~130 bytes); encrypted,
 * also its digest in the clear envelope and its descriptor in the sealed dedupe record (~0.5 KB).
 */
const MANIFEST_BYTES_PER_BLOB = { clear: 160, encrypted: 800 };

/**
 * Snapshot sets in an OCI registry:
 *   <prefix>/<container>:<tag>  the snapshot image (OCI image manifest: config + zstd layers), pullable;
 *                               encrypted: an OCI artifact (config ENCRYPTED_IMAGE_CONFIG_MEDIA_TYPE,
 *                               layers `+age`) that no engine pulls
 *   <prefix>:<tag>              the set: an OCI manifest whose config is the set document (encrypted:
 *                               SET_AGE_MEDIA_TYPE, its clear envelope in the annotations) and whose
 *                               layers are the volume archives, pushed last
 */
export class RegistryDestination implements Destination {
  /** Digest → the repository the blob was seen in, so a blob already in another repository is mounted instead of uploaded. */
  private readonly blobRepos = new Map<string, string>();

  constructor(
    readonly label: string,
    private readonly prefix: string,
    private readonly client: RegistryClient,
    private readonly warn: (message: string) => void = () => undefined,
    readonly keyring?: Keyring,
    /** `setBlobLimit`: tests only, to reach the limit with small volumes; by default what fits in MANIFEST_LIMIT with a tenth to spare. */
    options: { setBlobLimit?: number } = {},
  ) {
    const perBlob = keyring?.encrypting ? MANIFEST_BYTES_PER_BLOB.encrypted : MANIFEST_BYTES_PER_BLOB.clear;
    this.setBlobLimit = options.setBlobLimit ?? Math.floor((MANIFEST_LIMIT * 0.9) / perBlob);
  }

  /** See Destination.setBlobLimit. */
  readonly setBlobLimit: number;

  private repo(scope: BlobScope): string {
    return 'container' in scope ? `${this.prefix}/${repoComponent(scope.container)}` : this.prefix;
  }

  /** The same for every access: GET /v2/ with the credentials, which changes nothing and refuses wrong ones. */
  async check(): Promise<void> {
    await this.client.ping();
  }

  async hasBlob(scope: BlobScope, digest: string): Promise<boolean> {
    const repo = this.repo(scope);
    if (await this.client.hasBlob(repo, digest)) return true;
    const seenIn = this.blobRepos.get(digest);
    return Boolean(seenIn && seenIn !== repo && (await this.client.mountBlob(repo, digest, seenIn)));
  }

  async writeBlob(scope: BlobScope): Promise<BlobWriter> {
    const repo = this.repo(scope);
    const upload = await this.client.createUpload(repo);
    return {
      stream: upload.stream,
      commit: async (digest) => {
        await upload.finish(digest);
        if (!this.blobRepos.has(digest)) this.blobRepos.set(digest, repo);
      },
      abort: () => upload.cancel(),
    };
  }

  readBlob(scope: BlobScope, digest: string): Promise<Readable> {
    return this.client.getBlob(this.repo(scope), digest);
  }

  async hasSet(tag: string): Promise<boolean> {
    return (await this.client.getManifest(this.prefix, tag, [OCI_MANIFEST])) !== undefined;
  }

  private async putJsonBlob(repo: string, body: Buffer): Promise<string> {
    const digest = sha256Digest(body);
    if (await this.client.hasBlob(repo, digest)) return digest;
    const upload = await this.client.createUpload(repo);
    upload.stream.end(body);
    await upload.finish(digest);
    return digest;
  }

  /**
   * The pushed image carries OCI labels; the set keeps the committed config untouched,
   * because an image's labels would merge into the restored container's own.
   */
  private async labeledConfig(repo: string, set: SnapshotSet, c: SnapshotSet['containers'][number]): Promise<{ digest: string; size: number }> {
    const config = JSON.parse((await readSmall(await this.client.getBlob(this.prefix, c.image.config.digest))).toString('utf8')) as {
      config?: { Labels?: Record<string, string> | null };
    };
    config.config ??= {};
    config.config.Labels = { ...(config.config.Labels ?? {}), ...ociLabels(set, c) };
    const body = Buffer.from(JSON.stringify(config));
    return { digest: await this.putJsonBlob(repo, body), size: body.length };
  }

  async writeSet(set: SnapshotSet): Promise<SetReceipt> {
    const refs: Record<string, StoredRef> = {};
    const annotations = { [CREATED]: set.created };
    const sealed = this.keyring?.encrypting
      ? await sealSet(set, this.keyring)
      : { body: Buffer.from(JSON.stringify(set)), mediaType: SET_MEDIA_TYPE, annotations: {} };
    const doc = sealed.body;
    // Every blob of the set's own scope: volume chunks, their side records and the committed image configs (a restore's, not the pushed one's).
    const scopeBlobs = setScopeBlobs(set);
    const setManifest: ImageManifest = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: sealed.mediaType, digest: sha256Digest(doc), size: doc.length },
      layers: scopeBlobs.map(descriptorOf),
      annotations: { ...annotations, ...sealed.annotations },
    };
    const body = Buffer.from(JSON.stringify(setManifest));
    if (body.length > MANIFEST_LIMIT) {
      throw new DestinationError(
        `${this.label}: the set manifest of ${set.tag} would take ${body.length} bytes (${scopeBlobs.length} blobs), more than the ${MANIFEST_LIMIT} a manifest is read back with; not written. Expected fewer or smaller volumes per set, or a dir: destination.`,
      );
    }
    const repos = new Map<string, string>();
    for (const c of set.containers) {
      const repo = this.repo({ container: c.name });
      if (repos.has(repo)) throw new DestinationError(`${this.label}: containers ${repos.get(repo)} and ${c.name} map to the same repository ${repo}`);
      repos.set(repo, c.name);
      const manifest: ImageManifest = {
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: await this.imageConfig(repo, set, c),
        layers: c.image.layers.map(descriptorOf),
        annotations: ociLabels(set, c),
      };
      const digest = await this.client.putManifest(repo, set.tag, OCI_MANIFEST, Buffer.from(JSON.stringify(manifest)));
      refs[c.name] = { ref: `${this.client.host}/${repo}:${set.tag}`, digest };
    }
    await this.putJsonBlob(this.prefix, doc);
    await this.client.putManifest(this.prefix, set.tag, OCI_MANIFEST, body);
    return { refs };
  }

  /**
   * The pushed image's config: the labelled copy of a clear config (pullable), or the encrypted config
   * itself, mounted from the set's repository (an artifact: its layers are encrypted too).
   */
  private async imageConfig(
    repo: string,
    set: SnapshotSet,
    c: SnapshotSet['containers'][number],
  ): Promise<{ mediaType: string; digest: string; size: number }> {
    if (!c.image.config.encryption) return { mediaType: IMAGE_CONFIG_MEDIA_TYPE, ...(await this.labeledConfig(repo, set, c)) };
    const { digest, size } = c.image.config;
    if (!(await this.client.hasBlob(repo, digest)) && !(await this.client.mountBlob(repo, digest, this.prefix))) {
      throw new DestinationError(`${this.label}: the encrypted image config of ${c.name} could not be mounted into ${repo}`);
    }
    return { mediaType: ENCRYPTED_IMAGE_CONFIG_MEDIA_TYPE, digest, size };
  }

  async readSet(tag: string): Promise<SnapshotSet | undefined> {
    if (tag === 'latest') {
      const [newest] = await this.listSets();
      return newest ? this.readSet(newest.tag) : undefined;
    }
    const manifest = await this.setManifest(tag);
    if (!manifest?.config) return undefined;
    const { digest, size } = manifest.config;
    let body: Buffer;
    try {
      body = await readSmall(await this.client.getBlob(this.prefix, digest));
    } catch (err) {
      if (err instanceof DigestMismatchError) throw new SetDigestError(tag, this.label, digest);
      throw err;
    }
    const set = await openSealed(
      body,
      { mediaType: manifest.config.mediaType, digest, size, annotations: manifest.annotations },
      this.keyring,
      tag,
      this.label,
    );
    for (const c of set.containers) {
      const repo = this.repo({ container: c.name });
      for (const b of c.image.layers) if (!this.blobRepos.has(b.digest)) this.blobRepos.set(b.digest, repo);
    }
    return set;
  }

  /**
   * The set's manifest, checked against the digest its tag points at; its config descriptor
   * names the set document by digest. Undefined when the tag holds no set.
   */
  private async setManifest(
    tag: string,
  ): Promise<{ config?: { mediaType: string; digest: string; size?: number }; created?: string; annotations?: Record<string, string> } | undefined> {
    let manifest;
    try {
      manifest = await this.client.getManifest(this.prefix, tag, [OCI_MANIFEST]);
    } catch (err) {
      if (err instanceof DigestMismatchError) throw new SetDigestError(tag, this.label, err.expected, 'set manifest');
      throw err;
    }
    if (!manifest) return undefined;
    const parsed = JSON.parse(manifest.body.toString('utf8')) as {
      config?: { mediaType?: string; digest?: string; size?: number };
      annotations?: Record<string, string>;
    };
    const created = parsed.annotations?.[CREATED];
    const mediaType = parsed.config?.mediaType;
    if ((mediaType !== SET_MEDIA_TYPE && mediaType !== SET_AGE_MEDIA_TYPE) || typeof parsed.config?.digest !== 'string') return { created };
    const size = typeof parsed.config.size === 'number' ? parsed.config.size : undefined;
    return { config: { mediaType, digest: parsed.config.digest, size }, created, annotations: parsed.annotations };
  }

  async listSets(): Promise<SetSummary[]> {
    const sets: SetSummary[] = [];
    for (const tag of await this.client.listTags(this.prefix)) {
      try {
        const sealed = await this.sealedSummary(tag);
        const set = sealed ? undefined : await this.readSet(tag);
        if (sealed) sets.push(sealed);
        if (set) sets.push(summarize(set));
      } catch (err) {
        if (err instanceof SetDigestError) sets.push(damagedSummary(tag, await this.createdOf(tag), err));
        else this.warn(`Skipping ${this.label}:${tag}: ${(err as Error).message}`);
      }
    }
    return sets.sort(newestFirst);
  }

  /** An encrypted set as listed, from its manifest's clear envelope (not decrypted); undefined for a clear set. */
  private async sealedSummary(tag: string): Promise<SetSummary | undefined> {
    const manifest = await this.setManifest(tag);
    if (manifest?.config?.mediaType !== SET_AGE_MEDIA_TYPE) return undefined;
    return sealedSummary(tag, manifest.created ?? '', envelopeOf(manifest.annotations, `${this.label}:${tag}`));
  }

  /** When a damaged set was made, as its manifest says (for ordering only); undefined when the manifest itself is damaged. */
  private async createdOf(tag: string): Promise<string | undefined> {
    return (await this.setManifest(tag).catch(() => undefined))?.created;
  }

  /**
   * The set's manifest first (the set is no longer listed), then each container's image manifest of
   * that tag, each deleted by digest (distribution spec: DELETE /v2/<name>/manifests/<digest>). Every
   * one of them names its set's tag (the set document, the image's annotations), so no other tag
   * points at the same digest. Blobs stay until the registry's own garbage collection.
   */
  async deleteSet(tag: string): Promise<void> {
    // An encrypted set's containers are in its clear envelope: a prune needs no key.
    const containers = (await this.sealedSummary(tag))?.containers ?? (await this.readSet(tag))?.containers.map((c) => c.name);
    const manifest = await this.client.getManifest(this.prefix, tag, [OCI_MANIFEST]);
    if (!containers || !manifest) return;
    await this.deleteManifest(this.prefix, manifest.digest);
    for (const name of containers) {
      const repo = this.repo({ container: name });
      const image = await this.client.getManifest(repo, tag, [OCI_MANIFEST]);
      if (image) await this.deleteManifest(repo, image.digest);
    }
  }

  private async deleteManifest(repo: string, digest: string): Promise<void> {
    try {
      await this.client.deleteManifest(repo, digest);
    } catch (err) {
      if (err instanceof RegistryError && err.status === 405) {
        throw new DestinationError(
          `${this.label}: the registry refuses deletes (HTTP 405 on ${repo}). Expected a registry with deletes enabled (distribution: storage.delete.enabled: true).`,
        );
      }
      throw err;
    }
  }
}
