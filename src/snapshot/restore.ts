import { randomBytes } from 'node:crypto';
import type { RestoreOptions } from '../core/options.js';
import { errorMessage, type Logger } from '../core/log.js';
import type { ContainerRecord } from './manifest.js';
import { InterruptedError, RestoreTransaction } from './transaction.js';
import { apiGaps, describeGap, warnEngineCompat } from './engine-compat.js';
import { checkTarget } from './target-check.js';
import { chooseContainers, findSet, restoreOrder } from './restore-set.js';
import { ContainerRestore } from './container-restore.js';
import type { LoadedImage } from './image-loads.js';
import { RestoreError, type RestoreContext, type RestoredContainer, type RestoreResult } from './restore-types.js';

/**
 * Ends the groups' transactions: each member of a group that was restored whole is committed; one
 * of a group with a failed member is put back, and its result says why.
 */
async function settleGroups(
  worker: ContainerRestore,
  ready: Array<{ c: ContainerRecord; target: string }>,
  results: RestoredContainer[],
  failedGroups: Map<string, string>,
  dropImage: (c: ContainerRecord) => Promise<void>,
  log: Logger,
): Promise<void> {
  const putBack: Array<{ c: ContainerRecord; target: string; i: number; why: string }> = [];
  const commit: string[] = [];
  for (const { c, target } of ready) {
    const i = results.findIndex((r) => r.name === target && r.status === 'ok');
    if (!c.group || i === -1) continue;
    const why = failedGroups.get(c.group);
    if (why) putBack.push({ c, target, i, why });
    else commit.push(target);
  }
  // Every group that succeeded, in one journal write: an interrupted run never leaves part of a group committed.
  if (commit.length > 0) await worker.commit(...commit);
  if (putBack.length === 0) return;
  // In one rollback: a network one member created may be in use by another's new container.
  for (const { target, why } of putBack) log.info(`${target}: put back (${why})`);
  await worker.rollBack(...putBack.map((p) => p.target)).catch((e: unknown) => log.error(errorMessage(e)));
  for (const { c, target, i, why } of putBack) {
    await dropImage(c);
    results[i] = { name: target, from: c.name, id: '', state: '', status: 'failed', error: why };
  }
}

/**
 * Restores the chosen containers of a set. Each container's restore is a transaction, and so is
 * each consistency group's (the chosen containers the set records in one group): a failure puts
 * back what it (and its group) changed and the others go on; a cancellation (`ctx.txn.abort()`) stops at the
 * next step, puts back everything not committed and throws `InterruptedError`. Before any change it
 * throws what `findSet` and `chooseContainers` throw (RestoreError, KeyError) and `checkTarget`'s
 * TargetError; a container that fails is reported in the result (`failed`), not thrown.
 */
export async function runRestore(opts: RestoreOptions, ctx: RestoreContext): Promise<RestoreResult> {
  const { log } = ctx;
  const txn = ctx.txn ?? new RestoreTransaction(`memory/${process.pid}/${randomBytes(3).toString('hex')}`);
  // The engine's identity is asked while the set is read, for the compatibility warnings.
  const info = ctx.engine.info();
  info.catch(() => undefined);
  const set = await findSet(ctx.source, opts.snapshot);
  log.info(`Restoring snapshot ${set.tag} (created ${set.created}) from ${ctx.source.label}`);
  await warnEngineCompat(set, { info: () => info }, log);
  const chosen = chooseContainers(set, opts);
  // Configuration the engine would drop in silence: warned, or refused below (checkTarget) where the container would see other data.
  const target = await info;
  const gaps = apiGaps(chosen, target.apiVersion, set.source.engine.apiVersion);
  for (const g of gaps.filter((g) => !g.refuse)) log.warning(describeGap(g, target));
  await checkTarget(
    ctx.engine,
    set,
    chosen,
    opts,
    gaps.filter((g) => g.refuse).map((g) => describeGap(g, target)),
  );
  // Each blob is read once, checked as it streams into the engine (a Verifier keeps a blob's end
  // back until its digest matches): a container whose blob is damaged fails and its changes are
  // put back, as for any failure. `verify` reads a set without restoring it.
  log.info(`Restoring ${chosen.length} container(s); each blob is checked as it is read`);
  const worker = new ContainerRestore(ctx, opts, set, new Set(chosen.map((c) => opts.rename.get(c.name) ?? c.name)), txn);
  const results: RestoredContainer[] = [];
  // A group whose member failed: why, for its other members (which are then put back too).
  const failedGroups = new Map<string, string>();
  const fail = (c: ContainerRecord, target: string, err: unknown) => {
    if (err instanceof InterruptedError) throw err;
    if (c.group && !failedGroups.has(c.group)) failedGroups.set(c.group, `group ${c.group} not restored: ${c.name} failed: ${errorMessage(err)}`);
    const r: RestoredContainer = { name: target, from: c.name, id: '', state: '', status: 'failed', error: errorMessage(err) };
    // The reason is said once, in the caller's final error line that lists every failed container.
    log.info(`${c.name}: not restored`);
    results.push(r);
  };
  const ready: Array<{ c: ContainerRecord; target: string; image: string }> = [];
  // What each load did to the engine's images: undone for containers this run then did not restore (once their load has settled).
  const loadedFor = new Map<ContainerRecord, LoadedImage>();
  const loading = new Map<ContainerRecord, Promise<unknown>>();
  const dropImage = async (c: ContainerRecord) => {
    await loading.get(c)?.catch(() => undefined);
    const loaded = loadedFor.get(c);
    // Once: a second undo would take the tag off the image the first put it back on.
    loadedFor.delete(c);
    if (loaded) await worker.unload(c, loaded);
  };
  try {
    for (const c of restoreOrder(chosen, opts.rename)) {
      const target = opts.rename.get(c.name) ?? c.name;
      try {
        txn.checkpoint();
        const image = worker.imageRef(c);
        const conflicts = await worker.conflicts(c, target, image);
        if (conflicts.length > 0) throw new RestoreError(`refused: ${conflicts.join('; ')}`);
        // The image loads while the container's new volumes are filled (the restore waits for it
        // before creating the container); when something existing would change, it is loaded first.
        const load = worker.startLoad(c).then((l) => void loadedFor.set(c, l));
        // Its failure is the restore's (create waits for the load), or dropImage's: never unhandled.
        load.catch(() => undefined);
        loading.set(c, load);
        if (await worker.touchesExisting(c, target)) await load;
        ready.push({ c, target, image });
      } catch (err) {
        await dropImage(c);
        fail(c, target, err);
      }
    }
    if (opts.replace) {
      for (const { c, target, image } of [...ready]) {
        try {
          await worker.setAside(target, image);
        } catch (err) {
          ready.splice(
            ready.findIndex((r) => r.c === c),
            1,
          );
          await worker.rollBack(target).catch((e: unknown) => log.error(errorMessage(e)));
          await dropImage(c);
          fail(c, target, err);
        }
      }
    }
    for (const { c, target, image } of ready) {
      try {
        txn.checkpoint();
        if (c.group && failedGroups.has(c.group)) throw new RestoreError(failedGroups.get(c.group) ?? '');
        const r = await log.group(`Restore ${c.name}${target !== c.name ? ` as ${target}` : ''}`, () =>
          worker.restore(c, target, image, c.group !== undefined),
        );
        log.info(`${target}: restored (${r.state})`);
        results.push(r);
      } catch (err) {
        if (c.group && failedGroups.has(c.group)) await worker.rollBack(target).catch((e: unknown) => log.error(errorMessage(e)));
        if (!(err instanceof InterruptedError)) await dropImage(c);
        fail(c, target, err);
      }
    }
    await settleGroups(worker, ready, results, failedGroups, dropImage, log);
  } catch (err) {
    if (!(err instanceof InterruptedError)) throw err;
    log.error(`${err.message}: putting back what this restore changed`);
    const uncommitted = new Set(txn.pending.targets.map((t) => t.target));
    await worker.rollBack(...uncommitted).catch((e: unknown) => log.error(errorMessage(e)));
    // A load still in flight ends before the restore does. What loads did is undone for every
    // container not restored, but one whose rollback did not finish: the run that finishes it may need its image.
    const unfinished = new Set(txn.pending.targets.map((t) => t.target));
    for (const c of loading.keys()) {
      const target = opts.rename.get(c.name) ?? c.name;
      const restored = results.some((r) => r.name === target && r.status === 'ok') && !uncommitted.has(target);
      if (!restored && !unfinished.has(target)) await dropImage(c);
    }
    throw err;
  }
  return { tag: set.tag, containers: results, failed: results.filter((r) => r.status === 'failed').length, sourceEngine: set.source.engine };
}
