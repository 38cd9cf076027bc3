import { errorMessage, type Logger } from '../core/log.js';
import type { Destination } from '../destinations/types.js';
import type { SnapshotSet } from './manifest.js';
import { findSet, verifyContainers } from './restore-set.js';
import { RestoreError } from './restore-types.js';

/** The snapshot reference that means every set of a location (verification only). */
export const ALL_SETS = 'all';

/** One container of a verified set: how many blobs were read in full and checked, or why not. */
export interface VerifiedContainer {
  snapshot: string;
  name: string;
  blobs: number;
  status: 'ok' | 'failed';
  /** The first blob that failed, named (`web layer 0 (dir:…): checksum mismatch (expected sha256:…)`). */
  error?: string;
}

/** One set: its containers, or why its document could not be read (then `containers` is empty). */
export interface VerifiedSet {
  tag: string;
  containers: VerifiedContainer[];
  error?: string;
}

/** What a verification found; `failed` counts the damaged containers and the sets whose document could not be read. */
export interface VerifyReport {
  sets: VerifiedSet[];
  failed: number;
}

/**
 * Reads every blob of every container of `set` and checks both checksums (and decryption); one
 * failing container does not stop the others. Blobs in `seen` passed already (verifyContainers).
 */
export async function verifySet(source: Destination, set: SnapshotSet, log: Logger, seen = new Set<string>()): Promise<VerifiedSet> {
  const containers: VerifiedContainer[] = [];
  for (const c of set.containers) {
    try {
      const blobs = await verifyContainers(source, [c], true, log, seen);
      containers.push({ snapshot: set.tag, name: c.name, blobs, status: 'ok' });
    } catch (err) {
      containers.push({ snapshot: set.tag, name: c.name, blobs: 0, status: 'failed', error: errorMessage(err) });
    }
  }
  return { tag: set.tag, containers };
}

/**
 * Verifies one set (a tag or `latest`: a set that cannot be found or read throws, as findSet does)
 * or, for `all`, every set the location lists, newest first, each one's unreadable document reported
 * rather than thrown (a location with no set throws). Reads the location only.
 */
export async function verifySets(source: Destination, snapshot: string, log: Logger): Promise<VerifyReport> {
  const sets = snapshot === ALL_SETS ? await everySet(source, log) : [await verifySet(source, await findSet(source, snapshot), log)];
  const failed = sets.reduce((n, s) => n + (s.error ? 1 : s.containers.filter((c) => c.status === 'failed').length), 0);
  return { sets, failed };
}

async function everySet(source: Destination, log: Logger): Promise<VerifiedSet[]> {
  await source.check('read');
  const listed = await source.listSets();
  // An empty location is a failed check: the backups it should hold are not there.
  if (listed.length === 0) throw new RestoreError(`No snapshot set in ${source.label}.`);
  log.info(`Verifying ${listed.length} set(s) of ${source.label}`);
  const out: VerifiedSet[] = [];
  // Sets share most blobs (base layers, unchanged volumes): each is read once in this run.
  const seen = new Set<string>();
  for (const s of listed) {
    if (s.damaged) {
      out.push({ tag: s.tag, containers: [], error: s.damaged });
      continue;
    }
    try {
      const set = await source.readSet(s.tag);
      out.push(set ? await verifySet(source, set, log, seen) : { tag: s.tag, containers: [], error: `set ${s.tag} is gone from ${source.label}` });
    } catch (err) {
      out.push({ tag: s.tag, containers: [], error: errorMessage(err) });
    }
  }
  return out;
}
