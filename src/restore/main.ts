import * as core from '@actions/core';
import { actionLogger } from '../action/run.js';
import { restore } from '../commands.js';
import { Input, parseRestoreInputs } from '../core/inputs.js';
import { failureLine, restoreSummary } from '../report.js';

export async function main(): Promise<void> {
  const password = core.getInput(Input.RegistryPassword);
  if (password) core.setSecret(password);
  const token = core.getInput(Input.GithubToken);
  if (token) core.setSecret(token);
  const opts = parseRestoreInputs((name) => core.getInput(name));
  const result = await restore(opts, { log: actionLogger, env: process.env, onSecret: (s) => core.setSecret(s) });
  core.setOutput('snapshot', result.tag);
  core.setOutput('containers', JSON.stringify(result.containers));
  core.setOutput('failed', String(result.failed));
  await core.summary.addRaw(restoreSummary(result)).write();
  const failed = failureLine(result.containers.map((c) => ({ name: c.from, error: c.error, failed: c.status === 'failed' })), 'not restored');
  if (failed) throw new Error(failed);
}
