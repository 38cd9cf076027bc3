import { readFileSync } from 'node:fs';
import { Decrypter, Encrypter } from 'age-encryption';
import type { Decryption, Encryption } from '../crypto/keyring.js';
import { InputError } from './input-error.js';
import { splitList } from './input-values.js';

const IDENTITY_PREFIX = 'AGE-SECRET-KEY-';

/** The lines of an age recipients or identities file (age(1) `-R` / `-i`): blanks and `#` comments skipped. */
function keyLines(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

/** A key file's text; `secret`: the value may be a mistyped key, so the message does not repeat it. */
function readKeyFile(path: string, name: string, what: string, secret = false): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const shown = secret ? '' : ` '${path}'`;
    throw new InputError(`Invalid ${name}${shown}: not ${what} and not a readable file (${(err as NodeJS.ErrnoException).code ?? 'unreadable'}).`);
  }
}

/** Throws InputError, never repeating the value, when `value` (a recipient, or the path of a file of them) holds a private key. */
function refuseIdentity(value: string, name: string): void {
  if (!/AGE-SECRET-KEY-/i.test(value)) return;
  throw new InputError(
    `Invalid ${name}: this looks like a private key (an identity); expected public keys (age1…, as age-keygen -y prints them), or a file of them.`,
  );
}

function checkRecipient(r: string, name: string): string {
  refuseIdentity(r, name);
  if (r.startsWith('ssh-'))
    throw new InputError(`Invalid ${name} '${r.slice(0, 20)}…': ssh keys are not supported (age-encryption 0.3.1). Expected an age public key (age1…).`);
  try {
    new Encrypter().addRecipient(r);
  } catch {
    throw new InputError(`Invalid ${name} '${r}'. Expected an age public key (age1…, as age-keygen -y prints it) or a file of them.`);
  }
  return r;
}

/**
 * A List of age recipients (age1… X25519, age1pq1… hybrid), each an age public key or the path of a
 * recipients file (one key a line, as `age -R` reads). Throws InputError naming `name`; a private key given
 * instead (as the value or in the file) is refused without repeating it.
 */
export function parseRecipients(raw: string, name: string): string[] {
  const out: string[] = [];
  for (const item of splitList(raw)) {
    refuseIdentity(item, name);
    const keys = item.startsWith('age1') || item.startsWith('ssh-') ? [item] : keyLines(readKeyFile(item, name, 'an age public key (age1…)'));
    if (keys.length === 0) throw new InputError(`Invalid ${name} '${item}': the file holds no key. Expected age public keys (age1…), one a line.`);
    out.push(...keys.map((k) => checkRecipient(k, name)));
  }
  return [...new Set(out)];
}

/**
 * Age identities (AGE-SECRET-KEY-1…) given as their text or as the path of an identity file (as
 * `age-keygen -o` writes it). The value is never repeated in a message: it may be the key itself.
 */
export function parseIdentities(raw: string, name: string): string[] {
  const value = raw.trim();
  if (value === '') return [];
  const text = value.includes(IDENTITY_PREFIX) ? value : readKeyFile(value, name, 'an age identity (AGE-SECRET-KEY-1…)', true);
  const keys = keyLines(text);
  if (keys.length === 0 || keys.some((k) => !k.startsWith(IDENTITY_PREFIX))) {
    throw new InputError(`Invalid ${name}: expected age identities (AGE-SECRET-KEY-1…, one a line, # comments allowed), or a file of them.`);
  }
  for (const k of keys) {
    try {
      new Decrypter().addIdentity(k);
    } catch {
      throw new InputError(`Invalid ${name}: a line is not a valid age identity. Expected AGE-SECRET-KEY-1… as age-keygen writes it.`);
    }
  }
  return keys;
}

/** The backup's encryption: recipients and/or a passphrase; undefined when neither is given. */
export function parseEncryption(recipients: string, passphrase: string, names: { recipients: string; passphrase: string }): Encryption | undefined {
  const r = parseRecipients(recipients, names.recipients);
  if (r.length === 0 && passphrase === '') return undefined;
  return { recipients: r, ...(passphrase !== '' ? { passphrase } : {}) };
}

/** A restore's (or verify's, list's) keys: identities and/or a passphrase; undefined when neither is given. */
export function parseDecryption(identity: string, passphrase: string, names: { identity: string; passphrase: string }): Decryption | undefined {
  const identities = parseIdentities(identity, names.identity);
  if (identities.length === 0 && passphrase === '') return undefined;
  return { identities, ...(passphrase !== '' ? { passphrase } : {}) };
}

/** Every secret a parse produced, for masking (core.setSecret) before anything is logged. */
export function secretsOf(keys: { encryption?: Encryption; decryption?: Decryption }): string[] {
  return [keys.encryption?.passphrase, keys.decryption?.passphrase, ...(keys.decryption?.identities ?? [])].filter((s): s is string => Boolean(s));
}
