/**
 * A content descriptor (OCI image spec, descriptor.md): what a blob is, its digest and its size
 * in bytes.
 */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

/** An image manifest (OCI image spec, manifest.md), as this project writes them: schema 2, a config and layers. */
export interface ImageManifest {
  schemaVersion: 2;
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}
