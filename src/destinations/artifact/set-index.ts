import { isDigest } from '../../oci/digest.js';
import { SET_AGE_MEDIA_TYPE, setBlobs, type SnapshotSet } from '../../snapshot/manifest.js';
import { parseSet } from '../../snapshot/set-parse.js';
import { envelopeOf, type SealedDocument } from '../../snapshot/sealed-sets.js';
import { DestinationError } from '../types.js';

export const INDEX_MEDIA_TYPE = 'application/vnd.container-snapshot.artifact-index.v1+json';

/**
 * What the set's artifact holds: the set document (in clear: `set`; encrypted: `sealed`, its age
 * bytes in base64 with its clear envelope, sealed-sets.ts), and which artifact stores each blob.
 */
export interface ArtifactIndex {
  mediaType: typeof INDEX_MEDIA_TYPE;
  set?: SnapshotSet;
  sealed?: { mediaType: string; body: string; annotations: Record<string, string> };
  blobs: Record<string, string>;
}

/** The index of `set` as written: `doc` is the set document sealSet made (sealed when its media type is SET_AGE_MEDIA_TYPE). */
export function buildIndex(set: SnapshotSet, doc: SealedDocument, blobs: Record<string, string>): ArtifactIndex {
  return doc.mediaType === SET_AGE_MEDIA_TYPE
    ? { mediaType: INDEX_MEDIA_TYPE, sealed: { mediaType: doc.mediaType, body: doc.body.toString('base64'), annotations: doc.annotations }, blobs }
    : { mediaType: INDEX_MEDIA_TYPE, set, blobs };
}

/**
 * A set artifact's text as an index; `where` names it in errors. Throws DestinationError when it is
 * not JSON, not an index, or does not say where one of its set's blobs is; a ManifestError from parseSet.
 */
export function parseIndex(text: string, where: string): ArtifactIndex {
  let doc: Partial<ArtifactIndex>;
  try {
    doc = JSON.parse(text) as Partial<ArtifactIndex>;
  } catch (err) {
    throw new DestinationError(`${where} is not JSON: ${(err as Error).message}`);
  }
  if (doc.mediaType !== INDEX_MEDIA_TYPE || typeof doc.blobs !== 'object' || doc.blobs === null) {
    throw new DestinationError(`${where} is not a container-snapshot artifact index. Expected mediaType ${INDEX_MEDIA_TYPE}.`);
  }
  for (const [digest, name] of Object.entries(doc.blobs)) {
    if (!isDigest(digest) || typeof name !== 'string') throw new DestinationError(`${where} has an invalid blob entry '${digest}'`);
  }
  if (doc.sealed && doc.set === undefined) {
    if (doc.sealed.mediaType !== SET_AGE_MEDIA_TYPE || typeof doc.sealed.body !== 'string')
      throw new DestinationError(`${where} holds an encrypted set document of an unknown kind. Expected ${SET_AGE_MEDIA_TYPE}.`);
    const missing = envelopeOf(doc.sealed.annotations, where).blobs.filter((d) => !doc.blobs![d]);
    if (missing.length > 0) throw new DestinationError(`${where} does not say where blob ${missing[0]} is`);
    return { mediaType: INDEX_MEDIA_TYPE, sealed: doc.sealed, blobs: doc.blobs };
  }
  const set = parseSet(JSON.stringify(doc.set), where);
  const missing = setBlobs(set)
    .map((b) => b.digest)
    .filter((d) => !doc.blobs![d]);
  if (missing.length > 0) throw new DestinationError(`${where} does not say where blob ${missing[0]} is`);
  return { mediaType: INDEX_MEDIA_TYPE, set, blobs: doc.blobs };
}
