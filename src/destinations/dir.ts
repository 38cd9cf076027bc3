import { createReadStream, createWriteStream } from 'node:fs';
import { access, chmod, link, mkdir, open, readdir, readFile, rename, rm, stat, writeFile, constants } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { isAlive } from '../core/recovery.js';
import { dirname, join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { once } from 'node:events';
import { newestFirst, parseSet, summarize, type SetSummary, type SnapshotSet } from '../snapshot/manifest.js';
import { DestinationError, type BlobWriter, type Destination, type SetReceipt } from './types.js';

const DIGEST = /^sha256:([0-9a-f]{64})$/;

function hexOf(digest: string): string {
  const m = DIGEST.exec(digest);
  if (!m) throw new DestinationError(`Invalid digest '${digest}'. Expected sha256:<64 hex digits>.`);
  return m[1];
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
 *   blobs/sha256/<hex>   every blob once, under its digest
 *   sets/<tag>.json      one manifest per set, written last (temp file, fsync, rename)
 *   .tmp/                blobs being written
 */
export class DirDestination implements Destination {
  readonly root: string;

  constructor(
    readonly label: string,
    path: string,
    private readonly warn: (message: string) => void = () => undefined,
  ) {
    this.root = resolve(path);
  }

  private blobPath(digest: string): string {
    return join(this.root, 'blobs', 'sha256', hexOf(digest));
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

  async writeSet(set: SnapshotSet): Promise<SetReceipt> {
    const target = this.setPath(set.tag);
    const tmp = join(this.root, '.tmp', `set-${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}.json`);
    try {
      await writeFile(tmp, `${JSON.stringify(set, null, 2)}\n`, { flag: 'wx', mode: FILE_MODE });
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

  async readSet(tag: string): Promise<SnapshotSet | undefined> {
    if (tag === 'latest') {
      const [newest] = await this.listSets();
      return newest ? this.readSet(newest.tag) : undefined;
    }
    const path = this.setPath(tag);
    if (!(await exists(path))) return undefined;
    return parseSet(await readFile(path, 'utf8'), `${this.label} sets/${tag}.json`);
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
      try {
        const set = await this.readSet(name.slice(0, -'.json'.length));
        if (set) sets.push(summarize(set));
      } catch (err) {
        this.warn(`Skipping ${this.label} sets/${name}: ${(err as Error).message}`);
      }
    }
    return sets.sort(newestFirst);
  }
}
