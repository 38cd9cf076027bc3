/**
 * Media types of the OCI image spec (media-types.md) and the Docker image manifest v2 schema 2
 * that registries answer with. This project's own types (the set document, volumes) live with
 * the set format in snapshot/manifest.ts.
 */

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const OCI_IMAGE_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';

/** What a registry may answer for a manifest, in order of preference (the `Accept` header of a GET). */
export const MANIFEST_MEDIA_TYPES = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST];

/** A layer: a tar archive, compressed (image-spec layer.md). */
export function ociLayerMediaType(compression: 'zstd' | 'gzip'): string {
  return `application/vnd.oci.image.layer.v1.tar+${compression}`;
}
