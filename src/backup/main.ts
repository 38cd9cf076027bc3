import * as core from '@actions/core';
import { actionLogger } from '../action/run.js';
import { readPending, stateJournal } from '../action/state.js';
import { backup } from '../commands.js';
import { Input, parseBackupInputs } from '../core/inputs.js';
import { Engine } from '../engine/engine.js';
import { backupSummary, formatBytes } from '../report.js';

export async function main(): Promise<void> {
  const password = core.getInput(Input.RegistryPassword);
  if (password) core.setSecret(password);
  const opts = parseBackupInputs((name) => core.getInput(name));
  const result = await backup(opts, {
    log: actionLogger,
    env: process.env,
    onSecret: (s) => core.setSecret(s),
    journal: stateJournal(),
  });
  core.setOutput('snapshot', result.tag);
  core.setOutput('containers', JSON.stringify(result.containers));
  core.setOutput('failed', String(result.failed));
  await core.summary.addRaw(backupSummary(result, opts.dryRun)).write();
  const ok = result.containers.filter((c) => c.status === 'ok');
  core.info(`Snapshot ${result.tag}: ${ok.length} container(s), ${formatBytes(ok.reduce((n, c) => n + c.bytes, 0))}`);
  if (result.failed > 0) {
    const failures = result.containers.filter((c) => c.status === 'failed').map((c) => `${c.name} (${c.error})`);
    throw new Error(`${result.failed} container(s) failed: ${failures.join('; ')}`);
  }
}

/** Unpauses what the main step paused and removes its temporary images, if it could not. */
export async function post(): Promise<void> {
  const pending = readPending();
  if (pending.paused.length === 0 && pending.tempImages.length === 0) return;
  const engine = new Engine();
  const problems: string[] = [];
  for (const id of pending.paused) {
    try {
      const info = await engine.inspectContainer(id);
      if (info.State.Paused) {
        await engine.unpause(id);
        core.warning(`Unpaused container ${info.Name.replace(/^\//, '')}, left paused by an interrupted backup`);
      }
    } catch (err) {
      problems.push(`container ${id}: ${(err as Error).message}`);
    }
  }
  for (const id of pending.tempImages) {
    await engine.removeImage(id, { force: true }).catch((err: Error) => problems.push(`image ${id}: ${err.message}`));
  }
  if (problems.length > 0) core.setFailed(`Cleanup after the backup failed: ${problems.join('; ')}`);
}
