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
  type SetSummary,
  type SnapshotSet,
} from '../snapshot/manifest.js';
import { readSmall } from '../util/streams.js';
import { forEachLimited } from '../util/pool.js';
import { CREATED, descriptorOf, ENCRYPTED_IMAGE_CONFIG_MEDIA_TYPE, ociLabels } from './registry-image.js';
import { KnownBlobs } from './registry-known.js';
import { LIST_READS, parseSetManifest, summaryOf, type SetManifest } from './registry-set-manifest.js';
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
  /** Where blobs are known to be (manifests read, blobs stored), so fewer are asked for; set documents read. */
  private readonly known = new KnownBlobs();

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

  /**
   * True without a request when a manifest read from the repository names the blob, or this run
   * stored it there (KnownBlobs); else a HEAD, then a mount from a repository it was seen in.
   */
  async hasBlob(scope: BlobScope, digest: string): Promise<boolean> {
    const repo = this.repo(scope);
    if (this.known.has(repo, digest)) return true;
    const from = this.known.mountSource(repo, digest);
    const here = (await this.client.hasBlob(repo, digest)) || Boolean(from && (await this.client.mountBlob(repo, digest, from)));
    if (here) this.known.add(repo, [digest]);
    return here;
  }

  async writeBlob(scope: BlobScope): Promise<BlobWriter> {
    const repo = this.repo(scope);
    const upload = await this.client.createUpload(repo);
    return {
      stream: upload.stream,
      commit: async (digest) => {
        await upload.finish(digest);
        this.known.add(repo, [digest]);
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
    if (this.known.has(repo, digest) || (await this.client.hasBlob(repo, digest))) return digest;
    const upload = await this.client.createUpload(repo);
    upload.stream.end(body);
    await upload.finish(digest);
    this.known.add(repo, [digest]);
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
    return this.setOf(tag, await this.setManifest(tag));
  }

  /** The set `manifest` (read at `tag`) names: its document read (once per run: by digest) and opened; undefined when it names none. */
  private async setOf(tag: string, manifest: SetManifest | undefined): Promise<SnapshotSet | undefined> {
    if (!manifest?.config) return undefined;
    const { digest, size } = manifest.config;
    let body = this.known.doc(digest);
    if (!body) {
      try {
        body = await readSmall(await this.client.getBlob(this.prefix, digest));
      } catch (err) {
        if (err instanceof DigestMismatchError) throw new SetDigestError(tag, this.label, digest);
        throw err;
      }
      this.known.keepDoc(digest, body);
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
      for (const b of c.image.layers) this.known.seen(repo, b.digest);
    }
    return set;
  }

  /**
   * The set's manifest, checked against the digest its tag points at; its config descriptor
   * names the set document by digest. Undefined when the tag holds no set. The blobs it names
   * are noted as in the set's repository (the registry checked them when it was pushed).
   */
  private async setManifest(tag: string): Promise<SetManifest | undefined> {
    let manifest;
    try {
      manifest = await this.client.getManifest(this.prefix, tag, [OCI_MANIFEST]);
    } catch (err) {
      if (err instanceof DigestMismatchError) throw new SetDigestError(tag, this.label, err.expected, 'set manifest');
      throw err;
    }
    if (!manifest) return undefined;
    const { parsed, named } = parseSetManifest(manifest.body);
    this.known.add(this.prefix, named);
    return parsed;
  }

  /** Every set, newest first: each tag's manifest read once (LIST_READS at once), and a clear set's document; an encrypted one listed from its envelope. */
  async listSets(): Promise<SetSummary[]> {
    const tags = await this.client.listTags(this.prefix);
    const listed: Array<SetSummary | Error | undefined> = [];
    await forEachLimited(tags, LIST_READS, async (tag, i) => {
      try {
        const manifest = await this.setManifest(tag);
        const sealed = this.sealedOf(tag, manifest);
        listed[i] = sealed ?? summaryOf(await this.setOf(tag, manifest));
      } catch (err) {
        listed[i] = err instanceof SetDigestError ? damagedSummary(tag, await this.createdOf(tag), err) : (err as Error);
      }
    });
    const sets: SetSummary[] = [];
    tags.forEach((tag, i) => {
      const entry = listed[i];
      if (entry instanceof Error) this.warn(`Skipping ${this.label}:${tag}: ${entry.message}`);
      else if (entry) sets.push(entry);
    });
    return sets.sort(newestFirst);
  }

  /** An encrypted set as listed, from its manifest's clear envelope (not decrypted); undefined for a clear set. */
  private async sealedSummary(tag: string): Promise<SetSummary | undefined> {
    return this.sealedOf(tag, await this.setManifest(tag));
  }

  /** sealedSummary of a manifest already read. */
  private sealedOf(tag: string, manifest: SetManifest | undefined): SetSummary | undefined {
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
