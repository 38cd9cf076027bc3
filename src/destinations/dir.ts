import { createReadStream, createWriteStream } from 'node:fs';
import { access, chmod, link, mkdir, open, readdir, readFile, rename, rm, stat, writeFile, constants } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { isAlive } from '../core/recovery.js';
import { dirname, join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { once } from 'node:events';
import {
  ManifestError,
  SET_AGE_MEDIA_TYPE,
  SET_MEDIA_TYPE,
  SetDigestError,
  damagedSummary,
  newestFirst,
  parseSet,
  setBlobs,
  summarize,
  type SetDescriptor,
  type SetSummary,
  type SnapshotSet,
} from '../snapshot/manifest.js';
import { DIGEST_RULE, hexOf, isDigest, sha256Digest } from '../oci/digest.js';
import { KeyError, type Keyring } from '../crypto/keyring.js';
import { envelopeOf, openSealed, sealSet, sealedSummary } from '../snapshot/sealed-sets.js';
import { DestinationError, type BlobWriter, type Destination, type SetReceipt, type SweepResult } from './types.js';
import { liveLocks, takeLock, waitForNone } from './dir-locks.js';

const CREATED = 'org.opencontainers.image.created';
/** A set document is a few kB per container; anything far larger is not one. */
const SET_LIMIT = 64 << 20;
/** How long a backup waits for a prune's sweep (file deletions) to end. */
const PRUNE_WAIT_MS = 120_000;

/** What sets/<tag>.json holds: a descriptor of the set document (current), or the document itself (earlier versions, unchecked). */
type SetRecord = { descriptor: SetDescriptor } | { legacy: string };

/** Reads sets/<tag>.json. Throws ManifestError when it is neither a descriptor nor a set document. */
export function parseSetRecord(text: string, where: string): SetRecord {
  let doc: Partial<SetDescriptor> & { schemaVersion?: unknown };
  try {
    doc = JSON.parse(text) as typeof doc;
  } catch (err) {
    throw new ManifestError(`Invalid snapshot record at ${where}: ${(err as Error).message}`);
  }
  if (doc?.schemaVersion !== undefined) return { legacy: text };
  const mediaType = doc?.mediaType === SET_AGE_MEDIA_TYPE ? SET_AGE_MEDIA_TYPE : SET_MEDIA_TYPE;
  if (doc?.mediaType !== mediaType || !isDigest(doc.digest) || !Number.isSafeInteger(doc.size) || (doc.size ?? -1) < 0) {
    throw new ManifestError(`Invalid snapshot record at ${where}: expected a descriptor of a ${SET_MEDIA_TYPE} document (digest ${DIGEST_RULE} and size).`);
  }
  return { descriptor: { mediaType, digest: doc.digest, size: doc.size!, annotations: doc.annotations } };
}

/** The file name of a blob under blobs/sha256/ (OCI image-layout). Throws DestinationError for anything but a digest. */
function blobName(digest: string): string {
  if (!isDigest(digest)) throw new DestinationError(`Invalid digest '${digest}'. Expected ${DIGEST_RULE}.`);
  return hexOf(digest);
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** Sets hold the containers' environments (passwords): only the owner reads them, whatever the umask. */
const DIR_MODE = 0o700;
const FILE_MODE = 0o600;

/** mkdir that makes a private directory, and leaves an existing one as it is. */
async function makeDir(path: string): Promise<void> {
  await mkdir(path, { mode: DIR_MODE });
  await chmod(path, DIR_MODE);
}

/**
 * mkdir -p that gives up: Node's recursive mkdir loops forever where a parent exists but
 * refuses children with ENOENT (procfs, some FUSE mounts).
 */
async function ensureDir(path: string, depth = 0): Promise<void> {
  try {
    await makeDir(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' && (await stat(path)).isDirectory()) return;
    if (code !== 'ENOENT' || depth > 64 || dirname(path) === path) throw err;
    await ensureDir(dirname(path), depth + 1);
    await makeDir(path).catch(async (again: NodeJS.ErrnoException) => {
      if (again.code !== 'EEXIST' || !(await stat(path)).isDirectory()) throw again;
    });
  }
}

/** The path itself or its nearest existing ancestor, with what stat says of it. */
async function nearestExisting(path: string): Promise<{ path: string; isDirectory: boolean }> {
  for (let p = path; ; p = dirname(p)) {
    try {
      return { path: p, isDirectory: (await stat(p)).isDirectory() };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if ((code !== 'ENOENT' && code !== 'ENOTDIR') || dirname(p) === p) throw err;
    }
  }
}

async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * A content-addressed directory, laid out like an OCI image layout:
 *   blobs/sha256/<hex>   every blob once, under its digest, the set documents included
 *   sets/<tag>.json      the tag: a descriptor (media type, digest, size) of its set document,
 *                        written last (temp file, fsync, link)
 *   .tmp/                blobs being written
 *   locks/               a backup's or a prune's lock (dir-locks.ts)
 * A set document is used only once its bytes match the digest its tag names.
 */
export class DirDestination implements Destination {
  readonly root: string;
  private readonly unchecked = new Set<string>();
  private backupLock?: string;

  constructor(
    readonly label: string,
    path: string,
    private readonly warn: (message: string) => void = () => undefined,
    readonly keyring?: Keyring,
  ) {
    this.root = resolve(path);
  }

  private blobPath(digest: string): string {
    return join(this.root, 'blobs', 'sha256', blobName(digest));
  }

  private setPath(tag: string): string {
    return join(this.root, 'sets', `${tag}.json`);
  }

  /**
   * `write` makes the layout (new directories 0700) and clears what dead processes left; `plan` only
   * checks that the directory, or its nearest existing ancestor, is a directory this process may write.
   */
  async check(accessMode: 'read' | 'write' | 'plan'): Promise<void> {
    if (accessMode === 'plan') {
      try {
        const near = await nearestExisting(this.root);
        if (!near.isDirectory) throw new Error(`${near.path} is not a directory`);
        await access(near.path, constants.W_OK | constants.X_OK);
      } catch (err) {
        throw new DestinationError(`Cannot write to ${this.label}: ${(err as Error).message}`);
      }
      return;
    }
    if (accessMode === 'write') {
      try {
        await this.warnIfShared();
        await ensureDir(join(this.root, 'blobs', 'sha256'));
        await ensureDir(join(this.root, 'sets'));
        await ensureDir(join(this.root, '.tmp'));
        await access(this.root, constants.W_OK);
        await this.removeAbandoned();
        await this.lockForBackup();
      } catch (err) {
        throw new DestinationError(`Cannot write to ${this.label}: ${(err as Error).message}`);
      }
      return;
    }
    try {
      const s = await stat(this.root);
      if (!s.isDirectory()) throw new Error('not a directory');
    } catch (err) {
      throw new DestinationError(`Cannot read ${this.label}: ${(err as Error).message}`);
    }
  }

  /** A prune sweeping now ends first; one that starts later sees this lock and sweeps nothing. */
  private async lockForBackup(): Promise<void> {
    if (this.backupLock) return;
    this.backupLock = await takeLock(this.root, 'backup');
    try {
      await waitForNone(this.root, 'prune', PRUNE_WAIT_MS, this.label);
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  async close(): Promise<void> {
    const lock = this.backupLock;
    this.backupLock = undefined;
    if (lock) await rm(lock, { force: true });
  }

  /** An existing directory keeps its mode; one others may enter is worth a word. */
  private async warnIfShared(): Promise<void> {
    const mode = await stat(this.root).then((s) => s.mode & 0o777, () => undefined);
    if (mode !== undefined && (mode & 0o077) !== 0) {
      this.warn(`${this.label} is open to other users (mode ${mode.toString(8).padStart(4, '0')}); the files this backup writes there are 0600, but names and older files may be visible. Expected 0700 (chmod 700 ${this.root}).`);
    }
  }

  /** Partial files of processes on this host that are gone (killed mid-write). */
  private async removeAbandoned(): Promise<void> {
    for (const name of await readdir(join(this.root, '.tmp'))) {
      const m = /^(?:blob|set)-(.+)-(\d+)-[0-9a-f]+(?:\.json)?$/.exec(name);
      if (m && m[1] === hostname() && !isAlive(Number(m[2]), '')) {
        await rm(join(this.root, '.tmp', name), { force: true });
        this.warn(`Removed ${this.label} .tmp/${name}, left by an interrupted backup`);
      }
    }
  }

  hasBlob(_scope: unknown, digest: string): Promise<boolean> {
    return exists(this.blobPath(digest));
  }

  async writeBlob(): Promise<BlobWriter> {
    const tmp = join(this.root, '.tmp', `blob-${hostname()}-${process.pid}-${randomBytes(6).toString('hex')}`);
    const stream = createWriteStream(tmp, { flags: 'wx', mode: FILE_MODE });
    await once(stream, 'open');
    await chmod(tmp, FILE_MODE);
    const discard = () => rm(tmp, { force: true });
    return {
      stream,
      commit: async (digest, size) => {
        if (!stream.writableFinished) await once(stream, 'finish');
        const written = (await stat(tmp)).size;
        if (written !== size) {
          await discard();
          throw new DestinationError(`${this.label}: blob ${digest} has ${written} bytes, expected ${size}`);
        }
        const target = this.blobPath(digest);
        if (await exists(target)) {
          await discard();
          return;
        }
        await fsyncPath(tmp);
        await rename(tmp, target);
      },
      abort: async () => {
        stream.destroy();
        await discard();
      },
    };
  }

  async readBlob(_scope: unknown, digest: string): Promise<Readable> {
    const path = this.blobPath(digest);
    if (!(await exists(path))) throw new DestinationError(`${this.label}: blob ${digest} is missing`);
    return createReadStream(path);
  }

  hasSet(tag: string): Promise<boolean> {
    return exists(this.setPath(tag));
  }

  private tmpName(kind: 'blob' | 'set'): string {
    return join(this.root, '.tmp', `${kind}-${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}${kind === 'set' ? '.json' : ''}`);
  }

  /** The set document as a blob: fsynced under its digest before any tag names it. */
  private async writeDocument(body: Buffer): Promise<string> {
    const digest = sha256Digest(body);
    const tmp = this.tmpName('blob');
    try {
      await writeFile(tmp, body, { flag: 'wx', mode: FILE_MODE });
      await chmod(tmp, FILE_MODE);
      await fsyncPath(tmp);
      await rename(tmp, this.blobPath(digest));
    } finally {
      await rm(tmp, { force: true });
    }
    return digest;
  }

  async writeSet(set: SnapshotSet): Promise<SetReceipt> {
    const target = this.setPath(set.tag);
    const { body, mediaType, annotations } = await sealSet(set, this.keyring);
    const tmp = this.tmpName('set');
    try {
      const descriptor: SetDescriptor = { mediaType, digest: await this.writeDocument(body), size: body.length, annotations: { [CREATED]: set.created, ...annotations } };
      await writeFile(tmp, `${JSON.stringify(descriptor, null, 2)}\n`, { flag: 'wx', mode: FILE_MODE });
      await chmod(tmp, FILE_MODE);
      await fsyncPath(tmp);
      await fsyncPath(join(this.root, 'blobs', 'sha256'));
      // link() fails if the target exists: two backups with one tag can't overwrite each other.
      await link(tmp, target);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new DestinationError(`${this.label}: snapshot ${set.tag} already exists`);
      throw err;
    } finally {
      // Also after a failed write (a full disk): a partial set file is this run's own, not an interrupted one's.
      await rm(tmp, { force: true });
    }
    await fsyncPath(join(this.root, 'sets'));
    return { refs: Object.fromEntries(set.containers.map((c) => [c.name, { ref: `${target}#${c.name}`, digest: c.image.id }])) };
  }

  private async readRecord(tag: string): Promise<SetRecord | undefined> {
    let text: string;
    try {
      text = await readFile(this.setPath(tag), 'utf8');
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
      return await readFile(this.blobPath(digest));
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
    return summarize(await this.readDocument(tag, record));
  }

  private async readDocument(tag: string, record: SetRecord): Promise<SnapshotSet> {
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

  async readSet(tag: string): Promise<SnapshotSet | undefined> {
    if (tag === 'latest') {
      const [newest] = await this.listSets();
      return newest ? this.readSet(newest.tag) : undefined;
    }
    const record = await this.readRecord(tag);
    return record && this.readDocument(tag, record);
  }

  /** When a tag file was written, for ordering a set whose record cannot be read. */
  private async writtenAt(name: string): Promise<string | undefined> {
    return stat(join(this.root, 'sets', name)).then((s) => s.mtime.toISOString(), () => undefined);
  }

  async listSets(): Promise<SetSummary[]> {
    let names: string[];
    try {
      names = await readdir(join(this.root, 'sets'));
    } catch {
      return [];
    }
    const sets: SetSummary[] = [];
    for (const name of names.filter((n) => n.endsWith('.json'))) {
      const tag = name.slice(0, -'.json'.length);
      let record: SetRecord | undefined;
      try {
        record = await this.readRecord(tag);
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
  async deleteSet(tag: string): Promise<void> {
    await rm(this.setPath(tag), { force: true });
    await fsyncPath(join(this.root, 'sets'));
  }

  /** Every blob a set other than `without` names (its document included); a reason instead when a set cannot be read. */
  private async mark(without: string[]): Promise<Set<string> | string> {
    const marked = new Set<string>();
    const names = await readdir(join(this.root, 'sets')).catch(() => [] as string[]);
    for (const tag of names.filter((n) => n.endsWith('.json')).map((n) => n.slice(0, -'.json'.length))) {
      if (without.includes(tag)) continue;
      try {
        const record = await this.readRecord(tag);
        if (!record) continue;
        if ('descriptor' in record) marked.add(record.descriptor.digest);
        for (const digest of await this.blobsOf(tag, record)) marked.add(digest);
      } catch (err) {
        return `snapshot ${tag} cannot be read (${(err as Error).message}), so the blobs it needs are unknown`;
      }
    }
    return marked;
  }

  /**
   * The stored digests a set references: an encrypted set's from its clear envelope (checked against
   * its digest), so a prune needs no key; with a key that opens the document, the envelope is also
   * checked against it (openSealed throws on a mismatch, and the sweep is skipped).
   */
  private async blobsOf(tag: string, record: SetRecord): Promise<string[]> {
    if ('descriptor' in record && record.descriptor.mediaType === SET_AGE_MEDIA_TYPE) {
      const { blobs } = envelopeOf(record.descriptor.annotations, `${this.label} sets/${tag}.json`);
      if (!this.keyring?.decrypting) return blobs;
      const set = await this.readDocument(tag, record).catch((err: unknown) => {
        if (err instanceof KeyError) return undefined;
        throw err;
      });
      return set ? [...blobs, ...setBlobs(set).map((b) => b.digest)] : blobs;
    }
    return setBlobs(await this.readDocument(tag, record)).map((b) => b.digest);
  }

  /**
   * Mark and sweep under a prune lock: files of blobs/sha256 that no remaining set names. Nothing
   * is swept while a backup holds its lock (it may be about to name a blob that looks unused), nor
   * while a set cannot be read. .tmp/ is never touched.
   */
  async sweep({ without, dryRun }: { without: string[]; dryRun: boolean }): Promise<SweepResult> {
    const lock = dryRun ? undefined : await takeLock(this.root, 'prune');
    try {
      const backups = await liveLocks(this.root, 'backup', this.backupLock);
      if (backups.length > 0 && !dryRun) return { blobs: 0, bytes: 0, skipped: `a backup is writing to ${this.label} (locks/${backups[0]}); unused blobs are swept by a later prune` };
      const marked = await this.mark(without);
      if (typeof marked === 'string') return { blobs: 0, bytes: 0, skipped: marked };
      const dir = join(this.root, 'blobs', 'sha256');
      let blobs = 0;
      let bytes = 0;
      for (const hex of await readdir(dir).catch(() => [] as string[])) {
        if (!isDigest(`sha256:${hex}`) || marked.has(`sha256:${hex}`)) continue;
        const size = await stat(join(dir, hex)).then((st) => st.size, () => undefined);
        if (size === undefined) continue;
        if (!dryRun) await rm(join(dir, hex), { force: true });
        blobs++;
        bytes += size;
      }
      return { blobs, bytes };
    } finally {
      if (lock) await rm(lock, { force: true });
    }
  }
}
