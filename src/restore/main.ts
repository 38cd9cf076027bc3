import * as core from '@actions/core';
import { actionLogger } from '../action/run.js';
import { restore } from '../commands.js';
import { Input, parseRestoreInputs } from '../core/inputs.js';
import { restoreSummary } from '../report.js';

export async function main(): Promise<void> {
  const password = core.getInput(Input.RegistryPassword);
  if (password) core.setSecret(password);
  const opts = parseRestoreInputs((name) => core.getInput(name));
  const result = await restore(opts, { log: actionLogger, env: process.env, onSecret: (s) => core.setSecret(s) });
  core.setOutput('snapshot', result.tag);
  core.setOutput('containers', JSON.stringify(result.containers));
  core.setOutput('failed', String(result.failed));
  await core.summary.addRaw(restoreSummary(result)).write();
  if (result.failed > 0) {
    const failures = result.containers.filter((c) => c.status === 'failed').map((c) => `${c.from} (${c.error})`);
    throw new Error(`${result.failed} container(s) not restored: ${failures.join('; ')}`);
  }
}
