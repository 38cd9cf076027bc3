/** Reading a snapshot set document (manifest.ts): its schema checked, every blob descriptor checked, its bytes checked against their digest. */
import { isDigest, sha256Digest } from '../oci/digest.js';
import {
  CHUNKED_VOLUME_MEDIA_TYPE,
  CHUNK_LIST_VOLUME_MEDIA_TYPE,
  chunkListDigest,
  ManifestError,
  SET_MEDIA_TYPE,
  SET_SCHEMA_VERSIONS,
  SetDigestError,
  isChunked,
  type BlobDescriptor,
  type ContainerRecord,
  type SetDescriptor,
  type SnapshotSet,
} from './manifest.js';

/**
 * Parses a set document only once its bytes match the digest (and size) recorded for its tag
 * (OCI image-spec descriptor rules: the digest is of the exact bytes). Throws SetDigestError
 * on a mismatch, ManifestError when the matching bytes are not a set of tag `tag`.
 */
export function parseCheckedSet(body: Buffer, expected: Pick<SetDescriptor, 'digest'> & { size?: number }, tag: string, location: string): SnapshotSet {
  if (sha256Digest(body) !== expected.digest || (expected.size !== undefined && body.length !== expected.size)) {
    throw new SetDigestError(tag, location, expected.digest);
  }
  const set = parseSet(body.toString('utf8'), `${location} ${tag}`);
  if (set.tag !== tag) throw new ManifestError(`Snapshot ${tag} in ${location}: its set document is the one of snapshot ${set.tag}; not used.`);
  return set;
}

/**
 * Reads a set document of schema 1, 2 or 3 (SET_SCHEMA_VERSIONS) and checks every blob descriptor in it.
 * A container record's engine state written as `status` (schema 1, and schema 2 before it was `state`)
 * comes back as `state`; a schema 1 record keeps its `status` too, so that a copy of the set
 * (completeSet) still says it to releases that read only schema 1. Throws ManifestError when the text is not such a document.
 */
export function parseSet(text: string, where: string): SnapshotSet {
  let set: SnapshotSet;
  try {
    set = JSON.parse(text) as SnapshotSet;
  } catch (err) {
    throw new ManifestError(`Invalid snapshot manifest at ${where}: ${(err as Error).message}`);
  }
  if (set?.mediaType !== SET_MEDIA_TYPE || !(SET_SCHEMA_VERSIONS as readonly unknown[]).includes(set.schemaVersion)) {
    throw new ManifestError(
      `Unsupported snapshot manifest at ${where}: expected ${SET_MEDIA_TYPE} schema ${SET_SCHEMA_VERSIONS.join(' or ')}, found ${String(set?.mediaType)} ${String(set?.schemaVersion)}.`,
    );
  }
  if (!Array.isArray(set.containers)) throw new ManifestError(`Invalid snapshot manifest at ${where}: no containers.`);
  set.failures ??= [];
  for (const c of set.containers) {
    stateFromStatus(c, set.schemaVersion === 1);
    checkBlob(c.image?.config, `container ${c.name} image config`);
    c.image.layers.forEach((l, i) => checkBlob(l, `container ${c.name} layer ${i}`));
    if (c.image.layerIndex) checkBlob(c.image.layerIndex, `container ${c.name} writable layer index`);
    const deltas = c.image.deltas ?? 0;
    // Delta layers go on the whole writable layer, or straight on the base image's layers when the commit added none (baseLayers).
    const below = c.image.baseLayers === undefined ? 1 : 0;
    if (!(Number.isInteger(deltas) && deltas >= 0 && (deltas === 0 || deltas + below <= c.image.layers.length)))
      throw new ManifestError(
        `Invalid snapshot manifest at ${where}: container ${c.name} has ${String(c.image.deltas)} delta layers of ${c.image.layers.length}.`,
      );
    const base = c.image.baseLayers;
    if (base !== undefined && !(Number.isInteger(base) && base >= 0 && base + deltas <= c.image.layers.length))
      throw new ManifestError(
        `Invalid snapshot manifest at ${where}: container ${c.name} has ${String(base)} base image layers and ${deltas} delta layers of ${c.image.layers.length}.`,
      );
    c.volumes.forEach((v) => checkVolumeBlob(v.blob, `container ${c.name} volume ${v.name || v.destination}`));
    c.volumes.forEach((v) => v.metadata?.record && checkBlob(v.metadata.record, `container ${c.name} volume ${v.name || v.destination} side record`));
  }
  return set;
}

/** A record that names its engine state `status` (as written before `state`): `state` set in place; `status` kept when `keep`. */
function stateFromStatus(c: ContainerRecord, keep: boolean): void {
  if (c.state === undefined && c.status !== undefined) c.state = c.status;
  if (!keep) delete c.status;
}

function checkBlob(blob: BlobDescriptor | undefined, where: string): void {
  if (!blob || !isDigest(blob.digest) || !isDigest(blob.contentDigest) || !(blob.size >= 0) || !(blob.contentSize >= 0)) {
    throw new ManifestError(`Invalid snapshot manifest: ${where} has no valid blob descriptor (sha256 digest and size).`);
  }
}

function checkVolumeBlob(blob: BlobDescriptor, where: string): void {
  checkBlob(blob, where);
  if (blob.mediaType !== CHUNKED_VOLUME_MEDIA_TYPE && blob.mediaType !== CHUNK_LIST_VOLUME_MEDIA_TYPE) return;
  if (!isChunked(blob) || blob.chunks.length === 0) throw new ManifestError(`Invalid snapshot manifest: ${where} is chunked and lists no chunks.`);
  blob.chunks.forEach((chunk, i) => checkBlob(chunk, `${where} chunk ${i}`));
  const sum = (n: number, b: BlobDescriptor) => n + b.contentSize;
  if (blob.chunks.reduce(sum, 0) !== blob.contentSize) throw new ManifestError(`Invalid snapshot manifest: ${where}: its chunks do not add up to its size.`);
  if (blob.mediaType === CHUNK_LIST_VOLUME_MEDIA_TYPE && blob.contentDigest !== chunkListDigest(blob.chunks)) {
    throw new ManifestError(`Invalid snapshot manifest: ${where}: its digest is not that of its chunk list.`);
  }
  if (blob.files) checkBlob(blob.files, `${where} file index`);
}
