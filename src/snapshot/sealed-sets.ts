import { KeyError, type Keyring } from '../crypto/keyring.js';
import type { Destination } from '../destinations/types.js';
import {
  ManifestError,
  SET_AGE_MEDIA_TYPE,
  SET_MEDIA_TYPE,
  SetDigestError,
  setBlobs,
  setOrigin,
  summarize,
  type BlobDescriptor,
  type SetEnvelope,
  type SetSummary,
  type SnapshotSet,
} from './manifest.js';
import { parseCheckedSet } from './set-parse.js';
import { sha256Digest } from '../oci/digest.js';

/** The annotation of a set's descriptor (dir:, registry:, artifact:) that holds its clear envelope, as JSON. */
export const ENVELOPE_ANNOTATION = 'container-snapshot.encryption';
/**
 * The sha256 of the envelope annotation's exact text. A prune sweeps by the envelope's blob list
 * without a key, so a changed character there must make the set damaged, never a list of blobs to delete.
 */
export const ENVELOPE_DIGEST_ANNOTATION = 'container-snapshot.encryption.digest';
const CREATED = 'org.opencontainers.image.created';

/** A set document as a destination stores it: its bytes, their media type, and what its descriptor adds. */
export interface SealedDocument {
  body: Buffer;
  mediaType: string;
  annotations: Record<string, string>;
}

/**
 * What a backup needs of an earlier set to reuse its blobs: each container's layers and, by mount
 * point, its volumes. Kept in the envelope sealed with a secret of the backup's (Keyring.sealRecord:
 * the passphrase's session key, else this host's key), so that blobs are reused although age
 * ciphertext is never the same twice, and only on the word of a record the backup itself sealed.
 * A chunked volume's blob lists its chunks: each an age file under its stored digest, found here by
 * its content digest, which never appears in clear (the envelope lists stored digests only).
 */
export interface DedupeRecord {
  containers: Array<{ name: string; image: { layers: BlobDescriptor[] }; volumes: Array<{ destination: string; blob: BlobDescriptor }> }>;
}

function dedupeRecord(set: SnapshotSet): DedupeRecord {
  return {
    containers: set.containers.map((c) => ({
      name: c.name,
      image: { layers: c.image.layers },
      volumes: c.volumes.map((v) => ({ destination: v.destination, blob: v.blob })),
    })),
  };
}

/** The set document as JSON; encrypted with age, with its clear envelope, when the keyring encrypts. */
export async function sealSet(set: SnapshotSet, keyring: Keyring | undefined): Promise<SealedDocument> {
  const json = Buffer.from(`${JSON.stringify(set, null, 2)}\n`);
  if (!keyring?.encrypting) return { body: json, mediaType: SET_MEDIA_TYPE, annotations: {} };
  const summary = summarize(set);
  const envelope: SetEnvelope = {
    format: 'age',
    containers: summary.containers,
    bytes: summary.bytes,
    blobs: setBlobs(set).map((b) => b.digest),
    ...(keyring.passphraseKey ? { passphraseKey: keyring.passphraseKey } : {}),
    ...(summary.origin ? { origin: summary.origin } : {}),
  };
  const dedupe = keyring.sealRecord(dedupeRecord(set));
  if (dedupe) envelope.dedupe = dedupe;
  const text = JSON.stringify(envelope);
  const annotations = { [CREATED]: set.created, [ENVELOPE_ANNOTATION]: text, [ENVELOPE_DIGEST_ANNOTATION]: sha256Digest(Buffer.from(text)) };
  return { body: await keyring.encryptBytes(json), mediaType: SET_AGE_MEDIA_TYPE, annotations };
}

/**
 * The clear envelope of an encrypted set's descriptor. Throws ManifestError when it is absent,
 * malformed, or not the text its digest annotation names (a damaged set: nothing may be swept on its word).
 */
export function envelopeOf(annotations: Record<string, string> | undefined, where: string): SetEnvelope {
  const text = annotations?.[ENVELOPE_ANNOTATION];
  if (text !== undefined && sha256Digest(Buffer.from(text)) !== annotations?.[ENVELOPE_DIGEST_ANNOTATION]) {
    throw new ManifestError(
      `Invalid encrypted snapshot at ${where}: its ${ENVELOPE_ANNOTATION} annotation does not match its digest (${ENVELOPE_DIGEST_ANNOTATION}); damaged.`,
    );
  }
  try {
    const env = JSON.parse(text ?? '') as SetEnvelope;
    if (env.format === 'age' && Array.isArray(env.containers) && Array.isArray(env.blobs) && typeof env.bytes === 'number') return env;
  } catch {
    // Said below.
  }
  throw new ManifestError(`Invalid encrypted snapshot at ${where}: its descriptor has no ${ENVELOPE_ANNOTATION} annotation (format age, containers, blobs).`);
}

/**
 * A stored set document read back: its bytes checked against the digest its tag names first, then,
 * when it is encrypted (media type SET_AGE_MEDIA_TYPE), decrypted with the keyring (a passphrase
 * unwraps the set's session key from its envelope). Throws SetDigestError, KeyError or ManifestError.
 */
export async function openSealed(
  body: Buffer,
  descriptor: { mediaType: string; digest: string; size?: number; annotations?: Record<string, string> },
  keyring: Keyring | undefined,
  tag: string,
  location: string,
): Promise<SnapshotSet> {
  if (descriptor.mediaType !== SET_AGE_MEDIA_TYPE) return parseCheckedSet(body, descriptor, tag, location);
  if (sha256Digest(body) !== descriptor.digest || (descriptor.size !== undefined && body.length !== descriptor.size))
    throw new SetDigestError(tag, location, descriptor.digest);
  const what = `Snapshot ${tag} in ${location}`;
  if (!keyring) throw new KeyError(`${what} is encrypted (age). Expected a decryption key.`);
  const envelope = envelopeOf(descriptor.annotations, `${location} ${tag}`);
  await keyring.unlock(envelope.passphraseKey);
  const json = await keyring.decryptBytes(body, what);
  const set = parseCheckedSet(json, { digest: sha256Digest(json) }, tag, location);
  checkEnvelope(set, envelope, `${location} ${tag}`);
  decrypted.add(set);
  return set;
}

/** The set documents openSealed decrypted (each read makes a new object; a clear one is never here). */
const decrypted = new WeakSet<SnapshotSet>();

/** True when `set` was read from an encrypted document. */
export function wasEncrypted(set: SnapshotSet): boolean {
  return decrypted.has(set);
}

/**
 * Throws KeyError when a key was given to read `set` and it was stored in clear: a clear set put under
 * an encrypted store's tag would otherwise be restored in its place without a word (age does not sign).
 */
export function refuseClearWithKey(set: SnapshotSet, keyring: Keyring | undefined, location: string): void {
  if (!keyring?.decrypting || wasEncrypted(set)) return;
  throw new KeyError(
    `Snapshot ${set.tag} in ${location} is not encrypted, yet ${keyring.words.decrypt} was given: a clear set may have been put where an encrypted one was. Not used; expected an encrypted set, or no key to read a clear one.`,
  );
}

/** Throws ManifestError when the clear envelope does not say what the decrypted document does (its blobs, containers, origin where it has one). */
export function checkEnvelope(set: SnapshotSet, envelope: SetEnvelope, where: string): void {
  const same = (a: string[], b: string[]) => JSON.stringify([...a].sort()) === JSON.stringify([...b].sort());
  if (
    !same(
      envelope.blobs,
      setBlobs(set).map((b) => b.digest),
    ) ||
    !same(
      envelope.containers,
      set.containers.map((c) => c.name),
    ) ||
    (envelope.origin !== undefined && envelope.origin !== setOrigin(set.source))
  ) {
    throw new ManifestError(
      `Invalid encrypted snapshot at ${where}: its clear envelope does not match its set document (blobs, containers or origin); damaged.`,
    );
  }
}

/** An encrypted set as listed without its key: tag, time and containers from its clear envelope. */
export function sealedSummary(tag: string, created: string, envelope: SetEnvelope): SetSummary {
  return {
    tag,
    created,
    containers: envelope.containers,
    ...(typeof envelope.origin === 'string' ? { origin: envelope.origin } : {}),
    bytes: envelope.bytes,
    encrypted: true,
    encryption: envelope,
  };
}

/**
 * An earlier set as a backup's history sees it (backup.ts loadHistory): blobs are reused only
 * between sets stored alike. An encrypted run reads an encrypted set's dedupe record (only one
 * sealed for the same recipients opens) and never a clear set; a clear run never an encrypted one.
 */
export async function setForHistory(dest: Destination, summary: SetSummary): Promise<DedupeRecord | undefined> {
  const encrypting = dest.keyring?.encrypting ?? false;
  if (!summary.encryption) return encrypting ? undefined : dest.readSet(summary.tag);
  if (!encrypting || !summary.encryption.dedupe) return undefined;
  const record = dest.keyring?.openRecord(summary.encryption.dedupe) as DedupeRecord | undefined;
  return Array.isArray(record?.containers) ? record : undefined;
}
