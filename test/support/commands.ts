import { backup, restore } from '../../src/commands.js';
import { parseBackupInputs, parseRestoreInputs } from '../../src/core/inputs.js';
import { quietLog } from './fixtures.js';

/** The environment commands run with in tests: no Docker config of the machine's user. */
export const testEnv: NodeJS.ProcessEnv = { ...process.env, DOCKER_CONFIG: '/nonexistent' };

/** An input reader over `values` (inputs by their action names; missing ones empty). */
export const inputs = (values: Record<string, string>) => (name: string) => values[name] ?? '';

/**
 * A backup through the commands layer that must succeed for every container. A failure is thrown
 * without a stack: the test's report then ends with the containers' errors (a CI log's tail shows
 * them), not with a code frame.
 */
export async function backUp(values: Record<string, string>) {
  const r = await backup(parseBackupInputs(inputs(values)), { log: quietLog, env: testEnv });
  if (r.failed > 0) {
    const err = new Error(`backup failed for ${r.failed} container(s): ${JSON.stringify(r.containers.filter((c) => c.error).map((c) => [c.name, c.error]))}`);
    err.stack = `${err.name}: ${err.message}`;
    throw err;
  }
  return r;
}

/** A restore through the commands layer; its result is the caller's to check. `env`: where DOCKER_HOST, its TLS files and SSH_AUTH_SOCK are read (none by default). */
export function restoreFrom(values: Record<string, string>, env?: NodeJS.ProcessEnv) {
  return restore(parseRestoreInputs(inputs(values), undefined, env ?? {}), { log: quietLog, env: env ?? testEnv });
}

/**
 * The environment of a test that compares what the writable layer's stats tell: a 2 s settle
 * margin (CONTAINER_SNAPSHOT_SETTLE_SECONDS), so that after `settle()` the files written before
 * count as settled; else each is racy (LayerEntry.racy) and taken again by the next backup.
 */
export const settledEnv: NodeJS.ProcessEnv = { ...testEnv, CONTAINER_SNAPSHOT_SETTLE_SECONDS: '2' };

/** Waits out settledEnv's margin (2.1 s). */
export const settle = () => new Promise((resolve) => setTimeout(resolve, 2100));
