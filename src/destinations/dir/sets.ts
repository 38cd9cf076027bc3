import { chmod, link, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  SET_AGE_MEDIA_TYPE,
  SetDigestError,
  damagedSummary,
  newestFirst,
  summarize,
  type SetDescriptor,
  type SetSummary,
  type SnapshotSet,
} from '../../snapshot/manifest.js';
import { parseSet } from '../../snapshot/set-parse.js';
import { sha256Digest } from '../../oci/digest.js';
import type { Keyring } from '../../crypto/keyring.js';
import { envelopeOf, openSealed, sealSet, sealedSummary } from '../../snapshot/sealed-sets.js';
import { DestinationError, type SetReceipt } from '../types.js';
import { writeBlobBytes } from './blobs.js';
import { FILE_MODE, exists, fsyncPath } from './files.js';
import { blobName, type DirLayout } from './layout.js';
import { CREATED, parseSetRecord, type SetRecord } from './set-record.js';

/** A set document is a few kB per container; anything far larger is not one (bytes). */
const SET_LIMIT = 64 << 20;

/**
 * The sets of a dir: destination: each set document a blob, and its tag sets/<tag>.json a
 * descriptor of it, written last (temp file, fsync, link). A set document is used only once its
 * bytes match the digest its tag names (SetDigestError otherwise); an encrypted one is opened
 * with `keyring`. `warn` is told once per tag of a set of an earlier version, which has no digest.
 */
export class SetStore {
  private readonly unchecked = new Set<string>();

  constructor(
    private readonly layout: DirLayout,
    private readonly label: string,
    private readonly keyring: Keyring | undefined,
    private readonly warn: (message: string) => void,
  ) {}

  /** Whether sets/<tag>.json exists (whatever it holds). */
  has(tag: string): Promise<boolean> {
    return exists(this.layout.setPath(tag));
  }

  /** The tags, from the names of sets/; [] when there is no sets/. Throws DestinationError when sets/ cannot be read. */
  async tags(): Promise<string[]> {
    const names = await this.setFiles();
    return names.filter((n) => n.endsWith('.json')).map((n) => n.slice(0, -'.json'.length));
  }

  /**
   * The names in sets/; [] when there is none (ENOENT). Any other failure (EACCES, EIO, ESTALE,
   * ENOTDIR, EMFILE) is a DestinationError: taken for "no sets", a prune's sweep would delete
   * every blob the sets it could not see need.
   */
  private async setFiles(): Promise<string[]> {
    try {
      return await readdir(this.layout.sets);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return [];
      throw new DestinationError(`${this.label}: the list of snapshots (sets/) cannot be read (${code ?? (err as Error).message})`);
    }
  }

  /** Writes the set's document (sealed when the keyring encrypts), then its tag. Throws DestinationError when the tag exists. */
  async write(set: SnapshotSet): Promise<SetReceipt> {
    const target = this.layout.setPath(set.tag);
    const { body, mediaType, annotations } = await sealSet(set, this.keyring);
    const tmp = this.layout.tmpPath('set');
    try {
      const descriptor: SetDescriptor = {
        mediaType,
        digest: await writeBlobBytes(this.layout, body),
        size: body.length,
        annotations: { [CREATED]: set.created, ...annotations },
      };
      await writeFile(tmp, `${JSON.stringify(descriptor, null, 2)}\n`, { flag: 'wx', mode: FILE_MODE });
      await chmod(tmp, FILE_MODE);
      await fsyncPath(tmp);
      await fsyncPath(this.layout.blobs);
      // link() fails if the target exists: two backups with one tag can't overwrite each other.
      await link(tmp, target);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new DestinationError(`${this.label}: snapshot ${set.tag} already exists`);
      throw err;
    } finally {
      // Also after a failed write (a full disk): a partial set file is this run's own, not an interrupted one's.
      await rm(tmp, { force: true });
    }
    await fsyncPath(this.layout.sets);
    return { refs: Object.fromEntries(set.containers.map((c) => [c.name, { ref: `${target}#${c.name}`, digest: c.image.id }])) };
  }

  /** sets/<tag>.json parsed; undefined when there is none. Throws ManifestError when it is damaged. */
  async record(tag: string): Promise<SetRecord | undefined> {
    let text: string;
    try {
      text = await readFile(this.layout.setPath(tag), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    return parseSetRecord(text, `${this.label} sets/${tag}.json`);
  }

  /** The stored set document's bytes (not checked yet). */
  private async readBody(tag: string, descriptor: SetDescriptor): Promise<Buffer> {
    const { digest, size } = descriptor;
    if (size > SET_LIMIT) throw new SetDigestError(tag, this.label, digest);
    try {
      return await readFile(this.layout.blobPath(digest));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      throw new DestinationError(`Snapshot ${tag} in ${this.label}: its set document ${digest} is missing (blobs/sha256/${blobName(digest)}); not used.`);
    }
  }

  /** A set as listed: an encrypted one from its clear envelope (its document checked against its digest, not decrypted). */
  private async summaryOf(tag: string, record: SetRecord): Promise<SetSummary> {
    if ('descriptor' in record && record.descriptor.mediaType === SET_AGE_MEDIA_TYPE) {
      const { descriptor } = record;
      const envelope = envelopeOf(descriptor.annotations, `${this.label} sets/${tag}.json`);
      const body = await this.readBody(tag, descriptor);
      if (sha256Digest(body) !== descriptor.digest || body.length !== descriptor.size) throw new SetDigestError(tag, this.label, descriptor.digest);
      return sealedSummary(tag, descriptor.annotations?.[CREATED] ?? '', envelope);
    }
    return summarize(await this.document(tag, record));
  }

  /** The set document of `record`, checked against its digest and opened (KeyError when the keyring cannot). */
  async document(tag: string, record: SetRecord): Promise<SnapshotSet> {
    if ('legacy' in record) {
      if (!this.unchecked.has(tag)) {
        this.unchecked.add(tag);
        this.warn(
          `Snapshot ${tag} in ${this.label} was written by an earlier version, without a digest of its set document: it is used, but a change to it cannot be detected. Back up again for a checked set.`,
        );
      }
      return parseSet(record.legacy, `${this.label} sets/${tag}.json`);
    }
    return openSealed(await this.readBody(tag, record.descriptor), record.descriptor, this.keyring, tag, this.label);
  }

  /** The set of `tag` (`latest`: the newest listed); undefined when there is none. */
  async read(tag: string): Promise<SnapshotSet | undefined> {
    if (tag === 'latest') {
      const [newest] = await this.list();
      return newest ? this.read(newest.tag) : undefined;
    }
    const record = await this.record(tag);
    return record && this.document(tag, record);
  }

  /** When a tag file was written, for ordering a set whose record cannot be read. */
  private async writtenAt(name: string): Promise<string | undefined> {
    return stat(join(this.layout.sets, name)).then(
      (s) => s.mtime.toISOString(),
      () => undefined,
    );
  }

  /** Every set, newest first; one that cannot be read is listed as damaged. Throws DestinationError when sets/ cannot be read. */
  async list(): Promise<SetSummary[]> {
    const names = await this.setFiles();
    const sets: SetSummary[] = [];
    for (const name of names.filter((n) => n.endsWith('.json'))) {
      const tag = name.slice(0, -'.json'.length);
      let record: SetRecord | undefined;
      try {
        record = await this.record(tag);
        if (record) sets.push(await this.summaryOf(tag, record));
      } catch (err) {
        // Listed, not skipped: a damaged newest set must not make `latest` an older one in silence.
        const created = record && 'descriptor' in record ? record.descriptor.annotations?.[CREATED] : undefined;
        sets.push(damagedSummary(tag, created ?? (await this.writtenAt(name)), err as Error));
      }
    }
    return sets.sort(newestFirst);
  }

  /** The tag file only: the blobs, the set document among them, go at the next sweep. */
  async delete(tag: string): Promise<void> {
    await rm(this.layout.setPath(tag), { force: true });
    await fsyncPath(this.layout.sets);
  }
}
