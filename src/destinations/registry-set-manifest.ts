/** A registry destination's set manifest as read back (registry.ts writes it): what it names, parsed. */
import { isDigest } from '../oci/digest.js';
import { SET_AGE_MEDIA_TYPE, SET_MEDIA_TYPE, summarize, type SetSummary, type SnapshotSet } from '../snapshot/manifest.js';
import { CREATED } from './registry-image.js';

/** Set manifests (and their documents) read at once while listing: each is a round trip or two. */
export const LIST_READS = 8;

/** A set manifest as read: its config (the set document), when it was made, its annotations (an encrypted set's envelope). */
export interface SetManifest {
  config?: { mediaType: string; digest: string; size?: number };
  created?: string;
  annotations?: Record<string, string>;
}

/**
 * A set manifest's bytes (an OCI image manifest, already checked against its digest): `parsed` has
 * no config when the config is not a set document (SET_MEDIA_TYPE or SET_AGE_MEDIA_TYPE);
 * `named`: every digest of its config and layers. Throws SyntaxError when it is not JSON.
 */
export function parseSetManifest(body: Buffer): { parsed: SetManifest; named: string[] } {
  const doc = JSON.parse(body.toString('utf8')) as {
    config?: { mediaType?: string; digest?: string; size?: number };
    layers?: Array<{ digest?: unknown } | null>;
    annotations?: Record<string, string>;
  };
  const named = [doc.config, ...(Array.isArray(doc.layers) ? doc.layers : [])].map((d) => d?.digest).filter(isDigest);
  const created = doc.annotations?.[CREATED];
  const mediaType = doc.config?.mediaType;
  if ((mediaType !== SET_MEDIA_TYPE && mediaType !== SET_AGE_MEDIA_TYPE) || typeof doc.config?.digest !== 'string') return { parsed: { created }, named };
  const size = typeof doc.config.size === 'number' ? doc.config.size : undefined;
  return { parsed: { config: { mediaType, digest: doc.config.digest, size }, created, annotations: doc.annotations }, named };
}

/** A set's summary, or undefined when there is no set. */
export function summaryOf(set: SnapshotSet | undefined): SetSummary | undefined {
  return set ? summarize(set) : undefined;
}
