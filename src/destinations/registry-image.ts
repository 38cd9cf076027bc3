/**
 * What the registry destination puts into a snapshot image besides its layers: the OCI descriptors of
 * its blobs and the labels of its config (OCI image-spec, annotations.md: pre-defined keys).
 */
import type { BlobDescriptor, SnapshotSet } from '../snapshot/manifest.js';

/** The OCI annotation and label of when a manifest or image was made (image-spec annotations.md). */
export const CREATED = 'org.opencontainers.image.created';

/** The config of a snapshot image whose config and layers are encrypted: an OCI artifact, not a pullable image. */
export const ENCRYPTED_IMAGE_CONFIG_MEDIA_TYPE = 'application/vnd.container-snapshot.image-config.v1+json+age';

/** A blob as an OCI descriptor: an encrypted one's media type says so (`+age`), so no client takes it for what it holds. */
export function descriptorOf(b: BlobDescriptor): { mediaType: string; digest: string; size: number } {
  return { mediaType: b.encryption ? `${b.mediaType}+age` : b.mediaType, digest: b.digest, size: b.size };
}

/** The labels of a snapshot image's config: when and from what it was made, and which container and set it belongs to. */
export function ociLabels(set: SnapshotSet, c: SnapshotSet['containers'][number]): Record<string, string> {
  return {
    [CREATED]: set.created,
    'org.opencontainers.image.base.name': c.image.baseImage,
    ...(set.source.revision ? { 'org.opencontainers.image.revision': set.source.revision } : {}),
    'io.container-snapshot.container': c.name,
    'io.container-snapshot.set': set.tag,
  };
}
