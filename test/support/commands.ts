import { expect } from 'vitest';
import { backup, restore } from '../../src/commands.js';
import { parseBackupInputs, parseRestoreInputs } from '../../src/core/inputs.js';
import { quietLog } from './fixtures.js';

/** The environment commands run with in tests: no Docker config of the machine's user. */
export const testEnv: NodeJS.ProcessEnv = { ...process.env, DOCKER_CONFIG: '/nonexistent' };

/** An input reader over `values` (inputs by their action names; missing ones empty). */
export const inputs = (values: Record<string, string>) => (name: string) => values[name] ?? '';

/** A backup through the commands layer that must succeed for every container. */
export async function backUp(values: Record<string, string>) {
  const r = await backup(parseBackupInputs(inputs(values)), { log: quietLog, env: testEnv });
  expect(r.failed, JSON.stringify(r.containers.filter((c) => c.error))).toBe(0);
  return r;
}

/** A restore through the commands layer; its result is the caller's to check. `env`: where DOCKER_HOST, its TLS files and SSH_AUTH_SOCK are read (none by default). */
export function restoreFrom(values: Record<string, string>, env?: NodeJS.ProcessEnv) {
  return restore(parseRestoreInputs(inputs(values), undefined, env ?? {}), { log: quietLog, env: env ?? testEnv });
}
