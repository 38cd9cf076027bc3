/** A backup run's destinations: checked before any change, and a set some of them already hold completed in the others. */
import type { BackupOptions } from '../core/options.js';
import { errorMessage } from '../core/log.js';
import type { Destination } from '../destinations/types.js';
import type { BackupContext } from './backup-context.js';
import { outcome, type BackupResult } from './backup-outcome.js';
import { isChunked, type SnapshotSet } from './manifest.js';
import { SetWriteError, copyBlobs, tagState, unwrittenLine, writeSetEverywhere, type SetPlacement, type TagState } from './set-writes.js';

/**
 * Every destination checked as the run needs it, changing nothing in a dry run (the tag is free,
 * credentials work, the place is writable). Throws when one fails; returns where the tag already is.
 */
export async function checkDestinations(ctx: BackupContext, opts: BackupOptions): Promise<TagState> {
  for (const dest of ctx.destinations) await dest.check('plan');
  // The tag before any directory is made: a refused tag changes nothing.
  const state = await tagState(ctx.destinations, opts.tag);
  if (state.set) refuseWholeOnly(opts, state.set, state.missing);
  if (!opts.dryRun) for (const dest of ctx.destinations) await dest.check('write');
  return state;
}

/**
 * A set with chunked volumes cannot be completed in an artifact: destination: it stores each volume
 * whole, so its set document would differ from the holders' (and a set must read the same everywhere).
 * Throws SetWriteError.
 */
function refuseWholeOnly(opts: BackupOptions, set: SnapshotSet, missing: Destination[]): void {
  const wholeOnly = missing.filter((d) => opts.destinations.some((spec) => spec.kind === 'artifact' && spec.raw === d.label));
  if (wholeOnly.length === 0 || !set.containers.some((c) => c.volumes.some((v) => isChunked(v.blob)))) return;
  const labels = wholeOnly.map((d) => d.label).join(', ');
  throw new SetWriteError(
    `Snapshot ${set.tag} stores its volumes as chunks, which ${labels} cannot hold (one blob per volume there); not copied. Expected a new tag: a new set stores whole volumes in every destination.`,
  );
}

/** A set some destinations hold and others miss (an earlier run with this tag failed there): copied to the rest, no container taken again. */
export async function completeSet(ctx: BackupContext, opts: BackupOptions, state: TagState & { set: SnapshotSet }): Promise<BackupResult> {
  const { set, holders, missing } = state;
  const names = (ds: Destination[]) => ds.map((d) => d.label).join(', ');
  const records = set.containers.map((c) => ({ ...c, blobStats: { written: 0, reused: 0 } }));
  if (opts.dryRun) {
    ctx.log.info(`[dry-run] Snapshot ${set.tag} is in ${names(holders)}: it would be copied to ${names(missing)}; no container is taken again.`);
    const planned = records.map((r) => ({ ...outcome(r, []), status: 'planned' as const }));
    return { tag: set.tag, containers: planned, failed: 0, written: false, artifacts: [], destinations: [] };
  }
  ctx.log.info(`Snapshot ${set.tag} is in ${names(holders)} and not in ${names(missing)}: copying it there; no container is taken again.`);
  const copied = new Set<Destination>();
  const placements: SetPlacement[] = [];
  for (const dest of missing) {
    try {
      const stats = await copyBlobs(set, holders[0], dest);
      ctx.log.info(`${dest.label}: ${stats.written} blob(s) copied from ${holders[0].label}, ${stats.reused} already there`);
      copied.add(dest);
    } catch (err) {
      placements.push({ destination: dest.label, written: false, error: `Snapshot ${set.tag} not copied to ${dest.label}: ${errorMessage(err)}` });
    }
  }
  const writes = await writeSetEverywhere(set, [...copied], holders);
  const all = [...writes.placements, ...placements];
  await Promise.allSettled(missing.filter((d) => !all.find((p) => p.destination === d.label)?.written).map((d) => d.discard?.()));
  return {
    tag: set.tag,
    containers: records.map((r) => outcome(r, writes.refs.get(r.name) ?? [])),
    failed: 0,
    written: true,
    artifacts: writes.artifacts,
    destinations: all,
    incomplete: unwrittenLine(set.tag, all),
  };
}
