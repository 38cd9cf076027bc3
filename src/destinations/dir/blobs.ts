import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { isAlive } from '../../core/process-liveness.js';
import { sha256Digest } from '../../oci/digest.js';
import { DestinationError, type BlobWriter } from '../types.js';
import { FILE_MODE, exists, fsyncPath } from './files.js';
import { tmpOwner, type DirLayout } from './layout.js';

/**
 * The blob store of a dir: destination: blobs/sha256/<hex>, each written under .tmp/ (mode 0600),
 * fsynced, then renamed into place, so a blob file present is a complete one. `label` names the
 * destination in messages.
 */

/**
 * A writer of one blob: write `stream`, then commit(digest, size) moves it to its place (or
 * drops it when that blob is there already); commit throws DestinationError when the size in
 * bytes written is not `size`. abort() drops the partial file.
 */
export async function writeBlob(layout: DirLayout, label: string): Promise<BlobWriter> {
  const tmp = layout.tmpPath('blob', 6);
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
        throw new DestinationError(`${label}: blob ${digest} has ${written} bytes, expected ${size}`);
      }
      const target = layout.blobPath(digest);
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

/** `body` as a blob, fsynced under its digest (a set document, before any tag names it); returns the digest. */
export async function writeBlobBytes(layout: DirLayout, body: Buffer): Promise<string> {
  const digest = sha256Digest(body);
  const tmp = layout.tmpPath('blob');
  try {
    await writeFile(tmp, body, { flag: 'wx', mode: FILE_MODE });
    await chmod(tmp, FILE_MODE);
    await fsyncPath(tmp);
    await rename(tmp, layout.blobPath(digest));
  } finally {
    await rm(tmp, { force: true });
  }
  return digest;
}

/** The blob's bytes, unchecked. Throws DestinationError when it is missing or `digest` is not one. */
export async function readBlob(layout: DirLayout, label: string, digest: string): Promise<Readable> {
  const path = layout.blobPath(digest);
  if (!(await exists(path))) throw new DestinationError(`${label}: blob ${digest} is missing`);
  return createReadStream(path);
}

/** Removes the partial files under .tmp/ of processes on this host that are gone (killed mid-write), telling `warn` of each. */
export async function removeAbandoned(layout: DirLayout, label: string, warn: (message: string) => void): Promise<void> {
  for (const name of await readdir(layout.tmp)) {
    const owner = tmpOwner(name);
    if (owner && owner.host === hostname() && !isAlive(owner.pid, '')) {
      await rm(join(layout.tmp, name), { force: true });
      warn(`Removed ${label} .tmp/${name}, left by an interrupted backup`);
    }
  }
}
