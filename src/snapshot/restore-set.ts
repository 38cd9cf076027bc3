import type { RestoreOptions } from '../core/options.js';
import type { Logger } from '../core/log.js';
import { SET_SCOPE, type BlobScope, type Destination } from '../destinations/types.js';
import { verifyBlob as verifyStored } from './blobs.js';
import { isChunked, storedBlobs, type BlobDescriptor, type ContainerRecord, type SnapshotSet } from './manifest.js';
import { containerReferences, renameReferences } from './spec.js';
import { refuseClearWithKey } from './sealed-sets.js';
import { RestoreError } from './restore-types.js';

/** Where a container's image layers are stored: under the container's own scope (its config blob is in the set's). */
export function imageScope(c: ContainerRecord): BlobScope {
  return { container: c.name };
}

/**
 * Reads set `snapshot` (a tag, or `latest` for the newest complete set) from `source`, after
 * checking that it can be read. Throws RestoreError when there is no such set (naming up to 10 it
 * has), KeyError when a key was given and the set is stored in clear, and the store's own errors.
 */
export async function findSet(source: Destination, snapshot: string): Promise<SnapshotSet> {
  await source.check('read');
  const set = await source.readSet(snapshot);
  if (set) refuseClearWithKey(set, source.keyring, source.label);
  if (set) return set;
  const tags = (await source.listSets()).map((s) => s.tag);
  throw new RestoreError(
    snapshot === 'latest'
      ? `No complete snapshot set in ${source.label}.`
      : `Snapshot '${snapshot}' not found in ${source.label}. Expected one of: ${tags.slice(0, 10).join(', ') || '(none)'}.`,
  );
}

/** The containers of `set` that `opts.containers` names (all when empty); throws RestoreError on a name the set lacks or a stray rename. */
export function chooseContainers(set: SnapshotSet, opts: RestoreOptions): ContainerRecord[] {
  const names = set.containers.map((c) => c.name);
  const unknown = opts.containers.filter((n) => !names.includes(n));
  if (unknown.length > 0) {
    throw new RestoreError(`Snapshot ${set.tag} has no container ${unknown.join(', ')}. Expected one of: ${names.join(', ')}.`);
  }
  const chosen = opts.containers.length === 0 ? set.containers : set.containers.filter((c) => opts.containers.includes(c.name));
  const renamable = new Set(chosen.flatMap((c) => [c.name, ...c.volumes.filter((v) => v.type === 'volume' && !v.anonymous).map((v) => v.name)]));
  const stray = [...opts.rename.keys()].filter((k) => !renamable.has(k));
  if (stray.length > 0) {
    throw new RestoreError(`Cannot rename ${stray.join(', ')}: not a container or named volume being restored. Expected one of: ${[...renamable].join(', ')}.`);
  }
  return chosen;
}

/**
 * Reads every blob the restore will use and checks both of its checksums (image config and layers,
 * and with `includeVolumes` each volume's blob or chunks and side record); returns how many blobs
 * that is, those already in `seen` included. Throws on the first blob that fails or cannot be read.
 * A blob already in `seen` (by scope and digest) is not read again, and each one that passes is
 * added: a verification of several sets reads the blobs they share once.
 */
export async function verifyContainers(
  source: Destination,
  containers: ContainerRecord[],
  includeVolumes: boolean,
  log: Logger,
  seen = new Set<string>(),
): Promise<number> {
  const verifyBlob = async (dest: Destination, scope: BlobScope, blob: BlobDescriptor, what: string) => {
    const key = `${JSON.stringify(scope)} ${blob.digest}`;
    if (seen.has(key)) return;
    await verifyStored(dest, scope, blob, what);
    seen.add(key);
  };
  let count = 0;
  const volumeBlobs = (c: ContainerRecord) => c.volumes.reduce((n, v) => n + storedBlobs(v.blob).length + (v.metadata?.record ? 1 : 0), 0);
  const blobs = containers.reduce((n, c) => n + 1 + c.image.layers.length + (includeVolumes ? volumeBlobs(c) : 0), 0);
  log.info(`Verifying ${blobs} blob(s) of ${containers.length} container(s) (each read in full)`);
  for (const c of containers) {
    const scope = imageScope(c);
    await verifyBlob(source, SET_SCOPE, c.image.config, `${c.name} image config`);
    for (const [i, layer] of c.image.layers.entries()) await verifyBlob(source, scope, layer, `${c.name} layer ${i}`);
    count += 1 + c.image.layers.length;
    if (includeVolumes) {
      for (const v of c.volumes) {
        const what = `${c.name} volume ${v.name || v.destination}`;
        // Each chunk on its own: sets share most of them, and `seen` reads each once.
        if (isChunked(v.blob)) {
          for (const [i, chunk] of v.blob.chunks.entries()) await verifyBlob(source, SET_SCOPE, chunk, `${what} chunk ${i}`);
          if (v.blob.files) await verifyBlob(source, SET_SCOPE, v.blob.files, `${what} file index`);
        } else await verifyBlob(source, SET_SCOPE, v.blob, what);
        if (v.metadata?.record) await verifyBlob(source, SET_SCOPE, v.metadata.record, `${what} side record`);
      }
      count += volumeBlobs(c);
    }
    log.info(`${c.name}: checksums verified`);
  }
  return count;
}

/** Containers that others refer to (links, volumes-from, shared namespaces) come first. */
export function restoreOrder(containers: ContainerRecord[], rename: Map<string, string>): ContainerRecord[] {
  const byTarget = new Map(containers.map((c) => [rename.get(c.name) ?? c.name, c]));
  const ordered: ContainerRecord[] = [];
  const state = new Map<ContainerRecord, 'visiting' | 'done'>();
  const visit = (c: ContainerRecord) => {
    if (state.get(c)) return;
    state.set(c, 'visiting');
    for (const ref of containerReferences(renameReferences(c.spec, rename).hostConfig)) {
      const dep = byTarget.get(ref);
      if (dep && dep !== c) visit(dep);
    }
    state.set(c, 'done');
    ordered.push(c);
  };
  containers.forEach(visit);
  return ordered;
}
