/**
 * The state directory: where runs on this host keep journals, locks, the spool and keys across
 * processes. `CONTAINER_SNAPSHOT_STATE_DIR`, else `$XDG_STATE_HOME/container-snapshot` (XDG Base
 * Directory Specification), else `~/.local/state/container-snapshot`.
 */
import { homedir } from 'node:os';
import { join } from 'node:path';

/** The state directory for `env` (not created here). Never throws. */
export function stateDir(env: NodeJS.ProcessEnv): string {
  if (env.CONTAINER_SNAPSHOT_STATE_DIR) return env.CONTAINER_SNAPSHOT_STATE_DIR;
  return join(env.XDG_STATE_HOME || join(homedir(), '.local', 'state'), 'container-snapshot');
}

/**
 * Where a backup spools what it read while a container was held, when no dir: destination
 * takes the spool: `$RUNNER_TEMP/container-snapshot-spool`, else `<state dir>/spool`. Each run
 * spools in a directory of its own there, named `<host prefix>-<pid>-<random>`.
 */
export function spoolRoot(env: NodeJS.ProcessEnv): string {
  return env.RUNNER_TEMP ? join(env.RUNNER_TEMP, 'container-snapshot-spool') : join(stateDir(env), 'spool');
}
