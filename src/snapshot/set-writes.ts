import { pipeline } from 'node:stream/promises';
import { isDeepStrictEqual } from 'node:util';
import { errorMessage } from '../core/log.js';
import { SET_SCOPE, type BlobScope, type Destination, type StoredRef } from '../destinations/types.js';
import { Verifier } from '../oci/digest.js';
import { setScopeBlobsOf, storedBlobs, type BlobDescriptor, type SnapshotSet } from './manifest.js';

/** One destination asked for, and whether it holds the complete set (else why not). */
export interface SetPlacement {
  destination: string;
  written: boolean;
  error?: string;
}

/** Where a tag already is, among the destinations asked for. */
export interface TagState {
  /** Destinations that hold the set already; with `set`, they all hold that very set. */
  holders: Destination[];
  missing: Destination[];
  set?: SnapshotSet;
}

export class SetWriteError extends Error {
  override name = 'SetWriteError';
}

/** A set as its JSON says it: what any destination reads back. */
function asStored(set: SnapshotSet): unknown {
  return JSON.parse(JSON.stringify(set)) as unknown;
}

/** True when `dest` holds a set under `set.tag` with exactly this content. */
async function holdsSame(dest: Destination, set: SnapshotSet): Promise<boolean> {
  const there = await dest.readSet(set.tag);
  return there !== undefined && isDeepStrictEqual(asStored(there), asStored(set));
}

/**
 * Where `tag` already is. A tag held in some destinations (one identical set in all of them) and
 * missing in others is a set to complete; held everywhere, or held as different sets, it is refused.
 * Throws SetWriteError.
 */
export async function tagState(destinations: Destination[], tag: string): Promise<TagState> {
  const holders: Destination[] = [];
  const missing: Destination[] = [];
  for (const dest of destinations) ((await dest.hasSet(tag)) ? holders : missing).push(dest);
  if (holders.length === 0) return { holders, missing };
  if (missing.length === 0) throw new SetWriteError(`Snapshot ${tag} already exists in ${holders.map((d) => d.label).join(', ')}. Expected a new tag.`);
  const set = await holders[0].readSet(tag);
  if (!set) throw new SetWriteError(`Snapshot ${tag} in ${holders[0].label} cannot be read. Expected a new tag.`);
  for (const holder of holders.slice(1)) {
    if (!(await holdsSame(holder, set)))
      throw new SetWriteError(`Snapshot ${tag} differs between ${holders[0].label} and ${holder.label}. Expected a new tag.`);
  }
  return { holders, missing, set };
}

/** What each set-scope blob of a container is, in words, by digest (for messages). */
function blobNames(c: SnapshotSet['containers'][number]): Map<string, string> {
  const names = new Map<string, string>([[c.image.config.digest, 'image config']]);
  if (c.image.layerIndex) names.set(c.image.layerIndex.digest, 'writable layer index');
  for (const v of c.volumes) {
    const volume = `volume ${v.name || v.destination}`;
    for (const blob of storedBlobs(v.blob)) names.set(blob.digest, volume);
    if (v.metadata?.record) names.set(v.metadata.record.digest, `${volume} side record`);
  }
  return names;
}

/** Each blob of a set once, with the scope a destination keeps it under (see Destination.writeBlob). */
function blobsOf(set: SnapshotSet): Array<{ scope: BlobScope; blob: BlobDescriptor; what: string }> {
  const out = new Map<string, { scope: BlobScope; blob: BlobDescriptor; what: string }>();
  const add = (scope: BlobScope, blob: BlobDescriptor, what: string) =>
    out.set(`${'container' in scope ? scope.container : ''}\0${blob.digest}`, { scope, blob, what });
  for (const c of set.containers) {
    for (const layer of c.image.layers) add({ container: c.name }, layer, `${c.name} layer ${layer.digest}`);
    // The same list a prune keeps and a verify reads, so a copied set lacks nothing they expect.
    const names = blobNames(c);
    for (const blob of setScopeBlobsOf(c)) add(SET_SCOPE, blob, `${c.name} ${names.get(blob.digest) ?? blob.digest}`);
  }
  return [...out.values()];
}

/** Copies every blob of `set` that `to` lacks from `from`, each checked against its digest. Returns how many were copied and how many were there. */
export async function copyBlobs(set: SnapshotSet, from: Destination, to: Destination): Promise<{ written: number; reused: number }> {
  const stats = { written: 0, reused: 0 };
  for (const { scope, blob, what } of blobsOf(set)) {
    if (await to.hasBlob(scope, blob.digest)) {
      stats.reused++;
      continue;
    }
    const writer = await to.writeBlob(scope);
    try {
      await pipeline(await from.readBlob(scope, blob.digest), new Verifier(blob, `${what} (${from.label})`), writer.stream);
      await writer.commit(blob.digest, blob.size);
    } catch (err) {
      await writer.abort();
      throw new SetWriteError(`${what}: ${to.label}: ${errorMessage(err)}`, { cause: err });
    }
    stats.written++;
  }
  return stats;
}

function containerNames(set: SnapshotSet): string {
  return set.containers.map((c) => c.name).join(', ');
}

/** The last write of a set, with the containers, the phase and the destination in its message. */
export function setWriteMessage(set: SnapshotSet, dest: Destination, err: unknown): string {
  const message = errorMessage(err);
  const unlabelled = message.startsWith(`${dest.label}: `) ? message.slice(dest.label.length + 2) : message;
  return `Snapshot ${set.tag} (${containerNames(set)}) not written to ${dest.label}: set document: ${unlabelled}`;
}

/** A reference to a set a destination held before this run: its label, the tag and the container. */
function heldRefs(dest: Destination, set: SnapshotSet): Record<string, StoredRef> {
  return Object.fromEntries(set.containers.map((c) => [c.name, { ref: `${dest.label}#${set.tag}/${c.name}`, digest: c.image.id }]));
}

export interface SetWrites {
  placements: SetPlacement[];
  /** Each container's stored reference in each destination that holds the set. */
  refs: Map<string, Array<{ destination: string } & StoredRef>>;
  artifacts: Array<{ destination: string; name: string; id: number; url: string }>;
}

/**
 * Writes the set document to each destination, one failing not stopping the others. A destination
 * that already holds this very set counts as written; one holding a different set under the tag does not.
 * Never throws: each destination's outcome is in `placements`.
 */
export async function writeSetEverywhere(set: SnapshotSet, destinations: Destination[], held: Destination[] = []): Promise<SetWrites> {
  const out: SetWrites = { placements: [], refs: new Map(set.containers.map((c) => [c.name, []])), artifacts: [] };
  const record = (dest: Destination, refs: Record<string, StoredRef>) => {
    out.placements.push({ destination: dest.label, written: true });
    for (const c of set.containers) out.refs.get(c.name)?.push({ destination: dest.label, ...(refs[c.name] ?? { ref: dest.label }) });
  };
  for (const dest of held) record(dest, heldRefs(dest, set));
  for (const dest of destinations) {
    try {
      if (await dest.hasSet(set.tag)) {
        if (!(await holdsSame(dest, set))) throw new SetWriteError(`a different snapshot ${set.tag} is there`);
        record(dest, heldRefs(dest, set));
        continue;
      }
      const receipt = await dest.writeSet(set);
      record(dest, receipt.refs);
      if (receipt.artifact) out.artifacts.push({ destination: dest.label, ...receipt.artifact });
    } catch (err) {
      out.placements.push({ destination: dest.label, written: false, error: setWriteMessage(set, dest, err) });
    }
  }
  return out;
}

/** One line for the destinations that do not hold the set, or undefined when all do. */
export function unwrittenLine(tag: string, placements: SetPlacement[]): string | undefined {
  const missing = placements.filter((p) => !p.written);
  if (missing.length === 0) return undefined;
  const holders = placements.filter((p) => p.written).map((p) => p.destination);
  const where = holders.length > 0 ? ` It is complete in ${holders.join(', ')}; run again with tag ${tag} to write it to the rest.` : '';
  return `${missing.map((p) => p.error).join('; ')}.${where}`;
}
