import { ManifestError, SET_AGE_MEDIA_TYPE, SET_MEDIA_TYPE, type SetDescriptor } from '../../snapshot/manifest.js';
import { DIGEST_RULE, isDigest } from '../../oci/digest.js';

/** The annotation of a set's creation time (image-spec annotations.md), an RFC 3339 date. */
export const CREATED = 'org.opencontainers.image.created';

/**
 * What sets/<tag>.json holds: a descriptor (image-spec descriptor.md) of the set document (current),
 * or the document itself (earlier versions, unchecked).
 */
export type SetRecord = { descriptor: SetDescriptor } | { legacy: string };

/**
 * Reads sets/<tag>.json (`where` names it in messages). Throws ManifestError when it is neither a
 * descriptor of a set document (media type, digest, size in bytes) nor a set document.
 */
export function parseSetRecord(text: string, where: string): SetRecord {
  let doc: Partial<SetDescriptor> & { schemaVersion?: unknown };
  try {
    doc = JSON.parse(text) as typeof doc;
  } catch (err) {
    throw new ManifestError(`Invalid snapshot record at ${where}: ${(err as Error).message}`);
  }
  if (doc?.schemaVersion !== undefined) return { legacy: text };
  const mediaType = doc?.mediaType === SET_AGE_MEDIA_TYPE ? SET_AGE_MEDIA_TYPE : SET_MEDIA_TYPE;
  if (doc?.mediaType !== mediaType || !isDigest(doc.digest) || !Number.isSafeInteger(doc.size) || (doc.size ?? -1) < 0) {
    throw new ManifestError(`Invalid snapshot record at ${where}: expected a descriptor of a ${SET_MEDIA_TYPE} document (digest ${DIGEST_RULE} and size).`);
  }
  return { descriptor: { mediaType, digest: doc.digest, size: doc.size!, annotations: doc.annotations } };
}
