import type { BackupOptions, RestoreOptions } from './core/options.js';
import type { ArtifactRun, Credentials, DestinationSpec } from './core/destination-input.js';
import type { Logger } from './core/log.js';
import { ACTION_WORDS, type Vocabulary } from './core/words.js';
import { hostDedupeKey } from './crypto/dedupe-key.js';
import { Keyring, type Decryption } from './crypto/keyring.js';
import { Engine, type EngineInfo } from './engine/engine.js';
import { engineLine } from './report.js';
import type { EngineAddress } from './core/engine-address.js';
import { recoverAbandoned } from './core/recovery.js';
import { cancellable } from './core/cancel.js';
import { openDestination, type Destination, type OpenOptions } from './destinations/index.js';
import type { Journal } from './core/journal.js';
import { runBackup, type BackupResult } from './snapshot/backup.js';
import { runRestore } from './snapshot/restore.js';
import { findSet } from './snapshot/restore-set.js';
import type { RestoreResult } from './snapshot/restore-types.js';
import { recoverAbandonedRestores } from './snapshot/restore-journal.js';
import { verifySets, type VerifyReport } from './snapshot/verify.js';
import { verifyFailureLine } from './report.js';
import { restorePaths } from './snapshot/restore-paths.js';
import type { RestoreTransaction } from './snapshot/transaction.js';
import type { SetSummary } from './snapshot/manifest.js';
import { prune as pruneDestination, type PruneResult } from './snapshot/prune.js';
import type { RetentionPolicy } from './snapshot/retention.js';
import { listPath, listSet, type PathListing, type SetListing } from './browse/ls.js';
import type { Target } from './browse/paths.js';
import { diffSets, type SetDiff } from './browse/compare.js';
import { extractPath, type ExtractOptions, type ExtractResult } from './browse/extract.js';
import { provenanceOf } from './core/provenance.js';

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
  /** The keys list, verify and prune read encrypted sets with (backup and restore carry theirs in their options). */
  decryption?: Decryption;
}

function open(
  spec: DestinationSpec,
  credentials: Credentials,
  deps: Deps,
  extra: Pick<OpenOptions, 'retentionDays' | 'artifactRun' | 'words' | 'keyring'> = {},
): Promise<Destination> {
  const log = deps.log;
  const keyring = new Keyring(undefined, deps.decryption, { decrypt: (extra.words ?? deps.words ?? ACTION_WORDS).decryption });
  return openDestination(spec, {
    credentials,
    onSecret: deps.onSecret,
    env: deps.env,
    warn: (m) => log.warning(m),
    info: (m) => log.info(m),
    words: deps.words,
    keyring,
    ...extra,
  });
}

/**
 * A backup's keys. With a passphrase, the session key an earlier set wrapped with it is taken again
 * (from the newest encrypted set that has one), so that the blobs stored then are reused.
 */
async function backupKeyring(keyring: Keyring, destinations: Destination[], log: Logger): Promise<void> {
  const wrapped: string[] = [];
  for (const dest of destinations) {
    const sets = await dest.listSets().catch(() => []);
    const key = sets.find((s) => s.encryption?.passphraseKey)?.encryption?.passphraseKey;
    if (key) wrapped.push(key);
  }
  const adopted = await keyring.adopt(wrapped);
  log.info(adopted ? 'Encryption: age, with the passphrase key of the newest encrypted set' : 'Encryption: age, with a new passphrase key');
}

/** The engine the command talks to, with where it is reached, for summaries and reports. */
export type EngineReport = EngineInfo & { address: string };

/** A backup's result, what its `keep` policy removed in each destination that holds the set, and the engine it read. */
export type BackupOutcome = BackupResult & { pruned?: PruneResult[]; engine?: EngineReport };

/** The engine at `address` (parsed from docker-host or DOCKER_HOST); the client's default when absent. */
export function engineAt(address: EngineAddress | undefined): Engine {
  return address ? Engine.connect(address) : new Engine();
}

/** Runs `fn` on `given`, else on an engine at `address` made for it and closed after (an ssh:// engine's connection). */
async function withEngine<T>(
  given: Engine | undefined,
  address: EngineAddress | undefined,
  words: Vocabulary | undefined,
  fn: (engine: Engine) => Promise<T>,
): Promise<T> {
  const engine = given ?? engineAt(address);
  engine.addressHint = `${(words ?? ACTION_WORDS).name('docker-host')} (or DOCKER_HOST)`;
  try {
    return await fn(engine);
  } finally {
    if (!given) engine.close();
  }
}

async function report(engine: Engine): Promise<EngineReport> {
  return { ...(await engine.info()), address: engine.describe() };
}

export async function backup(opts: BackupOptions, deps: Deps): Promise<BackupOutcome> {
  const destinations: Destination[] = [];
  const words = opts.words ?? deps.words ?? ACTION_WORDS;
  const readBack = `a new tag (a backup reads a set back only with the ${words.encryptionPassphrase} it was made with)`;
  const keyring = new Keyring(opts.encryption, undefined, { decrypt: words.decryption, readBack });
  for (const spec of opts.destinations) destinations.push(await open(spec, opts.credentials, deps, { retentionDays: opts.retentionDays, words, keyring }));
  if (keyring.needsSession) await backupKeyring(keyring, destinations, deps.log);
  else if (keyring.encrypting && !opts.dryRun) keyring.useHostKey(await hostDedupeKey(deps.env, (m) => deps.log.warning(m)));
  if (opts.pruneOnly && opts.keep) return pruneOnly(destinations, opts.keep, opts.dryRun, deps);
  if (opts.retentionDays !== undefined && !opts.destinations.some((d) => d.kind === 'artifact')) {
    deps.log.warning(`${words.name('retention-days')} ${opts.retentionDays} has no effect: it applies to artifact: destinations only.`);
  }
  return withEngine(deps.engine, opts.engine, opts.words, (engine) => backUpOn(engine, opts, deps, destinations));
}

async function backUpOn(engine: Engine, opts: BackupOptions, deps: Deps, destinations: Destination[]): Promise<BackupOutcome> {
  const identity = await report(engine);
  deps.log.info(`Engine: ${engineLine(identity)}`);
  if (!opts.dryRun) {
    await recoverAbandoned(engine, deps.log, deps.env);
    await recoverAbandonedRestores(engine, deps.log, deps.env);
  }
  const { signal } = deps;
  const cut = signal ? destinations.map((d) => cancellable(d, signal)) : destinations;
  const result = {
    ...(await runBackup(opts, {
      engine,
      destinations: cut,
      log: deps.log,
      env: deps.env,
      provenance: provenanceOf(deps.env),
      journal: deps.journal,
      signal,
      now: deps.now,
    })),
    engine: identity,
  };
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

async function pruneEach(
  destinations: Destination[],
  keep: RetentionPolicy,
  dryRun: boolean,
  deps: Deps,
  how: { fail: boolean; protect?: string },
): Promise<PruneResult[]> {
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
  const source = await open(
    opts.source,
    opts.credentials,
    { ...deps, decryption: opts.decryption },
    { artifactRun: opts.artifactRun, words: opts.words ?? deps.words },
  );
  return withEngine(deps.engine, opts.engine, opts.words, async (engine) => {
    // The engine first: an unreachable one fails at once, not after every blob was read and checked.
    const identity = await report(engine);
    deps.log.info(`Engine: ${engineLine(identity)}`);
    await recoverAbandoned(engine, deps.log, deps.env);
    await recoverAbandonedRestores(engine, deps.log, deps.env);
    const ctx = { engine, source, log: deps.log, txn: deps.txn };
    return { ...(await (opts.paths.length > 0 ? restorePaths(opts, ctx) : runRestore(opts, ctx))), engine: identity };
  });
}

export async function list(spec: DestinationSpec, credentials: Credentials, deps: Deps, artifactRun?: ArtifactRun): Promise<SetSummary[]> {
  const source = await open(spec, credentials, deps, { artifactRun });
  await source.check('read');
  return source.listSets();
}

/**
 * `verify`, per container: every blob of set `snapshot` (a tag, `latest`, or `all`: every set of the
 * location) read in full, both checksums checked and, when encrypted, decrypted. Reads the location
 * only; the engine is never used. A set that cannot be found or read throws; damaged blobs are reported.
 */
export async function verifyReport(
  spec: DestinationSpec,
  snapshot: string,
  credentials: Credentials,
  deps: Deps,
  artifactRun?: ArtifactRun,
): Promise<VerifyReport> {
  const source = await open(spec, credentials, deps, { artifactRun });
  return verifySets(source, snapshot, deps.log);
}

/** One set verified, or an Error naming every damaged container and its blob; the set's tag and its blob count. */
export async function verify(
  spec: DestinationSpec,
  snapshot: string,
  credentials: Credentials,
  deps: Deps,
  artifactRun?: ArtifactRun,
): Promise<{ tag: string; blobs: number }> {
  const report = await verifyReport(spec, snapshot, credentials, deps, artifactRun);
  const damaged = verifyFailureLine(report);
  if (damaged) throw new Error(damaged);
  const [set] = report.sets;
  return { tag: set.tag, blobs: set.containers.reduce((n, c) => n + c.blobs, 0) };
}

/** Where ls, extract and diff read sets from. */
export interface SetSource {
  spec: DestinationSpec;
  credentials: Credentials;
  artifactRun?: ArtifactRun;
}

async function openSource(from: SetSource, deps: Deps): Promise<Destination> {
  return open(from.spec, from.credentials, deps, { artifactRun: from.artifactRun });
}

/**
 * `ls`: the containers of set `snapshot` and their archives, or, for a target, the files of one
 * container at and below its path (see browse/ls.ts). Reads the store only; the engine is not used.
 */
export async function ls(from: SetSource, snapshot: string, target: Target | undefined, deps: Deps): Promise<SetListing | PathListing> {
  const source = await openSource(from, deps);
  const set = await findSet(source, snapshot);
  return target ? listPath(source, set, target) : listSet(set);
}

/** `extract`: one file or directory of a container in set `snapshot` written under `opts.to` (see browse/extract.ts). */
export async function extract(
  from: SetSource,
  snapshot: string,
  target: Required<Target>,
  opts: Omit<ExtractOptions, 'warn'>,
  deps: Deps,
): Promise<ExtractResult> {
  const source = await openSource(from, deps);
  const set = await findSet(source, snapshot);
  return extractPath(source, set, target, { ...opts, warn: (m) => deps.log.warning(m) });
}

/** `diff`: what changed from set `first` to set `second`, both read from one location (see browse/compare.ts). */
export async function diff(from: SetSource, first: string, second: string, deps: Deps): Promise<SetDiff> {
  const source = await openSource(from, deps);
  return diffSets(source, await findSet(source, first), await findSet(source, second));
}
