import { promisify } from 'node:util';
import { gunzip, zstdDecompress } from 'node:zlib';
import type { BlobScope, Destination } from '../destinations/types.js';
import { ChecksumError, sha256Digest, type Expected } from '../oci/digest.js';
import type { BlobDescriptor } from './manifest.js';
import { readSmall } from '../util/streams.js';

const unzstd = promisify(zstdDecompress);
const ungzip = promisify(gunzip);
/** zlib's smallest `chunkSize` (zlib.constants.Z_MIN_CHUNK). */
const MIN_PIECE = 64;

/** Throws a ChecksumError (worded as the Verifier's) when `data` does not have the expected digest and size. */
function check(data: Buffer, expected: Required<Expected>, what: string): void {
  const found = sha256Digest(data);
  if (found === expected.digest && data.length === expected.size) return;
  throw new ChecksumError(`${what}: checksum mismatch (expected ${expected.digest}, ${expected.size} bytes; found ${found}, ${data.length} bytes)`);
}

/**
 * One clear (not encrypted) stored blob's content read whole into memory, for blobs small enough to
 * hold (a volume's chunks, ≤ 2 MiB as the chunker cuts them): its stored bytes read once and their
 * sha256 and size checked, then decompressed in one call on libuv's thread pool (zstd or gzip, as
 * the media type says, bounded by the recorded content size) and the content's sha256 and size
 * checked. Cheaper than a stream pipeline per chunk, and nothing of it is passed on unchecked.
 * The decompressor writes into one buffer of the content's recorded size (+1 byte).
 * Throws the destination's read error, a ChecksumError naming `what` and `label`, or zlib's error
 * on a stream that does not decompress. The caller keeps encrypted blobs on the streaming path.
 */
export async function readWholeBlob(dest: Destination, scope: BlobScope, blob: BlobDescriptor, what: string): Promise<Buffer> {
  const stored = await readSmall(
    await dest.readBlob(scope, blob.digest),
    blob.size,
    () => new ChecksumError(`${what} (${dest.label}): more than the ${blob.size} bytes recorded`),
  );
  check(stored, { digest: blob.digest, size: blob.size }, `${what} (${dest.label})`);
  // The whole content in one output buffer (one more byte, so the decompressor ends without asking
  // for a second buffer) instead of zlib's 16 KiB pieces joined at the end: ~30 % less CPU measured
  // on the bench's 200 MB volume (406 chunks).
  const opts = { maxOutputLength: Math.max(1, blob.contentSize), chunkSize: Math.max(MIN_PIECE, blob.contentSize + 1) };
  const content = blob.mediaType.endsWith('+zstd') ? await unzstd(stored, opts) : blob.mediaType.endsWith('+gzip') ? await ungzip(stored, opts) : stored;
  check(content, { digest: blob.contentDigest, size: blob.contentSize }, `${what} content (${dest.label})`);
  return content;
}
