import { posix } from 'node:path';
import { Readable, Writable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { putEntry } from '../util/tar-entry.js';
import { SET_SCOPE, type BlobScope, type Destination } from '../destinations/types.js';
import { Digester, hexOf } from '../oci/digest.js';
import { readSmall } from '../util/streams.js';
import { openContent, storeBlob, type StoreTarget } from './blobs.js';
import { IMAGE_CONFIG_MEDIA_TYPE, type BlobDescriptor, type ImageRecord } from './manifest.js';

/**
 * Entries of a `docker save` archive up to this size (bytes) are read into memory as they come
 * (manifest.json, the image config, OCI index files); a larger one in blobs/sha256/ is taken for
 * a layer before it is read. Configs are kBs; a layer under this is matched by its diff ID.
 */
const BUFFERED_ENTRY_MAX = 8 * 1024 * 1024;
const OCI_BLOB = /^blobs\/sha256\/([0-9a-f]{64})$/;

export class ArchiveError extends Error {
  override name = 'ArchiveError';
}

export interface SaveOptions {
  /** The image's layer diff IDs (from inspect), to recognise already-stored layers. */
  diffIds: string[];
  /** Layers every target already holds, by content digest. */
  known: Map<string, BlobDescriptor>;
  /** Media type of the stored layers, which names their compression. */
  layerMediaType: string;
  /** Where the image config goes (the set's scope). */
  configTargets: StoreTarget[];
  /** The config as stored (exclude-env strips variables from it); as the engine gave it when absent. */
  rewriteConfig?: (config: Buffer) => Buffer;
  /** Told as each layer starts to be stored or checked against a stored one (its size in bytes, uncompressed). */
  onLayer?: (bytes: number, known: boolean) => void;
  /** A pass-through that reports a stored layer's progress (its uncompressed size given), after onLayer. */
  meter?: (bytes: number) => Transform;
}

export type SaveResult = { image: Pick<ImageRecord, 'config' | 'layers'>; reused: number; written: number } | { retry: true };

function isLayerCandidate(name: string, size: number, diffIds: Set<string>): boolean {
  if (name.endsWith('/layer.tar')) return true;
  const m = OCI_BLOB.exec(name);
  return Boolean(m && (size > BUFFERED_ENTRY_MAX || diffIds.has(`sha256:${m[1]}`)));
}

/** A stored layer this entry may be, decided from its header alone, before reading it. */
function knownCandidates(name: string, size: number, opts: SaveOptions): BlobDescriptor[] {
  const m = OCI_BLOB.exec(name);
  if (m) {
    const hit = opts.known.get(`sha256:${m[1]}`);
    return hit ? [hit] : [];
  }
  return opts.diffIds.map((d) => opts.known.get(d)).filter((b): b is BlobDescriptor => b !== undefined && b.contentSize === size);
}

/**
 * Reads a `docker save` stream (legacy and OCI-layout archives both carry manifest.json)
 * and stores the image's config and layers. Layers the targets already hold are read
 * and checked but not written again. Returns `retry` in the rare case an entry looked
 * like a stored layer by its size but wasn't: the caller saves again without reuse.
 */
export async function storeSavedImage(source: Readable, targets: StoreTarget[], opts: SaveOptions): Promise<SaveResult> {
  const diffIds = new Set(opts.diffIds);
  const stored = new Map<string, BlobDescriptor>();
  // Entries that are not layer candidates (manifest.json, the config, small layers), up to BUFFERED_ENTRY_MAX bytes each, by path.
  const buffered = new Map<string, Buffer>();
  const links = new Map<string, string>();
  let missed = false;
  let reused = 0;
  let written = 0;
  const extract = tar.extract();
  source.on('error', (err) => extract.destroy(err));
  source.pipe(extract);
  try {
    for await (const tarEntry of extract) {
      const entry = tarEntry as unknown as Readable & { header: tar.Header };
      const name = entry.header.name.replace(/^\.\//, '');
      const size = entry.header.size ?? 0;
      if (entry.header.type === 'symlink' && entry.header.linkname) {
        links.set(name, posix.normalize(posix.join(posix.dirname(name), entry.header.linkname)));
      } else if (entry.header.type === 'link' && entry.header.linkname) {
        links.set(name, entry.header.linkname.replace(/^\.\//, ''));
      }
      if (entry.header.type !== 'file') {
        entry.resume();
        continue;
      }
      if (!isLayerCandidate(name, size, diffIds)) {
        if (size <= BUFFERED_ENTRY_MAX) buffered.set(name, await readSmall(entry, BUFFERED_ENTRY_MAX));
        else entry.resume();
        continue;
      }
      const candidates = knownCandidates(name, size, opts);
      opts.onLayer?.(size, candidates.length > 0);
      if (candidates.length > 0) {
        const digester = new Digester();
        await pipeline(entry, digester, new Writable({ write: (_c, _e, done) => done() }));
        const hit = candidates.find((c) => c.contentDigest === digester.digest);
        if (hit) {
          stored.set(name, hit);
          reused++;
        } else {
          missed = true;
        }
        continue;
      }
      stored.set(name, await storeBlob(entry, targets, opts.layerMediaType, opts.meter?.(size)));
      written++;
    }
  } catch (err) {
    source.destroy();
    extract.destroy();
    throw err;
  }
  if (missed) return { retry: true };
  const manifestText = buffered.get('manifest.json');
  if (!manifestText) throw new ArchiveError('image archive from the engine has no manifest.json (truncated save?)');
  const [manifest] = JSON.parse(manifestText.toString('utf8')) as Array<{ Config: string; Layers: string[] }>;
  if (!manifest?.Config || !Array.isArray(manifest.Layers)) throw new ArchiveError('image archive manifest.json lists no image');
  const resolve = (p: string) => links.get(p) ?? p;
  const configBytes = buffered.get(resolve(manifest.Config));
  if (!configBytes) throw new ArchiveError(`image archive has no config ${manifest.Config}`);
  const config = await storeBlob(Readable.from([opts.rewriteConfig?.(configBytes) ?? configBytes]), opts.configTargets, IMAGE_CONFIG_MEDIA_TYPE);
  const layers: BlobDescriptor[] = [];
  for (const layerPath of manifest.Layers) {
    const path = resolve(layerPath);
    let blob = stored.get(path);
    const bytes = buffered.get(path);
    if (!blob && bytes) {
      blob = await storeBlob(Readable.from([bytes]), targets, opts.layerMediaType);
      stored.set(path, blob);
      written++;
    }
    if (!blob) throw new ArchiveError(`image archive lacks layer ${layerPath}`);
    layers.push(blob);
  }
  const rootfs = (JSON.parse(configBytes.toString('utf8')) as { rootfs?: { diff_ids?: string[] } }).rootfs;
  if (rootfs?.diff_ids?.length !== layers.length) {
    throw new ArchiveError(`image archive has ${layers.length} layers, its config lists ${rootfs?.diff_ids?.length ?? 0}`);
  }
  return { image: { config, layers }, reused, written };
}

async function addEntry(pack: tar.Pack, header: Partial<tar.Header> & { name: string }, source: Readable | Buffer): Promise<void> {
  if (Buffer.isBuffer(source)) {
    await putEntry(pack, header as tar.Header, source);
    return;
  }
  let entry: ReturnType<tar.Pack['entry']>;
  try {
    entry = pack.entry(header as tar.Header);
  } catch (err) {
    // The pack was destroyed (the load failed) while this blob was opened: it is not read on.
    source.destroy();
    throw err;
  }
  await pipeline(source, entry);
}

/**
 * A `docker load` archive (manifest.json, config, one layer.tar per layer) built on the
 * fly from the stored blobs; every blob is checked as it streams, and a mismatch aborts
 * the load before the engine commits the image. The first `held` layers (ones the engine
 * holds with the same layers below: held-layers.ts) are listed in manifest.json but their
 * layer.tar is left out and their blobs are not read; the engine opens a layer.tar only for
 * a layer whose chain ID it lacks (moby image/tarexport/load.go, Engine 20.10 and 26.1 with
 * the classic image store), and fails naming the missing file when it lacks one. `open` opens a
 * layer's checked content (`openContent` by default; the restore's reads larger pieces).
 */
export function loadArchive(
  dest: Destination,
  scope: BlobScope,
  image: Pick<ImageRecord, 'config' | 'layers'>,
  repoTag: string,
  held = 0,
  open: typeof openContent = openContent,
): Readable {
  const pack = tar.pack();
  const build = async () => {
    const configBytes = await readSmall(await openContent(dest, SET_SCOPE, image.config, 'image config'));
    const configName = `${hexOf(image.config.contentDigest)}.json`;
    await addEntry(pack, { name: configName, size: configBytes.length, mode: 0o644 }, configBytes);
    const layerNames: string[] = [];
    const written = new Set<string>();
    for (const [i, layer] of image.layers.entries()) {
      const dir = hexOf(layer.contentDigest);
      layerNames.push(`${dir}/layer.tar`);
      if (i < held || written.has(dir)) continue;
      written.add(dir);
      await addEntry(pack, { name: `${dir}/`, type: 'directory', mode: 0o755 }, Buffer.alloc(0));
      const content = await open(dest, scope, layer, `image layer ${i}`);
      await addEntry(pack, { name: `${dir}/layer.tar`, size: layer.contentSize, mode: 0o644 }, content);
    }
    const manifest = JSON.stringify([{ Config: configName, RepoTags: [repoTag], Layers: layerNames }]);
    await addEntry(pack, { name: 'manifest.json', size: Buffer.byteLength(manifest), mode: 0o644 }, Buffer.from(manifest));
    pack.finalize();
  };
  build().catch((err: Error) => pack.destroy(err));
  return pack as unknown as Readable;
}
