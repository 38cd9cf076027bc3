import * as core from '@actions/core';
import { actionLogger } from '../action/run.js';
import { BackupOutput } from '../action/surface.js';
import { readPending, stateJournal } from '../action/state.js';
import { backup, engineAt } from '../commands.js';
import { Input, parseBackupInputs, parseEngineInput } from '../core/inputs.js';
import { engineEnv } from '../core/engine-address.js';
import { guarded } from '../core/guard.js';
import { hasPending, undo } from '../core/undo.js';
import { recoverAbandoned } from '../core/recovery.js';
import { backupSummary, failureLine, formatBytes, pruneReport } from '../report.js';

export async function main(): Promise<void> {
  for (const name of [Input.RegistryPassword, Input.EncryptionPassphrase]) {
    const secret = core.getInput(name);
    if (secret) core.setSecret(secret);
  }
  const opts = parseBackupInputs((name) => core.getInput(name), undefined, process.env);
  const engine = engineAt(opts.engine);
  const env = engineEnv(process.env, opts.engine);
  const handle = stateJournal(env);
  const result = await guarded(handle, engine, actionLogger, (signal) =>
    backup(opts, { log: actionLogger, env, engine, onSecret: (s) => core.setSecret(s), journal: handle.journal, signal }),
  );
  // Empty where no set was written: a later restore of it is refused at once, not searched for.
  core.setOutput(BackupOutput.Snapshot, result.written || opts.dryRun ? result.tag : '');
  core.setOutput(BackupOutput.Containers, JSON.stringify(result.containers));
  core.setOutput(BackupOutput.Failed, String(result.failed));
  core.setOutput(BackupOutput.Destinations, JSON.stringify(result.destinations));
  core.setOutput(BackupOutput.ArtifactId, result.artifacts[0] ? String(result.artifacts[0].id) : '');
  core.setOutput(BackupOutput.ArtifactUrl, result.artifacts[0]?.url ?? '');
  core.setOutput(BackupOutput.Pruned, result.pruned ? JSON.stringify(result.pruned) : '');
  const pruned = (result.pruned ?? []).map(pruneReport);
  for (const p of pruned) core.info(p);
  const retention = pruned.length > 0 ? `\n#### Retention\n\n\`\`\`\n${pruned.join('\n\n')}\n\`\`\`\n` : '';
  await (opts.pruneOnly ? core.summary : backupSummary(core.summary, result, opts.dryRun)).addRaw(retention).write();
  if (opts.pruneOnly) return;
  const ok = result.containers.filter((c) => c.status === 'ok');
  core.info(`Snapshot ${result.tag}: ${ok.length} container(s), ${formatBytes(ok.reduce((n, c) => n + c.bytes, 0))}`);
  const failed = failureLine(
    result.containers.map((c) => ({ name: c.name, error: c.error, failed: c.status === 'failed' })),
    'failed',
  );
  const problems = [failed, result.incomplete].filter((p) => p !== undefined);
  if (problems.length > 0) throw new Error(problems.join(' '));
}

/**
 * Undoes what an interrupted main step left: a container paused, one stopped (waiting for a stop
 * still under way to finish), a temporary image.
 */
export async function post(): Promise<void> {
  const address = parseEngineInput((name) => core.getInput(name), process.env);
  const engine = engineAt(address);
  // The main step's own journal file first, if it was killed before removing it (it says which run it was).
  await recoverAbandoned(engine, actionLogger, engineEnv(process.env, address));
  const pending = readPending();
  const { problems } = hasPending(pending) ? await undo(pending, engine, actionLogger) : { problems: [] };
  if (problems.length > 0) core.setFailed(`Cleanup after the backup failed: ${problems.join('; ')}`);
}
