import type { ArtifactRun, BackupOptions, Credentials, DestinationSpec, RestoreOptions } from './core/options.js';
import type { Logger } from './core/log.js';
import { ACTION_WORDS, type Vocabulary } from './core/words.js';
import { Engine, type EngineInfo } from './engine/engine.js';
import { engineLine } from './report.js';
import type { EngineAddress } from './core/engine-address.js';
import { recoverAbandoned } from './core/recovery.js';
import { cancellable } from './core/cancel.js';
import { openDestination, type Destination, type OpenOptions } from './destinations/index.js';
import { runBackup, type BackupResult, type Journal } from './snapshot/backup.js';
import { findSet, runRestore, verifyContainers, type RestoreResult } from './snapshot/restore.js';
import { recoverAbandonedRestores } from './snapshot/restore-journal.js';
import type { RestoreTransaction } from './snapshot/transaction.js';
import type { SetSummary } from './snapshot/manifest.js';
import { prune as pruneDestination, type PruneResult } from './snapshot/prune.js';
import type { RetentionPolicy } from './snapshot/retention.js';

/** What every command needs from its caller (the action or the CLI). */
export interface Deps {
  log: Logger;
  env: NodeJS.ProcessEnv;
  engine?: Engine;
  onSecret?: (secret: string) => void;
  journal?: Journal;
  /** A restore's transaction (journalled by the caller); one in memory when absent. */
  txn?: RestoreTransaction;
  /** Aborted when the command is cancelled (backup only). */
  signal?: AbortSignal;
  /** The clock a backup stamps its set with and a prune counts from; the system clock when absent. */
  now?: () => Date;
  /** The caller's words for its inputs (list and verify; backup and restore carry theirs in their options). */
  words?: Vocabulary;
}

function open(spec: DestinationSpec, credentials: Credentials, deps: Deps, extra: Pick<OpenOptions, 'retentionDays' | 'artifactRun' | 'words'> = {}): Promise<Destination> {
  const log = deps.log;
  return openDestination(spec, { credentials, onSecret: deps.onSecret, env: deps.env, warn: (m) => log.warning(m), info: (m) => log.info(m), words: deps.words, ...extra });
}

/** The engine the command talks to, with where it is reached, for summaries and reports. */
export type EngineReport = EngineInfo & { address: string };

/** A backup's result, what its `keep` policy removed in each destination that holds the set, and the engine it read. */
export type BackupOutcome = BackupResult & { pruned?: PruneResult[]; engine?: EngineReport };

/** The engine at `address` (parsed from docker-host or DOCKER_HOST); the client's default when absent. */
export function engineAt(address: EngineAddress | undefined): Engine {
  return address ? Engine.connect(address) : new Engine();
}

async function report(engine: Engine): Promise<EngineReport> {
  return { ...(await engine.info()), address: engine.describe() };
}

export async function backup(opts: BackupOptions, deps: Deps): Promise<BackupOutcome> {
  const destinations: Destination[] = [];
  const words = opts.words ?? deps.words ?? ACTION_WORDS;
  for (const spec of opts.destinations) destinations.push(await open(spec, opts.credentials, deps, { retentionDays: opts.retentionDays, words }));
  if (opts.pruneOnly && opts.keep) return pruneOnly(destinations, opts.keep, opts.dryRun, deps);
  if (opts.retentionDays !== undefined && !opts.destinations.some((d) => d.kind === 'artifact')) {
    deps.log.warning(`${words.name('retention-days')} ${opts.retentionDays} has no effect: it applies to artifact: destinations only.`);
  }
  const engine = deps.engine ?? engineAt(opts.engine);
  const identity = await report(engine);
  deps.log.info(`Engine: ${engineLine(identity)}`);
  if (!opts.dryRun) {
    await recoverAbandoned(engine, deps.log, deps.env);
    await recoverAbandonedRestores(engine, deps.log, deps.env);
  }
  const { signal } = deps;
  const cut = signal ? destinations.map((d) => cancellable(d, signal)) : destinations;
  const result = { ...(await runBackup(opts, { engine, destinations: cut, log: deps.log, env: deps.env, journal: deps.journal, signal, now: deps.now })), engine: identity };
  if (!opts.keep || (!result.written && !opts.dryRun)) return result;
  const holders = opts.dryRun ? destinations : destinations.filter((d) => result.destinations.some((p) => p.destination === d.label && p.written));
  return { ...result, pruned: await pruneAfterBackup(holders, opts.keep, result.tag, opts.dryRun, deps) };
}

/** The backup action's prune-only: `keep` applied to each destination, nothing backed up; a prune that fails fails the run. */
async function pruneOnly(destinations: Destination[], keep: RetentionPolicy, dryRun: boolean, deps: Deps): Promise<BackupOutcome> {
  for (const dest of destinations) await dest.check('read');
  const pruned = await pruneEach(destinations, keep, dryRun, deps, { fail: true });
  return { tag: '', containers: [], failed: 0, written: false, artifacts: [], destinations: [], pruned };
}

/** Each destination's prune; one that fails (deletes refused) is a warning: the set is written all the same. */
function pruneAfterBackup(destinations: Destination[], keep: RetentionPolicy, tag: string, dryRun: boolean, deps: Deps): Promise<PruneResult[]> {
  return pruneEach(destinations, keep, dryRun, deps, { fail: false, protect: tag });
}

async function pruneEach(destinations: Destination[], keep: RetentionPolicy, dryRun: boolean, deps: Deps, how: { fail: boolean; protect?: string }): Promise<PruneResult[]> {
  const results: PruneResult[] = [];
  for (const dest of destinations) {
    if (!dest.deleteSet) {
      deps.log.info(`keep does not apply to ${dest.label}: artifact: sets are kept for retention-days.`);
      continue;
    }
    try {
      results.push(await pruneDestination(dest, keep, { dryRun, now: deps.now?.() ?? new Date(), protect: how.protect ? [how.protect] : [], log: deps.log }));
    } catch (err) {
      if (how.fail) throw err;
      deps.log.warning(`keep: ${dest.label} not pruned: ${(err as Error).message}`);
    }
  }
  return results;
}

/** Applies `policy` to each location (CLI `prune`): see snapshot/prune.ts. */
export async function prune(specs: DestinationSpec[], policy: RetentionPolicy, dryRun: boolean, credentials: Credentials, deps: Deps): Promise<PruneResult[]> {
  const results: PruneResult[] = [];
  for (const spec of specs) {
    const dest = await open(spec, credentials, deps);
    await dest.check('read');
    results.push(await pruneDestination(dest, policy, { dryRun, now: deps.now?.() ?? new Date(), log: deps.log }));
  }
  return results;
}

/** A restore's result and the engine it restored onto. */
export type RestoreOutcome = RestoreResult & { engine: EngineReport };

export async function restore(opts: RestoreOptions, deps: Deps): Promise<RestoreOutcome> {
  const source = await open(opts.source, opts.credentials, deps, { artifactRun: opts.artifactRun, words: opts.words ?? deps.words });
  const engine = deps.engine ?? engineAt(opts.engine);
  // The engine first: an unreachable one fails at once, not after every blob was read and checked.
  const identity = await report(engine);
  deps.log.info(`Engine: ${engineLine(identity)}`);
  await recoverAbandoned(engine, deps.log, deps.env);
  await recoverAbandonedRestores(engine, deps.log, deps.env);
  return { ...(await runRestore(opts, { engine, source, log: deps.log, txn: deps.txn })), engine: identity };
}

export async function list(spec: DestinationSpec, credentials: Credentials, deps: Deps, artifactRun?: ArtifactRun): Promise<SetSummary[]> {
  const source = await open(spec, credentials, deps, { artifactRun });
  await source.check('read');
  return source.listSets();
}

export async function verify(
  spec: DestinationSpec,
  snapshot: string,
  credentials: Credentials,
  deps: Deps,
  artifactRun?: ArtifactRun,
): Promise<{ tag: string; blobs: number }> {
  const source = await open(spec, credentials, deps, { artifactRun });
  const set = await findSet(source, snapshot);
  const blobs = await verifyContainers(source, set.containers, true, deps.log);
  return { tag: set.tag, blobs };
}
