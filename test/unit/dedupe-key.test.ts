import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEDUPE_KEY_FILE, hostDedupeKey } from '../../src/crypto/dedupe-key.js';

describe("this host's dedupe key", () => {
  let dir = '';
  let warnings: string[] = [];
  const warn = (m: string) => void warnings.push(m);
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'csx-dedupe-'));
    warnings = [];
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('is made once (32 bytes, mode 0600) and read again; two runs making it at once agree', async () => {
    const env = { CONTAINER_SNAPSHOT_STATE_DIR: join(dir, 'state') };
    const [a, b] = await Promise.all([hostDedupeKey(env, warn), hostDedupeKey(env, warn)]);
    expect(a?.length).toBe(32);
    expect(b?.equals(a!)).toBe(true);
    expect((await hostDedupeKey(env, warn))?.equals(a!)).toBe(true);
    const file = join(dir, 'state', DEDUPE_KEY_FILE);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8').trim()).toBe(a!.toString('hex'));
    expect(warnings).toEqual([]);
  });

  it('is absent, with one warning, where the state directory cannot hold it', async () => {
    writeFileSync(join(dir, 'file'), '');
    expect(await hostDedupeKey({ CONTAINER_SNAPSHOT_STATE_DIR: join(dir, 'file', 'state') }, warn)).toBeUndefined();
    expect(warnings).toEqual([expect.stringMatching(/^Encryption: no dedupe key on this host \(.*\): every blob is stored again, none reused\.$/)]);
  });
});
