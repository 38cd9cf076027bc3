/**
 * A backup run: selection, then the dry run (backup-plan.ts) or the per-container and per-group runs,
 * and the set written last. Destination checks: backup-destinations.ts; result types: backup-outcome.ts.
 */
import { hostname } from 'node:os';
import type { BackupOptions } from '../core/options.js';
import { errorMessage, type Logger } from '../core/log.js';
import { ownName } from '../engine/names.js';
import type { Destination } from '../destinations/types.js';
import { withContainerLock } from '../core/locks.js';
import { SET_MEDIA_TYPE, SET_SCHEMA_VERSION, setOrigin, type SnapshotSet } from './manifest.js';
import { chooseCompression } from './compression-choice.js';
import { selectContainers, type Candidate } from './select.js';
import { editDistance } from '../core/spelling.js';
import { racyMarginNs } from './file-index.js';
import { dependencyOrder, GroupGate, unitsOf, type Unit } from './groups.js';
import { Spool } from './spool.js';
import { forEachLimited } from '../util/pool.js';
import { unwrittenLine, writeSetEverywhere } from './set-writes.js';
import { TOOL } from '../version.js';
import { type BackupContext, BackupError } from './backup-context.js';
import { loadHistory } from './backup-history.js';
import { ContainerBackup } from './container-backup.js';
import { turnsInOrder, type Turn } from './turns.js';
import { failure, outcome, type BackupResult, type ContainerOutcome, type GroupOutcome, type Taken } from './backup-outcome.js';
import { plan } from './backup-plan.js';
import { checkDestinations, completeSet } from './backup-destinations.js';

export type { BackupContext } from './backup-context.js';
export { BackupError } from './backup-context.js';
export type { BackupResult, ContainerOutcome, GroupOutcome } from './backup-outcome.js';
export { PRE_LABEL, POST_LABEL, STOP_LABEL, holdFor } from './hold.js';
export { SET_BLOB_HEADROOM } from './backup-volumes.js';

function candidateOf(c: { Id: string; Names?: string[]; Labels?: Record<string, string>; State: string }): Candidate {
  return { id: c.Id, name: ownName(c.Names, c.Id), labels: c.Labels ?? {}, state: c.State };
}

/**
 * The warning for a settle margin (CONTAINER_SNAPSHOT_SETTLE_SECONDS, s) shorter than this
 * kernel's writeback timing (file-index.ts racyMarginNs), else undefined: a page written through a
 * shared mapping changes the file's ctime again only after it was written back, so within that
 * time a file changed since the set before can look unchanged and be taken from it.
 */
export function settleBelowWriteback(seconds: number | undefined, kernel: () => bigint | undefined = racyMarginNs): string | undefined {
  const kernelNs = seconds === undefined ? undefined : kernel();
  if (seconds === undefined || kernelNs === undefined || BigInt(seconds) * 1_000_000_000n >= kernelNs) return undefined;
  return `CONTAINER_SNAPSHOT_SETTLE_SECONDS=${seconds} is below this kernel's writeback timing (${kernelNs / 1_000_000_000n} s: vm.dirty_expire_centisecs + vm.dirty_writeback_centisecs + 5 s): a file a program writes through a shared memory mapping may be taken from the set before although it changed`;
}

/**
 * Most edits (editDistance) between a missing name of `length` characters and a container's for a
 * suggestion: two (a slip of a key, two keys swapped) from 5 characters, one from 3, none below
 * (`db` is two edits from `ui`).
 */
function nameSlip(length: number): number {
  return length >= 5 ? 2 : length >= 3 ? 1 : 0;
}

/** `; did you mean NAME?` for the container on the engine, not selected already, closest to `name` within nameSlip edits, else ''. */
function nearestName(name: string, all: readonly Candidate[], selected: ReadonlySet<string>): string {
  let best: { name: string; d: number } | undefined;
  for (const c of all) {
    if (selected.has(c.name)) continue;
    const d = editDistance(name, c.name);
    if (d > 0 && d <= nameSlip(name.length) && (!best || d < best.d)) best = { name: c.name, d };
  }
  return best ? `; did you mean ${best.name}?` : '';
}

export async function runBackup(opts: BackupOptions, ctx: BackupContext): Promise<BackupResult> {
  const { engine, log } = ctx;
  const engineInfo = await engine.info(ctx.signal);
  const shortSettle = settleBelowWriteback(opts.settleSeconds);
  if (shortSettle) log.warning(shortSettle);
  const all = (await engine.listContainers(ctx.signal)).map(candidateOf);
  const selection = selectContainers(all, opts.selection);
  const outcomes: ContainerOutcome[] = [
    ...selection.missing.map((name) =>
      failure(name, '', 'missing', new BackupError(`no such container: ${name}${nearestName(name, all, new Set(selection.selected.map((c) => c.name)))}`)),
    ),
    ...selection.missingProjects.map((p) => failure(`project ${p}`, '', 'missing', new BackupError(`no container in Compose project ${p}`))),
  ];
  // A missing container is said once, in the caller's final error line that lists every failure.
  if (opts.onError === 'continue' && !selection.empty) for (const o of outcomes) log.info(`${o.name}: not found; the others go on`);
  if (selection.empty && outcomes.length === 0) {
    const message = `No container matched the selection (${opts.selection.containers.map((s) => s.value).join(', ') || 'all'}).`;
    if (opts.selection.ifNoMatch === 'error') throw new BackupError(message);
    if (opts.selection.ifNoMatch === 'warn') log.warning(message);
  }
  if (opts.onError === 'abort' && outcomes.length > 0) {
    throw new BackupError(`Aborted before any change: ${outcomes.map((o) => `${o.name}: ${o.error}`).join('; ')}`);
  }
  const none = { written: false, artifacts: [], destinations: [] };
  if (selection.selected.length === 0 && !opts.dryRun) return { tag: opts.tag, containers: outcomes, failed: outcomes.length, ...none };
  try {
    return await checkAndStore(ctx, opts, selection.selected, outcomes, engineInfo);
  } finally {
    // What the destinations' checks took (a dir: backup lock, which keeps a prune from sweeping).
    await Promise.allSettled(ctx.destinations.map((d) => d.close?.()));
  }
}

async function checkAndStore(
  ctx: BackupContext,
  opts: BackupOptions,
  selected: Candidate[],
  outcomes: readonly ContainerOutcome[],
  engineInfo: SnapshotSet['source']['engine'],
): Promise<BackupResult> {
  const { log } = ctx;
  const none = { written: false, artifacts: [], destinations: [] };
  const state = await checkDestinations(ctx, opts);
  if (state.set) return completeSet(ctx, opts, { ...state, set: state.set });
  if (opts.dryRun) {
    const planned = ctx.destinations.map((d) => ({ destination: d.label, written: false }));
    return { tag: opts.tag, containers: [...outcomes, ...(await plan(ctx, opts, selected))], failed: outcomes.length, ...none, destinations: planned };
  }
  const created = (ctx.now?.() ?? new Date()).toISOString();
  // The engine's clock, read once before any hold (a writable layer's racy entries: layer-index.ts racyCutoffs).
  ctx.engine.clockSkewNs(ctx.signal).catch(() => undefined);
  const history = await loadHistory(
    ctx.destinations,
    selected.map((c) => c.name),
    setOrigin({ hostname: hostname(), engine: engineInfo }),
  );
  const compression = chooseCompression(opts, engineInfo.version);
  log.info(`Compression: ${compression}${opts.compression === 'auto' ? ' (auto)' : ''}`);
  const spool = Spool.for(
    ctx.env ?? {},
    ctx.destinations.some((d) => d.keyring?.encrypting),
  );
  // Aborted when one container fails with on-error: abort, so that the others stop (and are put back) too.
  const stopOthers = new AbortController();
  const signal = ctx.signal ? AbortSignal.any([ctx.signal, stopOthers.signal]) : stopOthers.signal;
  const worker = new ContainerBackup({ ...ctx, signal }, opts, history, compression, spool, new Set(selected.flatMap((c) => [c.id, c.name])));
  let stored: Stored | undefined;
  try {
    stored = await backUpAndStore(ctx, opts, selected, { worker, stopOthers, signal }, { created, engine: engineInfo, earlier: outcomes });
  } finally {
    await spool.close();
    // Where no set was written (a failure, an abort, every container failed): drop what was stored for it, where nothing else would.
    const holds = (d: Destination) => stored?.destinations.some((p) => p.destination === d.label && p.written);
    await Promise.allSettled(ctx.destinations.filter((d) => !holds(d)).map((d) => d.discard?.()));
  }
  const containers = [...outcomes, ...stored.containers].sort((a, b) => a.name.localeCompare(b.name));
  return { tag: opts.tag, ...stored, containers, failed: containers.filter((o) => o.status === 'failed').length };
}

/** The containers' backups of one run: one worker, and the signal that stops them all (a cancel, or a failure with on-error: abort). */
interface Crew {
  worker: ContainerBackup;
  stopOthers: AbortController;
  signal: AbortSignal;
}

/** Where a run's results go while its units are taken: by the container's place in the run, and one entry per group. */
interface Tally {
  records: Array<Taken | undefined>;
  failures: Array<ContainerOutcome | undefined>;
  groups: GroupOutcome[];
  abortedAt?: ContainerOutcome;
}

/**
 * Backs up the selected containers, `opts.parallelism` units at once: a container on its own, or a
 * consistency group, whose members are held together (backUpGroup). Returns the records, the
 * failures (in the order taken) and the groups. With on-error: abort, the first failure stops the
 * others (each put back as it stands) and throws once they have.
 */
async function backUpEach(
  ctx: BackupContext,
  opts: BackupOptions,
  selected: Candidate[],
  crew: Crew,
): Promise<{ records: Taken[]; failures: ContainerOutcome[]; groups: GroupOutcome[] }> {
  const { log } = ctx;
  const units = unitsOf(selected, opts.groupBy);
  const order = units.flatMap((u) => u.members);
  const place = new Map(order.map((c, i) => [c.id, i]));
  const tally: Tally = { records: [], failures: [], groups: [] };
  const together = Math.min(opts.parallelism, units.length) > 1 || units.some((u) => u.group !== undefined);
  // In the order taken: a group's members run at once, each waits only for those taken before it.
  const turns = turnsInOrder(order.length);
  const one = async (c: Candidate) => {
    const i = place.get(c.id) ?? 0;
    try {
      const take = () => withContainerLock(ctx.env ?? {}, c, opts.lockTimeoutMs, () => crew.worker.run(c, turns[i]), crew.signal);
      // Groups of containers taken at once would interleave: their lines name the container instead.
      const record = together ? await take() : await log.group(`Back up ${c.name}`, take);
      tally.records[i] = record;
      log.info(
        `${c.name}: ${record.image.layers.length} layer(s) and ${record.volumes.length} volume(s): ${record.blobStats.written} blob(s) stored, ${record.blobStats.reused} already there`,
      );
    } catch (err) {
      // A cancelled run goes no further: its undo follows.
      if (ctx.signal?.aborted) throw ctx.signal.reason;
      // Stopped because another container failed first: that failure is the one said.
      if (crew.stopOthers.signal.aborted) return;
      unitFailed(opts, crew, tally, [[i, failure(c.name, c.id, c.state, err)]], c.name, log);
    } finally {
      // Also when it never got to run (its lock not taken): the next one's layers wait for nothing more.
      turns[i].done();
    }
  };
  const unit = (u: Unit) => (u.group === undefined ? one(u.members[0]) : backUpGroup(ctx, opts, { ...u, group: u.group }, crew, { tally, place, turns }));
  await forEachLimited(units, opts.parallelism, unit, () => crew.stopOthers.signal.aborted);
  if (tally.abortedAt) throw new BackupError(`Aborted at ${tally.abortedAt.name}; no snapshot set was written: ${tally.abortedAt.error}`);
  const groups = tally.groups.sort((a, b) => a.name.localeCompare(b.name));
  return { records: tally.records.filter((r) => r !== undefined), failures: tally.failures.filter((f) => f !== undefined), groups };
}

/** Records a unit's failures (by place), says so with on-error: continue, and stops the others with abort. */
function unitFailed(opts: BackupOptions, crew: Crew, tally: Tally, failed: Array<[number, ContainerOutcome]>, what: string, log: Logger): void {
  for (const [i, f] of failed) {
    tally.records[i] = undefined;
    tally.failures[i] = f;
  }
  // Its reason is said once, in the caller's final error line.
  if (opts.onError === 'continue') log.info(`${what}: failed; the others go on`);
  if (opts.onError === 'abort') {
    tally.abortedAt = failed[0][1];
    crew.stopOthers.abort(new BackupError(`Aborted at ${what}`));
  }
}

/**
 * Backs up a consistency group: its members at once, in dependency order (groups.ts), each held
 * until all are taken (GroupGate). One member failing, or missing (a Compose service another
 * depends on that is not in the group), fails them all: a group is taken whole or not at all.
 */
async function backUpGroup(
  ctx: BackupContext,
  opts: BackupOptions,
  unit: Unit & { group: string },
  crew: Crew,
  run: { tally: Tally; place: Map<string, number>; turns: Turn[] },
): Promise<void> {
  const { log, engine } = ctx;
  const { tally, place, turns } = run;
  const infos = await Promise.all(unit.members.map((c) => engine.inspectContainer(c.id, crew.signal).catch(() => undefined)));
  const { order, missing } = dependencyOrder(unit.members.map((c, k) => ({ name: c.name, labels: c.labels, links: infos[k]?.HostConfig.Links ?? [] })));
  const members = order.map((k) => unit.members[k]);
  const gate = new GroupGate(
    unit.group,
    members.map((c) => c.name),
  );
  if (missing.length > 0) {
    gate.fail(0, `a member is missing: ${missing.join('; ')}`);
    for (const c of members) turns[place.get(c.id) ?? 0].done();
  } else {
    log.info(`Group ${unit.group}: ${members.map((c) => c.name).join(', ')} held together (pre-commands in this order, post-commands in reverse)`);
    await Promise.all(
      members.map(async (c, k) => {
        const i = place.get(c.id) ?? 0;
        try {
          const record = await withContainerLock(ctx.env ?? {}, c, opts.lockTimeoutMs, () => crew.worker.run(c, turns[i], gate.member(k)), crew.signal);
          tally.records[i] = { ...record, group: unit.group };
        } catch (err) {
          gate.fail(k, `${c.name} failed: ${errorMessage(err)}`);
        } finally {
          gate.settle(k);
          turns[i].done();
        }
      }),
    );
  }
  if (ctx.signal?.aborted) throw ctx.signal.reason;
  const names = members.map((c) => c.name);
  if (!gate.failed) {
    log.info(`Group ${unit.group}: held together for ${gate.windowMs} ms (first hold to last release)`);
    tally.groups.push({ name: unit.group, containers: names, status: 'ok', windowMs: gate.windowMs });
    return;
  }
  // Stopped because another unit failed first: that failure is the one said.
  if (crew.stopOthers.signal.aborted && tally.abortedAt) return;
  const error = `group ${unit.group} not taken: ${gate.failed}`;
  tally.groups.push({ name: unit.group, containers: names, status: 'failed', windowMs: gate.windowMs, error });
  const failed = members.map((c): [number, ContainerOutcome] => [place.get(c.id) ?? 0, failure(c.name, c.id, c.state, new BackupError(error))]);
  unitFailed(opts, crew, tally, failed, `group ${unit.group}`, log);
}

/** What backUpAndStore produced: the outcomes of the containers it took or failed (not those given to it), and where the set went. */
type Stored = Omit<BackupResult, 'tag' | 'failed'>;

/** What the set document of a run records besides its containers: when, on which engine, and the containers that failed before any was taken. */
interface SetOrigin {
  /** ISO 8601 time the run started. */
  created: string;
  engine: SnapshotSet['source']['engine'];
  /** Outcomes given before backUpEach (containers not found): listed as failures in the set, not returned. */
  earlier: readonly ContainerOutcome[];
}

/**
 * Backs up the selected containers (backUpEach), then writes their set, which also lists as failures
 * those of `earlier` (the containers not found) and those that failed here. Throws BackupError when
 * no destination took the set. Returns its own outcomes only; the caller joins them to `earlier`.
 */
async function backUpAndStore(
  ctx: BackupContext,
  opts: BackupOptions,
  selected: Candidate[],
  crew: Crew,
  { created, engine, earlier }: SetOrigin,
): Promise<Stored> {
  const { log } = ctx;
  const { records, failures, groups } = await backUpEach(ctx, opts, selected, crew);
  if (records.length === 0) return { containers: failures, written: false, artifacts: [], destinations: [], groups };
  const containers = records.map(({ blobStats: _unused, ...r }) => r);
  const set: SnapshotSet = {
    schemaVersion: SET_SCHEMA_VERSION,
    mediaType: SET_MEDIA_TYPE,
    tag: opts.tag,
    created,
    tool: TOOL,
    source: {
      hostname: hostname(),
      engine,
      ...ctx.provenance,
    },
    containers,
    failures: [...earlier, ...failures].filter((o) => o.status === 'failed').map((o) => ({ name: o.name, error: o.error ?? '' })),
  };
  log.info(`Writing snapshot set ${opts.tag} to ${ctx.destinations.map((d) => d.label).join(', ')}`);
  const writes = await writeSetEverywhere(set, ctx.destinations);
  const incomplete = unwrittenLine(opts.tag, writes.placements);
  if (!writes.placements.some((p) => p.written)) throw new BackupError(incomplete ?? `Snapshot ${opts.tag} was not written.`);
  const windows = new Map(groups.map((g) => [g.name, g.windowMs]));
  const taken = records.map((r) => ({
    ...outcome(r, writes.refs.get(r.name) ?? [], crew.worker.notes.get(r.id)),
    ...(r.group ? { groupWindowMs: windows.get(r.group) } : {}),
  }));
  return {
    containers: [...failures, ...taken],
    written: true,
    artifacts: writes.artifacts,
    destinations: writes.placements,
    groups,
    ...(incomplete ? { incomplete } : {}),
  };
}
