import { randomBytes } from 'node:crypto';
import { processHost } from '../../core/process-liveness.js';
import { join } from 'node:path';
import { DIGEST_RULE, hexOf, isDigest } from '../../oci/digest.js';
import { DestinationError } from '../types.js';

/**
 * Where things are in a dir: destination, laid out like an OCI image layout (image-spec
 * image-layout.md, `blobs/<alg>/<encoded>`):
 *   blobs/sha256/<hex>   every blob once, under its digest, the set documents included
 *   sets/<tag>.json      the tag: a descriptor (media type, digest, size) of its set document
 *   .tmp/                files being written: `<blob|set>-<host>-<pid>-<random hex>[.json]`
 *   locks/               a backup's or a prune's lock (locks.ts)
 */

/** The file name of a blob under blobs/sha256/. Throws DestinationError for anything but a sha256 digest. */
export function blobName(digest: string): string {
  if (!isDigest(digest)) throw new DestinationError(`Invalid digest '${digest}'. Expected ${DIGEST_RULE}.`);
  return hexOf(digest);
}

/** A temporary file name's process: its host and pid; undefined for a name this layout does not make. */
export function tmpOwner(name: string): { host: string; pid: number } | undefined {
  const m = /^(?:blob|set)-(.+)-(\d+)-[0-9a-f]+(?:\.json)?$/.exec(name);
  return m ? { host: m[1], pid: Number(m[2]) } : undefined;
}

/** The paths of the layout under `root` (an absolute path). */
export class DirLayout {
  readonly blobs: string;
  readonly sets: string;
  readonly tmp: string;

  constructor(readonly root: string) {
    this.blobs = join(root, 'blobs', 'sha256');
    this.sets = join(root, 'sets');
    this.tmp = join(root, '.tmp');
  }

  /** Throws DestinationError for anything but a digest. */
  blobPath(digest: string): string {
    return join(this.blobs, blobName(digest));
  }

  /** sets/<tag>.json; `tag` is not checked here. */
  setPath(tag: string): string {
    return join(this.sets, `${tag}.json`);
  }

  /** A new name under .tmp/ for this process: `randomLength` random bytes, as hex, keep it unique. */
  tmpPath(kind: 'blob' | 'set', randomLength = 4): string {
    return join(this.tmp, `${kind}-${processHost()}-${process.pid}-${randomBytes(randomLength).toString('hex')}${kind === 'set' ? '.json' : ''}`);
  }
}
