// Shell helpers shared by the bench modules: untimed commands, quoting, progress lines.
import { execFileSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const CLI = join(ROOT, 'dist/cli.js');
export const MB = 1024 * 1024;

/** Single-quotes a shell word. */
export const q = (s) => `'${String(s).replaceAll("'", `'\\''`)}'`;

/** Runs a shell command, untimed; returns stdout. Throws with the command and its stderr. */
export function sh(cmd) {
  try {
    return execFileSync('sh', ['-c', cmd], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * MB });
  } catch (err) {
    throw new Error(`${cmd}\n${err.stderr || err.message}`, { cause: err });
  }
}

/** Best-effort variant for cleanup: '' on failure. */
export function shQuiet(cmd) {
  try {
    return sh(cmd);
  } catch {
    return '';
  }
}

/** The non-empty lines of a best-effort command's output. */
export const lines = (cmd) => shQuiet(cmd).split('\n').filter(Boolean);

/** A command as the progress lines show it: temp paths shortened, token values (even the local artifact service's) hidden. */
export function shown(cmd, ctx) {
  return cmd
    .replaceAll(ctx.tmp, '$TMP')
    .replaceAll(CLI, 'dist/cli.js')
    .replace(/\b([A-Z_]*TOKEN)='[^']*'/g, "$1='***'");
}

/** A progress line on stderr (the tables go to stdout). */
export function progress(msg) {
  process.stderr.write(`.. ${msg}\n`);
}

/** container-snapshot's backup command to a dir: destination. */
export function csBackupCmd(ctx, dir, tag, extra = '') {
  return `node ${q(CLI)} backup --containers ${ctx.container} --destination dir:${dir} --tag ${tag} ${extra}`;
}
