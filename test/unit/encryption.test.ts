import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { pipeline } from 'node:stream/promises';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseBackupInputs, parseRestoreInputs } from '../../src/core/inputs.js';
import { parseIdentities, parseRecipients, secretsOf } from '../../src/core/key-inputs.js';
import { ACTION_WORDS, CLI_WORDS } from '../../src/core/words.js';
import { KeyError, Keyring } from '../../src/crypto/keyring.js';
import { imageConfigWithoutEnv, secretEnvWarning, secretLookingNames, specWithoutEnv } from '../../src/snapshot/secret-env.js';

const inputs = (values: Record<string, string>) => (name: string) => values[name] ?? '';
const words = { decrypt: 'decryption-identity or decryption-passphrase' };

describe('key inputs', () => {
  let dir = '';
  let identity = '';
  let recipient = '';
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'csx-keys-'));
    identity = await generateX25519Identity();
    recipient = await identityToRecipient(identity);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('takes age public keys and recipients files (comments and blanks skipped), each once', () => {
    const file = join(dir, 'recipients.txt');
    writeFileSync(file, `# team\n\n${recipient}\n`);
    expect(parseRecipients(`${recipient}\n${file}`, 'encryption-recipients')).toEqual([recipient]);
  });

  it('refuses an ssh key, a malformed key and a missing file, naming the input', () => {
    expect(() => parseRecipients('ssh-ed25519 AAAAC3Nza', 'encryption-recipients')).toThrow(/ssh keys are not supported .* Expected an age public key/);
    expect(() => parseRecipients('age1notakey', 'encryption-recipients')).toThrow("Invalid encryption-recipients 'age1notakey'. Expected an age public key");
    expect(() => parseRecipients('/nonexistent/r.txt', 'encryption-recipients')).toThrow(
      "Invalid encryption-recipients '/nonexistent/r.txt': not an age public key (age1…) and not a readable file (ENOENT).",
    );
  });

  it('refuses a private key where public keys are expected, as the value or in a file, and never repeats it', () => {
    const file = join(dir, 'secret-as-recipients.txt');
    writeFileSync(file, `# created: 2026-01-01\n${identity}\n`);
    for (const value of [identity, file, `${recipient},${identity}`, identity.toLowerCase()]) {
      let message = '';
      try {
        parseRecipients(value, '--encryption-recipients');
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message).toBe(
        'Invalid --encryption-recipients: this looks like a private key (an identity); expected public keys (age1…, as age-keygen -y prints them), or a file of them.',
      );
      expect(message.toUpperCase()).not.toContain(identity.slice('AGE-SECRET-KEY-'.length, 40));
    }
  });

  it('takes identities as text or from an identity file, and never repeats a bad value', () => {
    const file = join(dir, 'key.txt');
    writeFileSync(file, `# created: now\n# public key: ${recipient}\n${identity}\n`);
    expect(parseIdentities(identity, 'decryption-identity')).toEqual([identity]);
    expect(parseIdentities(file, 'decryption-identity')).toEqual([identity]);
    const typo = `AGE-SECRET-KEY-1${'Q'.repeat(10)}`;
    expect(() => parseIdentities(typo, 'decryption-identity')).toThrow('Invalid decryption-identity: a line is not a valid age identity.');
    const err = (() => {
      try {
        parseIdentities('age-secret-key-1lowercase', '--decryption-identity');
      } catch (e) {
        return (e as Error).message;
      }
    })();
    expect(err).toBe('Invalid --decryption-identity: not an age identity (AGE-SECRET-KEY-1…) and not a readable file (ENOENT).');
  });

  it('parses the backup and restore inputs once, and names every secret for masking', () => {
    const backup = parseBackupInputs(inputs({ destination: 'dir:/tmp/x', 'encryption-recipients': recipient, 'encryption-passphrase': 'pass phrase' }));
    expect(backup.encryption).toEqual({ recipients: [recipient], passphrase: 'pass phrase' });
    expect(parseBackupInputs(inputs({ destination: 'dir:/tmp/x' })).encryption).toBeUndefined();
    const restore = parseRestoreInputs(inputs({ source: 'dir:/tmp/x', snapshot: 'latest', 'decryption-identity': identity, 'decryption-passphrase': 'p2' }));
    expect(restore.decryption).toEqual({ identities: [identity], passphrase: 'p2' });
    expect(secretsOf({ encryption: backup.encryption, decryption: restore.decryption }).sort()).toEqual(['p2', 'pass phrase', identity].sort());
  });

  it('keeps images pullable only when asked, and only with a key', () => {
    const dest = 'registry:127.0.0.1:5000/snap';
    expect(parseBackupInputs(inputs({ destination: dest, 'encryption-passphrase': 'p' })).encryption).toEqual({ recipients: [], passphrase: 'p' });
    expect(parseBackupInputs(inputs({ destination: dest, 'encryption-passphrase': 'p', 'registry-pullable-image': 'true' })).encryption?.pullableImage).toBe(
      true,
    );
    expect(parseBackupInputs(inputs({ destination: dest, 'registry-pullable-image': 'true' })).encryption).toBeUndefined();
    expect(() => parseBackupInputs(inputs({ 'registry-pullable-image': 'yes' }))).toThrow("Invalid registry-pullable-image 'yes'. Expected true or false.");
  });
});

describe('Keyring', () => {
  let a: { identity: string; recipient: string };
  let b: { identity: string; recipient: string };
  beforeAll(async () => {
    const pair = async () => {
      const identity = await generateX25519Identity();
      return { identity, recipient: await identityToRecipient(identity) };
    };
    a = await pair();
    b = await pair();
  });

  it('streams a blob through age and back', async () => {
    const plain = Buffer.alloc(300_000, 7);
    const enc = new Keyring({ recipients: [a.recipient] }, undefined, words);
    const sealed = await buffer(Readable.from([plain]).pipe(enc.encryptStream()));
    expect(sealed.subarray(0, 21).toString()).toBe('age-encryption.org/v1');
    const dec = new Keyring(undefined, { identities: [a.identity] }, words);
    const out: Buffer[] = [];
    await pipeline(Readable.from([sealed]), dec.decryptStream('blob'), async function (src) {
      for await (const c of src) out.push(c as Buffer);
    });
    expect(Buffer.concat(out).equals(plain)).toBe(true);
  });

  it('says which key is missing or wrong, in the words of the interface', async () => {
    const sealed = await new Keyring({ recipients: [a.recipient] }, undefined, words).encryptBytes(Buffer.from('doc'));
    await expect(new Keyring(undefined, undefined, words).decryptBytes(sealed, 'Snapshot t')).rejects.toThrow(
      'Snapshot t is encrypted (age). Expected decryption-identity or decryption-passphrase.',
    );
    await expect(new Keyring(undefined, { identities: [b.identity] }, words).decryptBytes(sealed, 'Snapshot t')).rejects.toThrow(KeyError);
    await expect(new Keyring(undefined, { identities: [b.identity] }, { decrypt: CLI_WORDS.decryption }).decryptBytes(sealed, 'Snapshot t')).rejects.toThrow(
      `Snapshot t cannot be decrypted with the key or passphrase given: it was encrypted for another. Expected the identity or passphrase it was made with (${CLI_WORDS.decryption}).`,
    );
  });

  it('says a damaged wrapped passphrase key is damaged, not a wrong passphrase', async () => {
    const maker = new Keyring({ recipients: [], passphrase: 'correct horse' }, undefined, words);
    await maker.adopt([]);
    const sealed = await maker.encryptBytes(Buffer.from('doc'));
    const lines = maker.passphraseKey!.split('\n');
    lines[1] = `${lines[1].slice(0, 5)}${lines[1][5] === 'A' ? 'B' : 'A'}${lines[1].slice(6)}`;
    const reader = new Keyring(undefined, { identities: [], passphrase: 'correct horse' }, words);
    await reader.unlock(lines.join('\n'));
    await expect(reader.decryptBytes(sealed, 'Snapshot t')).rejects.toThrow(
      /^Snapshot t cannot be decrypted: the passphrase's wrapped key in its envelope is damaged \(.+\), so no passphrase opens it\./,
    );
    const wrong = new Keyring(undefined, { identities: [], passphrase: 'wrong horse' }, words);
    await wrong.unlock(maker.passphraseKey);
    await expect(wrong.decryptBytes(sealed, 'Snapshot t')).rejects.toThrow(
      'Snapshot t cannot be decrypted with the key or passphrase given: it was encrypted for another.',
    );
    expect((await reader.unlock(maker.passphraseKey), await reader.decryptBytes(sealed, 'Snapshot t')).toString()).toBe('doc');
  }, 30_000);

  it('tells a backup that cannot read a set back to use a new tag', async () => {
    const sealed = await new Keyring({ recipients: [a.recipient] }, undefined, words).encryptBytes(Buffer.from('doc'));
    const backup = new Keyring({ recipients: [a.recipient] }, undefined, { ...words, readBack: 'a new tag' });
    await expect(backup.decryptBytes(sealed, 'Snapshot t')).rejects.toThrow(
      'Snapshot t is encrypted (age) and cannot be read back by this backup. Expected a new tag.',
    );
  });

  it('opens a dedupe record only for the same recipients and host key', () => {
    const host = randomBytes(32);
    const keyed = (recipients: string[], key: Buffer | undefined) => {
      const k = new Keyring({ recipients }, undefined, words);
      k.useHostKey(key);
      return k;
    };
    const sealed = keyed([a.recipient, b.recipient], host).sealRecord({ containers: [] })!;
    expect(keyed([b.recipient, a.recipient], host).openRecord(sealed)).toEqual({ containers: [] });
    expect(keyed([a.recipient], host).openRecord(sealed)).toBeUndefined();
    expect(keyed([a.recipient, b.recipient], undefined).openRecord(sealed)).toBeUndefined();
  });

  it('refuses a dedupe record forged by whoever holds only the public keys (dedupe poisoning)', () => {
    const backup = new Keyring({ recipients: [a.recipient] }, undefined, words);
    backup.useHostKey(randomBytes(32));
    const publicOnly = new Keyring({ recipients: [a.recipient] }, undefined, words);
    expect(publicOnly.sealRecord({ containers: [] })).toBeUndefined();
    const forger = new Keyring({ recipients: [a.recipient] }, undefined, words);
    forger.useHostKey(randomBytes(32));
    expect(backup.openRecord(forger.sealRecord({ containers: [] })!)).toBeUndefined();
  });

  it('takes again the session key a passphrase wrapped, and not with another passphrase', async () => {
    const first = new Keyring({ recipients: [], passphrase: 'correct horse' }, undefined, words);
    expect(await first.adopt([])).toBe(false);
    const record = first.sealRecord({ n: 1 })!;
    const again = new Keyring({ recipients: [], passphrase: 'correct horse' }, undefined, words);
    expect(await again.adopt([first.passphraseKey!])).toBe(true);
    expect(again.openRecord(record)).toEqual({ n: 1 });
    const other = new Keyring({ recipients: [], passphrase: 'wrong horse' }, undefined, words);
    expect(await other.adopt([first.passphraseKey!])).toBe(false);
    expect(other.openRecord(record)).toBeUndefined();
  }, 30_000);
});

describe('environment variables whose names look secret', () => {
  it('names them, never their values', () => {
    const env = ['PATH=/bin', 'DB_PASSWORD=hunter2', 'api_token=t0k', 'AWS_SECRET_ACCESS_KEY=x', 'GPG_KEY=1', 'MY_CREDENTIALS=c', 'HOME=/root'];
    expect(secretLookingNames(env)).toEqual(['AWS_SECRET_ACCESS_KEY', 'DB_PASSWORD', 'GPG_KEY', 'MY_CREDENTIALS', 'api_token']);
    const warning = secretEnvWarning('db', env, ACTION_WORDS)!;
    expect(warning).toMatch(/^db: its environment has AWS_SECRET_ACCESS_KEY, DB_PASSWORD, GPG_KEY, MY_CREDENTIALS, api_token, whose names look secret/);
    expect(warning).toContain('Expected encryption-recipients or encryption-passphrase');
    for (const value of ['hunter2', 't0k', '/root']) expect(warning).not.toContain(value);
    expect(secretEnvWarning('web', ['PATH=/bin', 'PORT=80'], CLI_WORDS)).toBeUndefined();
    expect(secretEnvWarning('db', env, CLI_WORDS)).toContain(
      `Expected --encryption-recipients or --encryption-passphrase-stdin (or CONTAINER_SNAPSHOT_ENCRYPTION_PASSPHRASE) to store it encrypted, or --exclude-env to leave them out.`,
    );
  });
});

describe('exclude-env', () => {
  it('takes names and globs, and refuses anything else naming the input', () => {
    const opts = parseBackupInputs(inputs({ destination: 'dir:/tmp/x', 'exclude-env': 'DB_PASSWORD\n*_TOKEN' }));
    const spec = specWithoutEnv({ config: { Env: ['DB_PASSWORD=a', 'API_TOKEN=b', 'TOKEN_X=c', 'MODE=d'] } }, opts.excludeEnv);
    expect(spec.config.Env).toEqual(['TOKEN_X=c', 'MODE=d']);
    expect(() => parseBackupInputs(inputs({ 'exclude-env': 'A=B' }))).toThrow("Invalid exclude-env 'A=B'. Expected an environment variable name or a glob");
    expect(parseBackupInputs(inputs({})).excludeEnv).toEqual([]);
  });

  it('strips the image config (config and container_config) and nothing else', () => {
    const config = {
      architecture: 'amd64',
      config: { Env: ['PATH=/bin', 'DB_PASSWORD=a'], Cmd: ['sh'] },
      container_config: { Env: ['DB_PASSWORD=a'] },
      rootfs: { diff_ids: ['sha256:1'] },
    };
    const out = JSON.parse(imageConfigWithoutEnv(Buffer.from(JSON.stringify(config)), [/^DB_PASSWORD$/]).toString('utf8')) as typeof config;
    expect(out).toEqual({ ...config, config: { Env: ['PATH=/bin'], Cmd: ['sh'] }, container_config: { Env: [] } });
  });
});
