/** What recent snapshot sets already hold: the basis for reusing blobs and for delta layers. */
import type { Destination } from '../destinations/types.js';
import type { ChunkIndex } from './chunked.js';
import { isChunked, newestFirst, type BlobDescriptor, type ContainerRecord, type ImageRecord, type SetSummary } from './manifest.js';
import { setForHistory } from './sealed-sets.js';

export interface History {
  layers: Map<string, BlobDescriptor>;
  volumes: Map<string, BlobDescriptor>;
  /** Each container's image in the newest recent set that has it, by container ID (with its name then): the base of a delta layer. */
  images: Map<string, { name: string; image: ImageRecord; created: string }>;
  /** Chunks of chunked volumes, by content digest (any container's, any mount's). */
  chunks: ChunkIndex;
}

export const HISTORY_DEPTH = 5;

/** The key of a volume in History.volumes: container name and mount destination. */
export function volumeKey(container: string, destination: string): string {
  return `${container}\0${destination}`;
}

/**
 * What recent sets stored alike (encrypted to the same keys, or clear), present in every destination: the basis for not storing it again.
 * The destinations, and of each the HISTORY_DEPTH newest sets and, for each container named in
 * `containers` (names), the newest set stored alike that holds it and was taken where this run
 * is (`origin`, manifest.ts setOrigin; a set that does not say is taken as this origin's): its
 * base for a delta and for files left unread however many sets of other containers or hosts
 * came since. Read at once (each a round trip or more in a registry), taken newest first.
 */
export async function loadHistory(destinations: Destination[], containers: readonly string[] = [], origin?: string): Promise<History> {
  const perDest = await Promise.all(destinations.map((d) => destHistory(d, containers, origin)));
  const [first, ...rest] = perDest;
  const keep = <K, V extends BlobDescriptor>(m: Map<K, V>, pick: (h: History) => Map<K, V>) =>
    new Map([...m].filter(([k, v]) => rest.every((h) => pick(h).get(k)?.digest === v.digest)));
  return {
    layers: keep(first.layers, (h) => h.layers),
    volumes: keep(first.volumes, (h) => h.volumes),
    images: new Map([...first.images].filter(([k, v]) => rest.every((h) => h.images.get(k)?.image.config?.digest === v.image.config?.digest))),
    chunks: keep(first.chunks, (h) => h.chunks),
  };
}

/** One destination's history (loadHistory): its HISTORY_DEPTH newest undamaged sets and each container's base set, read at once, taken newest first. */
async function destHistory(dest: Destination, containers: readonly string[], origin: string | undefined): Promise<History> {
  const h: History = { layers: new Map(), volumes: new Map(), images: new Map(), chunks: new Map() };
  const usable = (await dest.listSets()).filter((s) => !s.damaged).sort(newestFirst);
  const picked = new Set(usable.slice(0, HISTORY_DEPTH));
  const encrypting = dest.keyring?.encrypting ?? false;
  const sameOrigin = (s: SetSummary) => s.origin === undefined || origin === undefined || s.origin === origin;
  const alike = (s: SetSummary) => Boolean(s.encryption) === encrypting && sameOrigin(s);
  for (const name of containers) {
    const last = usable.find((s) => s.containers.includes(name) && alike(s));
    if (last) picked.add(last);
  }
  const recent = usable.filter((s) => picked.has(s));
  const sets = await Promise.all(recent.map((summary) => setForHistory(dest, summary)));
  for (const [i, set] of sets.entries()) {
    // Layers and chunks of any set are reused by content; a volume or image by container name only from a set of this origin.
    const own = sameOrigin(recent[i]);
    for (const c of set?.containers ?? []) {
      for (const l of c.image.layers) h.layers.set(l.contentDigest, l);
      for (const v of c.volumes) if (own && !h.volumes.has(volumeKey(c.name, v.destination))) h.volumes.set(volumeKey(c.name, v.destination), v.blob);
      // A sealed set's dedupe record names no container ID and no config: it is no base for a delta.
      const full = 'id' in c && 'config' in c.image ? (c as ContainerRecord) : undefined;
      if (own && full && !h.images.has(full.id)) h.images.set(full.id, { name: full.name, image: full.image, created: recent[i].created });
      for (const v of c.volumes) if (isChunked(v.blob)) for (const chunk of v.blob.chunks) h.chunks.set(chunk.contentDigest, chunk);
    }
  }
  return h;
}
