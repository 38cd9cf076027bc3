import { randomBytes } from 'node:crypto';
import { chmod, link, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stateDir } from '../core/state-dir.js';

/** The file under the state directory that holds this host's dedupe key (64 hex characters, mode 0600). */
export const DEDUPE_KEY_FILE = 'dedupe-key';
const KEY_BYTES = 32;

function parseKey(text: string): Buffer | undefined {
  const hex = text.trim();
  return /^[0-9a-f]{64}$/.test(hex) ? Buffer.from(hex, 'hex') : undefined;
}

/**
 * This host's secret for sealing the dedupe record of backups encrypted to recipients only (no
 * passphrase): read from `<state dir>/dedupe-key`, made (32 random bytes, 0600) on first use; two
 * backups making it at once agree (link() keeps the first). Undefined, with `warn` said once, when
 * the state directory cannot hold it: that backup then reuses no blob and seals no record.
 */
export async function hostDedupeKey(env: NodeJS.ProcessEnv, warn: (message: string) => void): Promise<Buffer | undefined> {
  const dir = stateDir(env);
  const path = join(dir, DEDUPE_KEY_FILE);
  try {
    const existing = parseKey(await readFile(path, 'utf8').catch(() => ''));
    if (existing) return existing;
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const tmp = join(dir, `.${DEDUPE_KEY_FILE}-${process.pid}-${randomBytes(4).toString('hex')}`);
    try {
      await writeFile(tmp, `${randomBytes(KEY_BYTES).toString('hex')}\n`, { flag: 'wx', mode: 0o600 });
      await chmod(tmp, 0o600);
      await link(tmp, path).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      });
    } finally {
      await rm(tmp, { force: true });
    }
    const made = parseKey(await readFile(path, 'utf8'));
    if (!made) throw new Error(`${path} does not hold 64 hex characters`);
    return made;
  } catch (err) {
    warn(`Encryption: no dedupe key on this host (${(err as Error).message}): every blob is stored again, none reused.`);
    return undefined;
  }
}
