import * as core from '@actions/core';
import { actionLogger } from '../action/run.js';
import { RestoreOutput } from '../action/surface.js';
import { readRestorePending, restoreStateJournal } from '../action/state.js';
import { engineAt, restore, verifyReport } from '../commands.js';
import { Input, parseEngineInput, parseRestoreInputs, parseVerifyInputs, parseVerifyOnly, type VerifyOptions } from '../core/inputs.js';
import { secretsOf } from '../core/key-inputs.js';
import { engineEnv } from '../core/engine-address.js';
import { failureLine, restoreSummary, verifyFailureLine, verifyLines, verifySummary } from '../report.js';
import { adoptPending, guardedRestore, recoverAbandonedRestores } from '../snapshot/restore-journal.js';
import { hasPending } from '../snapshot/transaction.js';

export async function main(): Promise<void> {
  for (const name of [Input.RegistryPassword, Input.GithubToken, Input.DecryptionPassphrase, Input.DecryptionIdentity]) {
    const secret = core.getInput(name);
    // An identity given as its text: each key line too (the runner masks line by line).
    if (secret) for (const s of [secret, ...secret.split(/\r?\n/).filter((l) => l.trim() !== '')]) core.setSecret(s.trim());
  }
  const get = (name: string) => core.getInput(name);
  if (parseVerifyOnly(get)) return verifyOnly(parseVerifyInputs(get));
  const opts = parseRestoreInputs(get, undefined, process.env);
  // Identities read from a file, masked before anything is logged.
  for (const s of secretsOf(opts)) core.setSecret(s);
  const env = engineEnv(process.env, opts.engine);
  const handle = restoreStateJournal(env);
  const result = await guardedRestore(handle, actionLogger, () =>
    restore(opts, { log: actionLogger, env, onSecret: (s) => core.setSecret(s), txn: handle.txn }),
  );
  core.setOutput(RestoreOutput.Snapshot, result.tag);
  core.setOutput(RestoreOutput.Containers, JSON.stringify(result.containers));
  core.setOutput(RestoreOutput.Failed, String(result.failed));
  await restoreSummary(core.summary, result).write();
  const failed = failureLine(
    result.containers.map((c) => ({ name: c.from, error: c.error, failed: c.status === 'failed' })),
    'not restored',
  );
  if (failed) throw new Error(failed);
}

/**
 * verify-only: the set(s) read and checked, a line per set and per container in the log, the job
 * summary and the outputs. No Engine is made and no abandoned restore is put back: a verification
 * changes nothing on the host, and runs where there is no engine at all; the next restore or backup
 * on this host puts back what an interrupted restore left.
 */
async function verifyOnly(opts: VerifyOptions): Promise<void> {
  for (const s of secretsOf(opts)) core.setSecret(s);
  const deps = { log: actionLogger, env: process.env, onSecret: (s: string) => core.setSecret(s), decryption: opts.decryption };
  const report = await verifyReport(opts.source, opts.snapshot, opts.credentials, deps, opts.artifactRun);
  for (const line of verifyLines(report)) core.info(line);
  const containers = report.sets.flatMap((s) =>
    s.error
      ? [{ snapshot: s.tag, name: '', from: '', blobs: 0, status: 'failed' as const, error: s.error }]
      : s.containers.map((c) => ({ ...c, from: c.name })),
  );
  core.setOutput(RestoreOutput.Snapshot, report.sets.map((s) => s.tag).join(','));
  core.setOutput(RestoreOutput.Containers, JSON.stringify(containers));
  core.setOutput(RestoreOutput.Failed, String(report.failed));
  await verifySummary(core.summary, report).write();
  const damaged = verifyFailureLine(report);
  if (damaged) throw new Error(damaged);
}

/** Whether this step verifies only (then the post step has nothing to put back, and leaves the engine alone). */
function verifiesOnly(): boolean {
  try {
    return parseVerifyOnly((name) => core.getInput(name));
  } catch {
    return false;
  }
}

/**
 * Puts back what an interrupted main step changed and did not commit (it must be loud when it
 * cannot), and finishes a commit it was killed in (removes what it kept aside). Through the main
 * step's journal file, which the rollback keeps up to date: a second rollback of the same changes
 * (by the next run) would undo what this one put back.
 */
export async function post(): Promise<void> {
  if (verifiesOnly()) return;
  const pending = readRestorePending();
  const address = parseEngineInput((name) => core.getInput(name), process.env);
  const env = engineEnv(process.env, address);
  if (pending && hasPending(pending)) adoptPending(env, pending);
  const { problems } = await recoverAbandonedRestores(engineAt(address), actionLogger, env);
  if (problems.length > 0) core.setFailed(`Putting back what the interrupted restore changed failed: ${problems.join('; ')}`);
}
