import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { Duplex, PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Decrypter, Encrypter, armor, generateX25519Identity, identityToRecipient } from 'age-encryption';

/** What a backup encrypts to: age recipients (age1…, age1pq1…) and/or a passphrase. */
export interface Encryption {
  recipients: string[];
  passphrase?: string;
  /** Keep image layers and configs in clear, so that a registry's snapshot images stay pullable (registry-pullable-image). */
  pullableImage?: boolean;
}

/** What a restore, verify or list decrypts with: age identities (AGE-SECRET-KEY-1…) and/or a passphrase. */
export interface Decryption {
  identities: string[];
  passphrase?: string;
}

/** How the interface in use names its key inputs, for the one line a missing or wrong key gives. */
export interface KeyWords {
  decrypt: string;
  /** A backup's: what to do when it must read a set back (a tag already written) that its keys cannot open. */
  readBack?: string;
}

export class KeyError extends Error {
  override name = 'KeyError';
}

/** The label of an encrypted blob or set document in its descriptor (age v1, https://age-encryption.org/v1). */
export const AGE = 'age';

/** AES-256-GCM (12-byte nonce, 16-byte tag) for the dedupe record; see dedupeKey. */
const GCM_NONCE = 12;
const GCM_TAG = 16;

type WebStream = ReadableStream<Uint8Array>;

/**
 * A stream transform whose output is `fn` of its input. `fn` may wait for input before it resolves
 * (age's Decrypter reads the header first), so the output is joined once it has.
 */
function webTransform(fn: (input: WebStream) => Promise<WebStream>): Duplex {
  const input = new PassThrough();
  const output = new PassThrough();
  fn(Readable.toWeb(input) as WebStream)
    .then((web) => pipeline(Readable.fromWeb(web as Parameters<typeof Readable.fromWeb>[0]), output))
    .catch((err: unknown) => {
      input.destroy();
      output.destroy(err instanceof Error ? err : new Error(String(err)));
    });
  return Duplex.from({ writable: input, readable: output });
}

/**
 * The keys of one run, shared by every destination it opens: age (X25519) encryption of blobs and
 * set documents, streaming in 64 KiB chunks (age's STREAM), so memory stays bounded.
 *
 * A passphrase does not encrypt each blob (age's scrypt costs a second per file): it wraps a session
 * X25519 identity (`passphraseKey`, an armored age file that `age -d` opens with the passphrase), and
 * the blobs are encrypted to that identity's recipient, beside any recipients given.
 */
export class Keyring {
  private sessionIdentity?: string;
  private sessionRecipient?: string;
  private wrapped?: string;
  private hostKey?: Buffer;
  /** Why the last set's wrapped passphrase key could not be opened, when it was damaged rather than for another passphrase. */
  private damagedWrap?: string;
  private readonly identities: string[];
  private readonly passphrases: string[];

  /** True when the reader gave a key (identities or a passphrase) to read sets with: a clear set is then refused (refuseClearWithKey). */
  readonly decrypting: boolean;

  constructor(
    private readonly encryption: Encryption | undefined,
    decryption: Decryption | undefined,
    readonly words: KeyWords,
  ) {
    this.decrypting = Boolean(decryption && (decryption.identities.length > 0 || decryption.passphrase));
    this.identities = [...(decryption?.identities ?? [])];
    this.passphrases = [decryption?.passphrase, encryption?.passphrase].filter((p): p is string => Boolean(p));
  }

  /** True when this run stores blobs and set documents encrypted. */
  get encrypting(): boolean {
    return Boolean(this.encryption && (this.encryption.recipients.length > 0 || this.encryption.passphrase));
  }

  /** True when image layers and configs are stored in clear (registry-pullable-image), the rest encrypted. */
  get keepsImagesPullable(): boolean {
    return Boolean(this.encryption?.pullableImage);
  }

  /** True when a passphrase still needs its session identity (see adopt). */
  get needsSession(): boolean {
    return Boolean(this.encryption?.passphrase) && !this.sessionIdentity;
  }

  /**
   * Takes the session identity an earlier set wrapped with this passphrase (so that blobs stored then are
   * reused now), or makes a new one. Returns true when an earlier one was taken. One scrypt per candidate.
   */
  async adopt(wrappedKeys: string[]): Promise<boolean> {
    for (const wrapped of wrappedKeys) {
      const identity = await this.unwrap(wrapped).catch(() => undefined);
      if (identity) {
        await this.useSession(identity, wrapped);
        return true;
      }
    }
    const identity = await generateX25519Identity();
    const enc = new Encrypter();
    enc.setPassphrase(this.encryption?.passphrase ?? '');
    await this.useSession(identity, armor.encode(await enc.encrypt(`${identity}\n`)));
    return false;
  }

  private async useSession(identity: string, wrapped: string): Promise<void> {
    this.sessionIdentity = identity;
    this.sessionRecipient = await identityToRecipient(identity);
    this.wrapped = wrapped;
    if (!this.identities.includes(identity)) this.identities.push(identity);
  }

  private async unwrap(wrapped: string): Promise<string | undefined> {
    if (this.passphrases.length === 0) return undefined;
    const dec = new Decrypter();
    for (const p of this.passphrases) dec.addPassphrase(p);
    const text = await dec.decrypt(armor.decode(wrapped), 'text');
    const identity = text.trim();
    return identity.startsWith('AGE-SECRET-KEY-1') ? identity : undefined;
  }

  /** What a set document's clear envelope carries for a passphrase: the wrapped session identity. */
  get passphraseKey(): string | undefined {
    return this.wrapped;
  }

  /** Before reading a set: the identity its passphrase wraps, when there is one and a passphrase was given. */
  async unlock(passphraseKey: string | undefined): Promise<void> {
    this.damagedWrap = undefined;
    if (!passphraseKey || this.passphrases.length === 0) return;
    try {
      const identity = await this.unwrap(passphraseKey);
      if (!identity) throw new Error('it does not hold an age identity');
      if (!this.identities.includes(identity)) this.identities.push(identity);
    } catch (err) {
      // A wrong passphrase is age's "no identity matched"; anything else (armor, header, payload) is damage.
      const message = err instanceof Error ? err.message : String(err);
      if (!/no identity matched/.test(message)) this.damagedWrap = message;
    }
  }

  private recipients(): string[] {
    if (this.needsSession) throw new KeyError('The passphrase has no session key yet (Keyring.adopt was not called).');
    return [...(this.encryption?.recipients ?? []), ...(this.sessionRecipient ? [this.sessionRecipient] : [])].sort();
  }

  private encrypter(): Encrypter {
    const enc = new Encrypter();
    for (const r of this.recipients()) enc.addRecipient(r);
    return enc;
  }

  private decrypter(what: string): Decrypter {
    if (this.identities.length === 0 && this.passphrases.length > 0) throw this.keyError(what, new Error('no identity matched'));
    if (this.identities.length === 0)
      throw this.words.readBack ? this.keyError(what, undefined) : new KeyError(`${what} is encrypted (age). Expected ${this.words.decrypt}.`);
    const dec = new Decrypter();
    for (const i of this.identities) dec.addIdentity(i);
    return dec;
  }

  /** A transform that age-encrypts what goes through it to this run's recipients. */
  encryptStream(): Duplex {
    const enc = this.encrypter();
    return webTransform((input) => enc.encrypt(input));
  }

  /** A transform that decrypts an age file; fails with a KeyError when no identity given opens it. */
  decryptStream(what: string): Duplex {
    const dec = this.decrypter(what);
    return webTransform((input) => dec.decrypt(input).catch((err: unknown) => Promise.reject(this.keyError(what, err))));
  }

  async encryptBytes(body: Buffer): Promise<Buffer> {
    return Buffer.from(await this.encrypter().encrypt(body));
  }

  async decryptBytes(body: Buffer, what: string): Promise<Buffer> {
    const dec = this.decrypter(what);
    try {
      return Buffer.from(await dec.decrypt(body));
    } catch (err) {
      throw this.keyError(what, err);
    }
  }

  private keyError(what: string, err: unknown): Error {
    const message = err instanceof Error ? err.message : String(err);
    if (this.words.readBack) return new KeyError(`${what} is encrypted (age) and cannot be read back by this backup. Expected ${this.words.readBack}.`);
    if (/no identity matched/.test(message) && this.damagedWrap) {
      return new KeyError(
        `${what} cannot be decrypted: the passphrase's wrapped key in its envelope is damaged (${this.damagedWrap}), so no passphrase opens it. Expected an intact set, or an identity it was encrypted to.`,
      );
    }
    if (/no identity matched/.test(message)) {
      return new KeyError(
        `${what} cannot be decrypted with the key or passphrase given: it was encrypted for another. Expected the identity or passphrase it was made with (${this.words.decrypt}).`,
      );
    }
    return new KeyError(`${what} cannot be decrypted: ${message}.`);
  }

  /**
   * Lets the dedupe record be sealed with this host's secret (dedupe-key.ts) when no passphrase gives
   * one: a backup with recipients only then reuses blobs of sets made on this host, and no others.
   */
  useHostKey(key: Buffer | undefined): void {
    this.hostKey = key;
  }

  /**
   * The key of the dedupe record: HMAC-SHA256, keyed by a secret only this backup holds (the passphrase's
   * session identity, else this host's key), of the sorted recipients. A record is trusted to name blobs
   * to reuse, so one that anyone with the public keys could seal would let them point a content digest
   * at a junk blob (dedupe poisoning). Undefined when there is no secret: no record, no reuse.
   */
  private dedupeKey(): Buffer | undefined {
    const secret = this.sessionIdentity ? Buffer.from(this.sessionIdentity) : this.hostKey;
    if (!secret) return undefined;
    return createHmac('sha256', secret)
      .update(`container-snapshot dedupe v2\n${this.recipients().join('\n')}`)
      .digest();
  }

  /** The dedupe record sealed (AES-256-GCM), as base64; undefined when this run has no secret to seal it with. */
  sealRecord(record: unknown): string | undefined {
    const key = this.dedupeKey();
    if (!key) return undefined;
    const nonce = randomBytes(GCM_NONCE);
    const cipher = createCipheriv('aes-256-gcm', key, nonce);
    const body = Buffer.concat([cipher.update(JSON.stringify(record)), cipher.final()]);
    return Buffer.concat([nonce, cipher.getAuthTag(), body]).toString('base64');
  }

  /** The dedupe record, when it was sealed with this run's secret and recipients; undefined otherwise. */
  openRecord(sealed: string): unknown {
    const key = this.dedupeKey();
    if (!key) return undefined;
    try {
      const raw = Buffer.from(sealed, 'base64');
      const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, GCM_NONCE));
      decipher.setAuthTag(raw.subarray(GCM_NONCE, GCM_NONCE + GCM_TAG));
      return JSON.parse(Buffer.concat([decipher.update(raw.subarray(GCM_NONCE + GCM_TAG)), decipher.final()]).toString('utf8')) as unknown;
    } catch {
      return undefined;
    }
  }
}
