import { constants, createGunzip, createGzip, createZstdCompress, createZstdDecompress } from 'node:zlib';
import { PassThrough, Readable, type Duplex, type Transform } from 'node:stream';
import { AGE, KeyError, type Keyring } from '../crypto/keyring.js';
import { pipeline } from 'node:stream/promises';
import type { BlobScope, BlobWriter, Destination } from '../destinations/types.js';
import { ChecksumError, Digester, Verifier } from '../oci/digest.js';
import { drain, fanOut, Gather, GATHER_BYTES, readSmall } from '../util/streams.js';
import { giveBackMiB } from '../util/mib-buffers.js';
import { chunkContents, WHOLE_CHUNK_MAX } from './chunk-reader.js';
import { readWholeBlob } from './chunk-read.js';
import { CHUNKED_VOLUME_MEDIA_TYPE, isChunked, type BlobDescriptor, type ChunkedBlob } from './manifest.js';

// The fastest level of each, as for gzip: measured here (CPU time, node:zlib) on the benchmark's
// 329 MB writable layer, half random and half text: zstd 1 at 282 MB/s to 41.0 %, zstd 3 at
// 158 MB/s to 36.6 %, gzip 1 at 87 MB/s to 42.3 %. Level 1 took a full backup of the benchmark's
// container from ~20.9 to ~16 CPU-seconds for 12 % more stored bytes. Chunks and layers are
// known by their content (uncompressed) digests, so sets written at level 3 are reused as they are.
export const ZSTD_LEVEL = 1;
export const GZIP_LEVEL = 1;

/**
 * The compressor's output buffer, in bytes (node:zlib's chunkSize, 16 KiB by default): with pieces
 * of GATHER_BYTES going in (at most about as long compressed), one trip through the thread pool per
 * piece rather than one per 16 KiB of output. The stored bytes do not depend on it, nor on how the input is cut (zstd and deflate
 * without flushes), so stored digests stay what they were.
 */
const COMPRESS_CHUNK = GATHER_BYTES;

function compressor(mediaType: string): Transform | undefined {
  if (mediaType.endsWith('+zstd'))
    return givingBack(createZstdCompress({ chunkSize: COMPRESS_CHUNK, params: { [constants.ZSTD_c_compressionLevel]: ZSTD_LEVEL } }));
  if (mediaType.endsWith('+gzip')) return givingBack(createGzip({ chunkSize: COMPRESS_CHUNK, level: GZIP_LEVEL }));
  return undefined;
}

/**
 * `compressor` handing each piece of content that mib-buffers.ts made back once it has read it
 * whole: node:zlib calls a write's callback only when its input is consumed, and drops its
 * reference to it then (lib/zlib.js processCallback), and the stages before it (Gather, the
 * meter, the content's digest) hand a piece on and keep nothing. So the 1 MiB batches of a layer
 * put together on this host (host-image-store.ts) are read into again instead of allocated: 414
 * MB of allocations of the benchmark's cold backup. Other pieces are not the module's and stay.
 */
function givingBack(compressor: Transform): Transform {
  const transform = compressor._transform.bind(compressor);
  compressor._transform = (chunk: Buffer, encoding, done) =>
    transform(chunk, encoding, (err, data) => {
      if (!err) giveBackMiB([chunk]);
      done(err, data);
    });
  return compressor;
}

function decompressor(mediaType: string): Transform | undefined {
  if (mediaType.endsWith('+zstd')) return createZstdDecompress();
  if (mediaType.endsWith('+gzip')) return createGunzip();
  return undefined;
}

/**
 * A blob's content, read back from a destination: its stored digest checked, then decrypted (an
 * encrypted blob, with the destination's keyring: a KeyError without the key), decompressed and its
 * content digest checked. A chunked volume (ChunkedBlob): its chunks' contents, each checked so,
 * one after the other, and the whole checked against its content digest.
 */
export async function openContent(dest: Destination, scope: BlobScope, blob: BlobDescriptor, what: string): Promise<Readable> {
  if (isChunked(blob)) return openChunks(dest, scope, blob, what);
  const decrypt = blob.encryption ? decryptor(dest, `${what} (${dest.label})`) : undefined;
  const stored = await dest.readBlob(scope, blob.digest);
  const out = new PassThrough();
  const stages: Array<NodeJS.ReadableStream | NodeJS.WritableStream> = [stored, new Verifier(blob, `${what} (${dest.label})`)];
  if (decrypt) stages.push(decrypt);
  const decompress = decompressor(blob.mediaType);
  if (decompress) stages.push(decompress);
  if (decompress || decrypt) {
    stages.push(new Verifier({ digest: blob.contentDigest, size: blob.contentSize }, `${what} content (${dest.label})`));
  }
  pipeline([...stages, out]).catch((err: Error) => out.destroy(err));
  return out;
}

/** A chunked blob's content: its chunks read ahead and recurring ones read once (chunk-reader.ts), the whole checked too when its digest is the whole archive's (schema 2). */
function openChunks(dest: Destination, scope: BlobScope, blob: ChunkedBlob, what: string): Readable {
  const chunkWhat = (i: number) => `${what} chunk ${i}`;
  const chunks = chunkContents(blob.chunks, {
    whole: async (i) =>
      blob.chunks[i].encryption
        ? readSmall(await openContent(dest, scope, blob.chunks[i], chunkWhat(i)), WHOLE_CHUNK_MAX)
        : readWholeBlob(dest, scope, blob.chunks[i], chunkWhat(i)),
    stream: (i) => openContent(dest, scope, blob.chunks[i], chunkWhat(i)),
  });
  const out = new PassThrough();
  // A chunk list's digest (schema 3) was checked against the list when the set was read; each chunk is checked as it is read.
  const stages =
    blob.mediaType === CHUNKED_VOLUME_MEDIA_TYPE
      ? [new Verifier({ digest: blob.contentDigest, size: blob.contentSize }, `${what} content (${dest.label})`)]
      : [];
  pipeline([chunks, ...stages, out]).catch((err: Error) => out.destroy(err));
  return out;
}

function decryptor(dest: Destination, what: string): Transform | Duplex {
  if (!dest.keyring) throw new KeyError(`${what} is encrypted (age). Expected a decryption key.`);
  return dest.keyring.decryptStream(what);
}

/** The keyring the targets share (one per run), when it encrypts a blob of this media type (image layers and configs stay clear with registry-pullable-image). */
function encryptingKeyring(targets: StoreTarget[], mediaType: string): Keyring | undefined {
  const keyring = targets[0]?.dest.keyring;
  if (!keyring?.encrypting) return undefined;
  return keyring.keepsImagesPullable && mediaType.startsWith(OCI_IMAGE_MEDIA_TYPES) ? undefined : keyring;
}

/** Layers and configs of OCI images (image-spec media types): what a pullable image is made of. */
const OCI_IMAGE_MEDIA_TYPES = 'application/vnd.oci.image.';

export async function verifyBlob(dest: Destination, scope: BlobScope, blob: BlobDescriptor, what: string): Promise<void> {
  await drain(await openContent(dest, scope, blob, what));
}

export interface StoreTarget {
  dest: Destination;
  scope: BlobScope;
}

/**
 * Streams `source` once into `sink`: gathered into pieces of GATHER_BYTES (Gather), sha256 of the
 * content, zstd or gzip as the media type says, age encryption with `keyring`, sha256 of the stored
 * bytes. Resolves with the blob's descriptor once `sink` has finished.
 */
async function encodeInto(
  source: Readable,
  sink: NodeJS.WritableStream,
  mediaType: string,
  keyring: Keyring | undefined,
  meter?: Transform,
): Promise<BlobDescriptor> {
  const content = new Digester();
  const stored = new Digester();
  const stages: Array<NodeJS.ReadableStream | NodeJS.WritableStream> = [source, new Gather(), ...(meter ? [meter] : []), content];
  const compress = compressor(mediaType);
  if (compress) stages.push(compress);
  if (keyring) stages.push(keyring.encryptStream());
  stages.push(stored, sink);
  await pipeline(stages);
  return {
    mediaType,
    digest: stored.digest,
    size: stored.bytes,
    contentDigest: content.digest,
    contentSize: content.bytes,
    ...(keyring ? { encryption: AGE } : {}),
  };
}

/** Fails with the destination that failed named, when one did (its stream carries the error); every writer aborted. */
async function abortAll(err: unknown, targets: StoreTarget[], writers: BlobWriter[]): Promise<never> {
  const failed = targets.find((_t, i) => writers[i]?.stream.errored);
  await Promise.allSettled(writers.map((w) => w.abort()));
  const message = err instanceof Error ? err.message : String(err);
  if (failed && !message.startsWith(failed.dest.label)) throw new Error(`${failed.dest.label}: ${message}`, { cause: err });
  throw err;
}

/**
 * Streams `source` once into every target: sha256 of the content, zstd or gzip as the
 * media type says, age encryption when the targets' keyring encrypts, sha256 of the stored
 * bytes. Nothing is held whole in memory. `meter` (a pass-through) sees the content on its way,
 * to report progress. With `expectContent` (a digest), content of another digest is a
 * ChecksumError, thrown with every writer aborted before any target keeps the blob.
 */
export async function storeBlob(
  source: Readable,
  targets: StoreTarget[],
  mediaType: string,
  meter?: Transform,
  expectContent?: string,
): Promise<BlobDescriptor> {
  const writers: BlobWriter[] = [];
  try {
    for (const t of targets) writers.push(await t.dest.writeBlob(t.scope));
    const blob = await encodeInto(source, fanOut(writers.map((w) => w.stream)), mediaType, encryptingKeyring(targets, mediaType), meter);
    if (expectContent !== undefined && blob.contentDigest !== expectContent) {
      throw new ChecksumError(`content is ${blob.contentDigest} (${blob.contentSize} bytes), expected ${expectContent}`);
    }
    await Promise.all(writers.map((w) => w.commit(blob.digest, blob.size)));
    return blob;
  } catch (err) {
    source.destroy();
    return abortAll(err, targets, writers);
  }
}

/** True when every target already holds the blob (so nothing needs writing). */
export async function allHave(targets: StoreTarget[], digest: string): Promise<boolean> {
  for (const t of targets) {
    if (!(await t.dest.hasBlob(t.scope, digest))) return false;
  }
  return true;
}
