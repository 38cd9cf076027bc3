import type { ArtifactRun, BackupOptions, Credentials, DestinationSpec, RestoreOptions } from './core/options.js';
import type { Logger } from './core/log.js';
import { ACTION_WORDS, type Vocabulary } from './core/words.js';
import { Engine } from './engine/engine.js';
import { recoverAbandoned } from './core/recovery.js';
import { cancellable } from './core/cancel.js';
import { openDestination, type Destination, type OpenOptions } from './destinations/index.js';
import { runBackup, type BackupResult, type Journal } from './snapshot/backup.js';
import { findSet, runRestore, verifyContainers, type RestoreResult } from './snapshot/restore.js';
import { recoverAbandonedRestores } from './snapshot/restore-journal.js';
import type { RestoreTransaction } from './snapshot/transaction.js';
import type { SetSummary } from './snapshot/manifest.js';

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
  /** The caller's words for its inputs (list and verify; backup and restore carry theirs in their options). */
  words?: Vocabulary;
}

function open(spec: DestinationSpec, credentials: Credentials, deps: Deps, extra: Pick<OpenOptions, 'retentionDays' | 'artifactRun' | 'words'> = {}): Promise<Destination> {
  const log = deps.log;
  return openDestination(spec, { credentials, onSecret: deps.onSecret, env: deps.env, warn: (m) => log.warning(m), info: (m) => log.info(m), words: deps.words, ...extra });
}

export async function backup(opts: BackupOptions, deps: Deps): Promise<BackupResult> {
  const destinations: Destination[] = [];
  const words = opts.words ?? deps.words ?? ACTION_WORDS;
  for (const spec of opts.destinations) destinations.push(await open(spec, opts.credentials, deps, { retentionDays: opts.retentionDays, words }));
  if (opts.retentionDays !== undefined && !opts.destinations.some((d) => d.kind === 'artifact')) {
    deps.log.warning(`${words.name('retention-days')} ${opts.retentionDays} has no effect: it applies to artifact: destinations only.`);
  }
  const engine = deps.engine ?? new Engine();
  if (!opts.dryRun) {
    await recoverAbandoned(engine, deps.log, deps.env);
    await recoverAbandonedRestores(engine, deps.log, deps.env);
  }
  const { signal } = deps;
  const cut = signal ? destinations.map((d) => cancellable(d, signal)) : destinations;
  return runBackup(opts, { engine, destinations: cut, log: deps.log, env: deps.env, journal: deps.journal, signal });
}

export async function restore(opts: RestoreOptions, deps: Deps): Promise<RestoreResult> {
  const source = await open(opts.source, opts.credentials, deps, { artifactRun: opts.artifactRun, words: opts.words ?? deps.words });
  const engine = deps.engine ?? new Engine();
  // The engine first: an unreachable one fails at once, not after every blob was read and checked.
  await engine.info();
  await recoverAbandoned(engine, deps.log, deps.env);
  await recoverAbandonedRestores(engine, deps.log, deps.env);
  return runRestore(opts, { engine, source, log: deps.log, txn: deps.txn });
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
