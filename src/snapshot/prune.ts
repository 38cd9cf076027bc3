import { DestinationError, type Destination, type SweepResult } from '../destinations/types.js';
import type { Logger } from '../core/log.js';
import { applyPolicy, describePolicy, type RetentionPolicy } from './retention.js';

export interface PruneResult {
  destination: string;
  /** The policy in words: "last=7, daily=14". */
  policy: string;
  dryRun: boolean;
  /** Newest first, each with the rules that keep it. */
  kept: Array<{ tag: string; created: string; reasons: string[] }>;
  /** Removed (or, in a dry run, to be removed), newest first. */
  removed: Array<{ tag: string; created: string }>;
  /** Sets whose document cannot be read: kept, counted by no rule; remove them by hand once looked at. */
  damaged: Array<{ tag: string; reason: string }>;
  /** dir: the unreferenced blobs removed and the bytes freed (or that would be). */
  swept?: SweepResult;
  /** Where blobs go some other way (a registry's garbage collection). */
  note?: string;
}

export interface PruneOptions {
  dryRun: boolean;
  now: Date;
  /** Tags never removed (the set a backup has just written). */
  protect?: string[];
  log: Logger;
}

export const REGISTRY_GC_NOTE =
  "The registry keeps the removed sets' blobs until its own garbage collection runs (distribution: registry garbage-collect, with no push under way).";

/**
 * Applies `policy` to `dest` (restic's forget, then prune): each removed set's tag goes first, so
 * no half-removed set is listed as complete, then a sweep of the blobs no remaining set references
 * (dir:). Throws DestinationError where sets cannot be removed (artifact:).
 */
export async function prune(dest: Destination, policy: RetentionPolicy, opts: PruneOptions): Promise<PruneResult> {
  if (!dest.deleteSet) {
    throw new DestinationError(`${dest.label}: a prune cannot remove sets there. Expected dir: or registry:; artifact: sets are kept for retention-days.`);
  }
  const plan = applyPolicy(await dest.listSets(), policy, opts.now, opts.protect);
  const removed = plan.remove.map((s) => ({ tag: s.tag, created: s.created }));
  for (const d of plan.damaged) opts.log.warning(`${dest.label}: snapshot ${d.tag} is damaged and kept; look at it and remove it by hand: ${d.damaged}`);
  let swept: SweepResult | undefined;
  if (opts.dryRun) {
    swept = await dest.sweep?.({ without: removed.map((r) => r.tag), dryRun: true });
  } else {
    for (const r of removed) {
      await dest.deleteSet(r.tag);
      opts.log.info(`${dest.label}: removed snapshot ${r.tag} (${r.created})`);
    }
    swept = await dest.sweep?.({ without: [], dryRun: false });
  }
  if (swept?.skipped) opts.log.warning(`${dest.label}: no blob swept: ${swept.skipped}.`);
  return {
    destination: dest.label,
    policy: describePolicy(policy),
    dryRun: opts.dryRun,
    kept: plan.keep.map((k) => ({ tag: k.set.tag, created: k.set.created, reasons: k.reasons })),
    removed,
    damaged: plan.damaged.map((d) => ({ tag: d.tag, reason: d.damaged ?? '' })),
    ...(swept ? { swept } : {}),
    ...(!dest.sweep && removed.length > 0 ? { note: REGISTRY_GC_NOTE } : {}),
  };
}
