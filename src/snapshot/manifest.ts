/**
 * The snapshot set document (SET_MEDIA_TYPE): its types, media types and schema versions, the blobs
 * it references, and its summary. Parsing and checking a document: set-parse.ts.
 */
import { createHash } from 'node:crypto';
import { OCI_IMAGE_CONFIG, ociLayerMediaType } from '../oci/media-types.js';
import type { Descriptor } from '../oci/descriptor.js';
import type { ContainerSpec } from './spec.js';

export const SET_MEDIA_TYPE = 'application/vnd.container-snapshot.set.v1+json';
/**
 * The schema every new set is written with. 2 since a container record's engine state is `state`
 * (was `status`, which a schema 1 reader looks for); 2 also brought delta layers (ImageRecord.deltas)
 * and chunked volumes (ChunkedBlob). 3 since a chunked volume's digest is that of its chunk list
 * (CHUNK_LIST_VOLUME_MEDIA_TYPE), with a file index (ChunkedBlob.files): a schema 2 reader would
 * look for a whole-archive digest that is not there.
 */
export const SET_SCHEMA_VERSION = 3;
/** Schemas this version reads: 1, 2 (delta layers, chunked volumes, `state`) and 3 (chunk-list digests, file indexes). parseSet reads each one's records as the newest. */
export const SET_SCHEMA_VERSIONS = [1, 2, 3] as const;
export type SetSchemaVersion = (typeof SET_SCHEMA_VERSIONS)[number];

/** A set document encrypted with age (sealed-sets.ts): its descriptor's media type. */
export const SET_AGE_MEDIA_TYPE = `${SET_MEDIA_TYPE}+age`;
export type Compression = 'zstd' | 'gzip';

export function layerMediaType(compression: Compression): string {
  return ociLayerMediaType(compression);
}

export function volumeMediaType(compression: Compression): string {
  return `application/vnd.container-snapshot.volume.v1.tar+${compression}`;
}
/** One content-defined chunk of a volume's archive (chunked.ts), compressed like the volume. */
export function chunkMediaType(compression: Compression): string {
  return `application/vnd.container-snapshot.chunk.v1+${compression}`;
}
/** A volume's archive stored as chunks (ChunkedBlob), its digest the whole archive's sha256 (sets of schema 2): no bytes of its own. */
export const CHUNKED_VOLUME_MEDIA_TYPE = 'application/vnd.container-snapshot.volume.v2.tar+chunks';
/**
 * A volume's archive stored as chunks (ChunkedBlob), its digest that of its chunk list
 * (chunkListDigest), since its unchanged files' chunks are taken from the set before without being
 * read again (file-index.ts): no bytes of its own. Sets of schema 3.
 */
export const CHUNK_LIST_VOLUME_MEDIA_TYPE = 'application/vnd.container-snapshot.volume.v3.tar+chunks';
/** A volume's side record (JSON, `MetadataRecord` in volume-metadata.ts) of what the engine's archive drops. */
export function volumeMetadataMediaType(compression: Compression): string {
  return `application/vnd.container-snapshot.volume-metadata.v1+json+${compression}`;
}
export const IMAGE_CONFIG_MEDIA_TYPE = OCI_IMAGE_CONFIG;

/**
 * A stored blob. `digest`/`size` describe the stored (compressed) bytes;
 * `contentDigest`/`contentSize` the bytes the engine gave and will take back.
 */
export interface BlobDescriptor extends Descriptor {
  contentDigest: string;
  contentSize: number;
  /** `age` when the stored bytes are the compressed content encrypted with age (keyring.ts); absent: not encrypted. */
  encryption?: 'age';
}

/**
 * A volume's archive cut into content-defined chunks (chunker.ts), each stored as its own blob.
 * `contentSize` is the whole archive's (the chunks' contents concatenated) and `size` the sum of
 * the chunks' stored sizes. `contentDigest` (and `digest`, the same: no blob is stored under it)
 * is the whole archive's sha256 for CHUNKED_VOLUME_MEDIA_TYPE (schema 2), the chunk list's
 * (chunkListDigest) for CHUNK_LIST_VOLUME_MEDIA_TYPE (schema 3). `chunks` lists them in order; the
 * same chunk may appear more than once. `files`: the archive's file index (file-index.ts), a
 * set-scope blob the next backup reads to take unchanged files' chunks without reading them.
 */
export interface ChunkedBlob extends BlobDescriptor {
  mediaType: typeof CHUNKED_VOLUME_MEDIA_TYPE | typeof CHUNK_LIST_VOLUME_MEDIA_TYPE;
  chunks: BlobDescriptor[];
  files?: BlobDescriptor;
}

export function isChunked(blob: BlobDescriptor): blob is ChunkedBlob {
  return (blob.mediaType === CHUNKED_VOLUME_MEDIA_TYPE || blob.mediaType === CHUNK_LIST_VOLUME_MEDIA_TYPE) && Array.isArray((blob as ChunkedBlob).chunks);
}

/**
 * The digest of a chunk list (CHUNK_LIST_VOLUME_MEDIA_TYPE): sha256 of one line per chunk, in
 * order, `<content digest> <content size in bytes>\n`. Each chunk's content is checked against its
 * own digest when read, so the archive is checked whole without a digest of all its bytes.
 */
export function chunkListDigest(chunks: ReadonlyArray<Pick<BlobDescriptor, 'contentDigest' | 'contentSize'>>): string {
  const h = createHash('sha256');
  for (const c of chunks) h.update(`${c.contentDigest} ${c.contentSize}\n`);
  return `sha256:${h.digest('hex')}`;
}

/**
 * The blobs stored for `blob`: its chunks (and its file index) when it is chunked, else itself.
 * Everything that reads, counts, copies or sweeps blobs goes through here.
 */
export function storedBlobs(blob: BlobDescriptor): BlobDescriptor[] {
  if (!isChunked(blob)) return [blob];
  return blob.files ? [...blob.chunks, blob.files] : blob.chunks;
}

export interface ImageRecord {
  /** Image ID of the committed writable layer (the sha256 of its config). */
  id: string;
  /** The image the container was created from, for information. */
  baseImage: string;
  config: BlobDescriptor;
  layers: BlobDescriptor[];
  /**
   * How many of the top layers are delta layers (layer-delta.ts): each holds what changed in the
   * writable layer since the snapshot before, over the full writable layer below them. Absent or 0:
   * the top layer is the whole writable layer (a commit).
   */
  deltas?: number;
  /**
   * How many of `layers`, from the bottom, are the image the container was made from; those above
   * are the container's own: its writable layer (none when a commit found nothing changed: the
   * engine then adds no layer, moby daemon/images image_commit.go), then `deltas` delta layers.
   * Absent in sets written before it was recorded: the top `deltas + 1` layers are then taken for
   * the container's.
   */
  baseLayers?: number;
  /** The writable layer's index at this snapshot (layer-index.ts), for the next backup to compare with; a set-scope blob. */
  layerIndex?: BlobDescriptor;
}

export interface VolumeRecord {
  type: 'volume' | 'bind';
  /** Volume name; empty for bind mounts. */
  name: string;
  anonymous: boolean;
  destination: string;
  /** Host path, bind mounts only. */
  source?: string;
  driver?: string;
  driverOptions?: Record<string, string>;
  labels?: Record<string, string>;
  /** The archive of the volume: one blob (every set of schema 1; sets for an artifact: destination), or chunked. */
  blob: BlobDescriptor | ChunkedBlob;
  /** What the engine's archive of this volume dropped (absent in sets written before it was recorded). */
  metadata?: VolumeMetadata;
}

/** Counts of files whose metadata the engine's archive does not carry (Engine 20.10, measured). */
export interface MetadataLoss {
  /** Files with extended attributes other than ACLs and `security.capability` (which the archive keeps). */
  xattrs: number;
  /** Files with a POSIX ACL (`system.posix_acl_access` or `_default`). */
  acls: number;
  subSecondTimes: number;
  /** Files modified before 1970: in the archive, but an engine restores the epoch instead (moby Chtimes); absent in sets written before it was counted. */
  before1970?: number;
  sockets: number;
}

export interface VolumeMetadata {
  /** Dropped by the archive, counted at backup; absent when the files could not be read. */
  dropped?: MetadataLoss;
  /** The side record a restore merges into the archive it puts back (xattrs, ACLs, sub-second times). */
  record?: BlobDescriptor;
  /** What this set does not keep, in words (sockets; what could not be read and why); absent when it keeps everything. */
  notKept?: string;
}

/** A container's state as the engine reports it (Engine API `State.Status`, with `paused` when `State.Paused`). */
export type ContainerState = 'created' | 'running' | 'paused' | 'restarting' | 'removing' | 'exited' | 'dead';

export interface ContainerRecord {
  name: string;
  id: string;
  /** The engine state the container was in when it was taken; `status` in sets of schema 1 and early schema 2 (parseSet renames it). */
  state: ContainerState;
  /**
   * Schema 1's name of `state`: kept only on the records of a schema 1 set as read (parseSet), so a
   * copy of that set still says it to releases that read only schema 1. Never written on a new set; read `state`.
   */
  status?: ContainerState;
  image: ImageRecord;
  volumes: VolumeRecord[];
  spec: ContainerSpec;
  pausedMs: number;
  /** How long a container stopped for its snapshot was down (0 when it was not stopped). */
  stoppedMs?: number;
  /** The consistency group it was taken with (held at one instant with the others); absent when in none, and in sets written before groups. */
  group?: string;
}

export interface SnapshotSet {
  schemaVersion: SetSchemaVersion;
  mediaType: typeof SET_MEDIA_TYPE;
  tag: string;
  created: string;
  tool: { name: string; version: string };
  source: {
    hostname: string;
    /** The engine the set was taken on; `name` (its host name) and `id` (daemon ID) are absent in sets written before they were recorded. */
    engine: { version: string; apiVersion: string; os: string; arch: string; name?: string; id?: string };
    revision?: string;
    run?: string;
  };
  containers: ContainerRecord[];
  /** Containers selected for this set that could not be backed up. */
  failures: Array<{ name: string; error: string }>;
}

export interface SetSummary {
  tag: string;
  created: string;
  containers: string[];
  /**
   * Where the set was taken (setOrigin: a short hash of the engine's daemon ID); absent where that
   * is unknown (a damaged set, sets of earlier versions). A container's sets are its name's sets of
   * one origin, those of unknown origin with them (retention, a backup's base set).
   */
  origin?: string;
  bytes: number;
  /** Why the set cannot be used (its document fails its digest); listed so that `latest` never skips it silently. */
  damaged?: string;
  /** True when the set document and its blobs are stored encrypted (age); absent for a damaged set. */
  encrypted?: boolean;
  /** An encrypted set: what its descriptor says in clear (sealed-sets.ts); the fields above come from it. */
  encryption?: SetEnvelope;
}

/**
 * What an encrypted set says in clear, beside its encrypted document: enough to list it, to prune
 * (the stored digests of its blobs) and to reuse its blobs in the next set made with the same keys.
 */
export interface SetEnvelope {
  format: 'age';
  containers: string[];
  /** Stored bytes of its blobs. */
  bytes: number;
  /** Stored (ciphertext) digests of every blob it references, for a prune that has no key. */
  blobs: string[];
  /** The session identity wrapped with the backup's passphrase (armored age, scrypt), when it had one. */
  passphraseKey?: string;
  /** The dedupe record (Keyring.sealRecord): each container's layers and volumes by content digest. */
  dedupe?: string;
  /** setOrigin of the set (absent in envelopes written before it was recorded). */
  origin?: string;
}

export class ManifestError extends Error {
  override name = 'ManifestError';
}

/** Where a set's document and the digest it must have come from: the tag resolves to `digest` apart from the document. */
export type SetDescriptor = Descriptor;

/** A set document (or the record that points at it) whose bytes are not the ones its digest names. */
export class SetDigestError extends ManifestError {
  override name = 'SetDigestError';
  constructor(
    readonly tag: string,
    readonly location: string,
    readonly digest: string,
    what = 'set document',
  ) {
    super(`Snapshot ${tag} in ${location}: the ${what} does not match its digest ${digest} (corrupted or changed); not used.`);
  }
}

/** Every blob a set stores, each once (a chunked volume's chunks, never its whole). */
export function setBlobs(set: SnapshotSet): BlobDescriptor[] {
  const all = set.containers.flatMap((c) => [...c.image.layers, ...setScopeBlobsOf(c)]);
  return [...new Map(all.map((b) => [b.digest, b])).values()];
}

/** The blobs of one container that a set keeps in its own scope: its image config, writable layer index, volumes (each chunk) and their side records. */
export function setScopeBlobsOf(c: ContainerRecord): BlobDescriptor[] {
  const index = c.image.layerIndex ? [c.image.layerIndex] : [];
  return [c.image.config, ...index, ...c.volumes.flatMap((v) => [...storedBlobs(v.blob), ...(v.metadata?.record ? [v.metadata.record] : [])])];
}

/** The blobs a set keeps in its own scope (not a container's image): image configs, volumes and their side records, each once. */
export function setScopeBlobs(set: SnapshotSet): BlobDescriptor[] {
  return [...new Map(set.containers.flatMap(setScopeBlobsOf).map((b) => [b.digest, b])).values()];
}

/**
 * Where a set was taken, as a key: the first 16 hex digits of the sha256 of `engine:<daemon ID>`;
 * undefined for a set that lacks the engine's ID (sets of earlier versions), whose origin is
 * unknown. Hashed: an encrypted set's clear envelope carries it, and need not name the host.
 */
export function setOrigin(source: SnapshotSet['source'] | undefined): string | undefined {
  const id = source?.engine?.id;
  return id ? createHash('sha256').update(`engine:${id}`).digest('hex').slice(0, 16) : undefined;
}

export function summarize(set: SnapshotSet): SetSummary {
  const origin = setOrigin(set.source);
  return {
    tag: set.tag,
    created: set.created,
    containers: set.containers.map((c) => c.name),
    ...(origin ? { origin } : {}),
    bytes: setBlobs(set).reduce((n, b) => n + b.size, 0),
    encrypted: false,
  };
}

/** A listed set that cannot be used: no containers, no size, and why. */
export function damagedSummary(tag: string, created: string | undefined, err: Error): SetSummary {
  return { tag, created: created ?? '', containers: [], bytes: 0, damaged: err.message };
}

/** Newest first: tags sort by their creation time, then by name. */
export function newestFirst(a: SetSummary, b: SetSummary): number {
  return b.created.localeCompare(a.created) || b.tag.localeCompare(a.tag);
}
