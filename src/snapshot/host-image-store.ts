/**
 * An image's config and layers read from the engine's own image store on this host, in place of
 * `docker save`. Engine 20.10's save writes every layer of the image into a temporary directory
 * before it sends the first byte (the base image of the benchmark, 415 MB: 3.2 s of the engine's
 * CPU and disk before anything came, then 5.4 s to stream it), while here the store's files are
 * read once, into the blob's pipeline.
 *
 * The classic store of the overlay2 driver (moby image/fs.go, layer/filestore.go,
 * daemon/graphdriver/overlay2; Engine 20.10 and 26.1 without the containerd image store):
 *
 *     <root>/image/overlay2/imagedb/content/sha256/<image ID hex>              the config (its sha256 is the ID)
 *     <root>/image/overlay2/layerdb/sha256/<chain ID hex>/cache-id             the layer's overlay2 directory name
 *     <root>/image/overlay2/layerdb/sha256/<chain ID hex>/tar-split.json.gz    the layer tar's headers and padding
 *     <root>/overlay2/<cache-id>/diff                                          the layer's files
 *
 * A layer's tar is put together as the engine's save puts it together (github.com/vbatts/tar-split
 * tar/asm WriteOutputTarStream): the recorded segments (headers, padding, the end blocks) as they
 * are, each file's bytes from the diff directory in between. Its sha256 is then the layer's diff
 * ID; the caller checks it (storeBlob's `expectContent`) before the blob is kept, so anything this
 * host does not reproduce (a store changed under it, a layout of another version) fails the read,
 * and the caller reads the image with `docker save` instead.
 */
import { createHash } from 'node:crypto';
import { closeSync, constants, createReadStream, fstatSync, lstatSync, openSync, readSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, posix } from 'node:path';
import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { createGunzip } from 'node:zlib';
import { hexOf } from '../oci/digest.js';
import { TarWriter } from '../util/tar-writer.js';

/** A read of the store that cannot go on (a file missing, changed or not as recorded): the caller reads the image with `docker save`. */
export class HostStoreError extends Error {
  override name = 'HostStoreError';
}

/** tar-split storage.Entry types (tar/storage/entry.go): a file's name, size and CRC-64; a raw segment of the archive. */
const FILE_TYPE = 1;
const SEGMENT_TYPE = 2;

/** One line of a tar-split file (tar/storage/entry.go Entry, JSON): `payload` is a segment's bytes or a file's CRC-64, base64. */
interface TarSplitEntry {
  type: number;
  name?: string;
  /** The name's bytes (base64) where they are not UTF-8. */
  name_raw?: string;
  size?: number;
  payload?: string | null;
}

/** Where an image's layer lives in the store: its diff ID, its tar-split file and its files. */
export interface HostLayer {
  diffId: string;
  tarSplit: string;
  diff: string;
}

/**
 * The chain IDs of a stack of layers (OCI image-spec config.md "ChainID": the first is its diff
 * ID, each next one the sha256 of `<chain ID below> <diff ID>`), as `sha256:<hex>` strings.
 */
export function chainIds(diffIds: readonly string[]): string[] {
  const out: string[] = [];
  for (const diffId of diffIds) {
    const below = out.at(-1);
    out.push(below ? `sha256:${createHash('sha256').update(`${below} ${diffId}`).digest('hex')}` : diffId);
  }
  return out;
}

/**
 * The engine's data root, from a container's or an image's overlay2 directory
 * (`<root>/overlay2/<id>/diff`, GraphDriver.Data.UpperDir of inspect); undefined for any other
 * driver or shape. Whether this host can read it is found out by reading it.
 */
export function imageStoreRoot(driver: { Name?: string; Data?: Record<string, string | undefined> | null } | undefined): string | undefined {
  const upper = driver?.Data?.UpperDir;
  if (driver?.Name !== 'overlay2' || !upper || !isAbsolute(upper)) return undefined;
  const layerDir = dirname(upper);
  if (posix.basename(upper) !== 'diff' || posix.basename(dirname(layerDir)) !== 'overlay2') return undefined;
  return dirname(dirname(layerDir));
}

/** The raw config of image `imageId` (`sha256:<hex>`) from the store at `root`; undefined when it is not there or its digest is not the ID. */
export async function readHostConfig(root: string, imageId: string): Promise<Buffer | undefined> {
  const hex = /^sha256:([0-9a-f]{64})$/.exec(imageId)?.[1];
  if (!hex) return undefined;
  try {
    const bytes = await readFile(join(root, 'image', 'overlay2', 'imagedb', 'content', 'sha256', hex));
    return createHash('sha256').update(bytes).digest('hex') === hex ? bytes : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Where each layer of a stack (`diffIds`, bottom first) lives in the store at `root`. Throws a
 * HostStoreError naming the first layer the store does not hold readably (its cache-id, its
 * tar-split file or its diff directory missing or unreadable).
 */
export async function hostLayers(root: string, diffIds: readonly string[]): Promise<HostLayer[]> {
  const chains = chainIds(diffIds);
  const layers: HostLayer[] = [];
  for (const [i, diffId] of diffIds.entries()) {
    const dir = join(root, 'image', 'overlay2', 'layerdb', 'sha256', hexOf(chains[i]));
    try {
      const cacheId = (await readFile(join(dir, 'cache-id'), 'utf8')).trim();
      if (!/^[0-9a-zA-Z_-]+$/.test(cacheId)) throw new Error(`cache-id ${JSON.stringify(cacheId)}`);
      const layer = { diffId, tarSplit: join(dir, 'tar-split.json.gz'), diff: join(root, 'overlay2', cacheId, 'diff') };
      closeSync(openSync(layer.tarSplit, 'r'));
      closeSync(openSync(layer.diff, constants.O_RDONLY | constants.O_DIRECTORY));
      layers.push(layer);
    } catch (err) {
      throw new HostStoreError(`layer ${i + 1} (${diffId}) is not readable in the engine's store at ${root}: ${(err as Error).message}`);
    }
  }
  return layers;
}

/** The entries of a tar-split file, one per line of its gunzipped JSON, in order. Throws on a line that is not JSON. */
async function* tarSplitEntries(path: string): AsyncGenerator<TarSplitEntry> {
  const file = createReadStream(path);
  const lines = createGunzip();
  // The file's read error fails the reader of the gunzipped lines.
  file.on('error', (err) => lines.destroy(err));
  file.pipe(lines);
  // A character cut between two pieces is decoded whole.
  const text = new StringDecoder('utf8');
  let carry = '';
  try {
    for await (const chunk of lines) {
      const parts = (carry + text.write(chunk as Buffer)).split('\n');
      carry = parts.pop()!;
      for (const line of parts) if (line) yield JSON.parse(line) as TarSplitEntry;
    }
    carry += text.end();
    if (carry) yield JSON.parse(carry) as TarSplitEntry;
  } finally {
    file.destroy();
  }
}

/**
 * A file entry's path below a layer's diff directory, as bytes in a latin1 string (a name tar-split
 * gives as `name_raw` is not UTF-8): its name cleaned as rooted there, so a `..` stops at the
 * directory, as the engine's own path getter joins it (tar-split storage.NewPathFileGetter).
 */
function entryName(e: TarSplitEntry): string {
  const bytes = e.name_raw !== undefined ? Buffer.from(e.name_raw, 'base64') : Buffer.from(e.name ?? '', 'utf8');
  return posix.normalize(`/${bytes.toString('latin1')}`);
}

/**
 * Opens the files of one layer's diff directory by entry name, never through a symlink: each
 * directory above a file is lstat'ed once (a layer's own symlink `d -> /dev` must not make `d/x` a
 * host path), and the file itself is opened with O_NOFOLLOW.
 */
class DiffFiles {
  private readonly dirs = new Set<string>(['/']);

  constructor(private readonly diff: string) {}

  /** The path on this host of a cleaned entry name (entryName). */
  private path(name: string): Buffer {
    return Buffer.concat([Buffer.from(this.diff), Buffer.from(name, 'latin1')]);
  }

  /** Throws a HostStoreError unless `dir` and each directory above it are directories of the layer. */
  private checkDir(dir: string): void {
    if (this.dirs.has(dir)) return;
    this.checkDir(posix.dirname(dir));
    let st;
    try {
      st = lstatSync(this.path(dir));
    } catch (err) {
      throw new HostStoreError(`${this.diff}${dir}: ${(err as Error).message}`);
    }
    if (!st.isDirectory()) throw new HostStoreError(`${this.diff}${dir} is not a directory of the layer`);
    this.dirs.add(dir);
  }

  /** A descriptor of the regular file `name` (never a FIFO's wait, never a symlink's target); a HostStoreError where it cannot be opened so. */
  open(name: string): number {
    this.checkDir(posix.dirname(name));
    try {
      return openSync(this.path(name), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (err) {
      throw new HostStoreError(`${this.diff}${name}: ${(err as Error).message}`);
    }
  }
}

/**
 * Copies `size` bytes of the regular file `name` of `files` into `tar`, read in place into its
 * batches. Throws a HostStoreError when it is not a regular file of exactly `size` bytes or ends
 * early, and `signal`'s reason once it is aborted (checked at each MiB).
 */
async function copyFile(tar: TarWriter, files: DiffFiles, name: string, size: number, signal?: AbortSignal): Promise<void> {
  const fd = files.open(name);
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.size !== size) throw new HostStoreError(`${name}: not a regular file of ${size} bytes as recorded`);
    let at = 0;
    while (at < size) {
      signal?.throwIfAborted();
      const room = tar.room();
      const n = readSync(fd, room, 0, Math.min(room.length, size - at), at);
      if (n === 0) throw new HostStoreError(`${name}: ended after ${at} of ${size} bytes`);
      at += n;
      await tar.commit(n);
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * The tar of `layer` as the engine's save gives it, streamed: tar-split's segments and the diff
 * directory's files in their order, a MiB at a time. The stream fails with a
 * HostStoreError (a file missing or not as recorded, an entry of a type tar-split does not
 * write), the tar-split file's read or parse error, or `signal`'s reason once aborted.
 */
export function hostLayerTar(layer: HostLayer, signal?: AbortSignal): Readable {
  const tar = new TarWriter();
  const files = new DiffFiles(layer.diff);
  const build = async () => {
    for await (const e of tarSplitEntries(layer.tarSplit)) {
      signal?.throwIfAborted();
      if (e.type === SEGMENT_TYPE) {
        if (e.payload) await tar.write(Buffer.from(e.payload, 'base64'));
      } else if (e.type === FILE_TYPE) {
        if ((e.size ?? 0) > 0) await copyFile(tar, files, entryName(e), e.size!, signal);
      } else throw new HostStoreError(`${layer.tarSplit}: an entry of unknown type ${e.type}`);
    }
    tar.end();
  };
  build().catch((err: Error) => {
    // Destroyed already: its reader failed (a destination's error), which is no fault of the store.
    if (!tar.stream.destroyed) tar.destroy(signal?.aborted ? err : storeError(err, layer.tarSplit));
  });
  return tar.stream;
}

/**
 * `err` of a read of the store as a HostStoreError where it is the store's (a file that does not
 * read: an errno code; a tar-split file that does not gunzip, a zlib code, or parse); any other
 * error (a fault of this code) as it is, so that it fails the backup instead of a quiet fallback.
 */
function storeError(err: Error, path: string): Error {
  if (err instanceof HostStoreError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  const theStore = err instanceof SyntaxError || (typeof code === 'string' && /^(E[A-Z]+|Z_[A-Z_]+)$/.test(code));
  return theStore ? new HostStoreError(`${path}: ${err.message}`, { cause: err }) : err;
}

/** The length in bytes of the tar `hostLayerTar` makes of `layer` (its segments and file sizes, from the tar-split file); a HostStoreError where that file does not read, `signal`'s reason once aborted. */
export async function hostLayerSize(layer: HostLayer, signal?: AbortSignal): Promise<number> {
  let bytes = 0;
  try {
    for await (const e of tarSplitEntries(layer.tarSplit)) {
      signal?.throwIfAborted();
      if (e.type === SEGMENT_TYPE && e.payload) bytes += Buffer.byteLength(e.payload, 'base64');
      else if (e.type === FILE_TYPE) bytes += e.size ?? 0;
    }
  } catch (err) {
    signal?.throwIfAborted();
    throw storeError(err as Error, layer.tarSplit);
  }
  return bytes;
}
