import type { FileHandle } from 'node:fs/promises';
import { Writable } from 'node:stream';

/**
 * How many bytes a blob file's stream takes before it asks its writer to wait: a compressor runs
 * ahead while the file system writes, and what piles up goes down in one writev.
 */
export const BLOB_FILE_BUFFER = 1024 * 1024;

/** Writes all of `buffers` at the handle's position (writev may write fewer bytes than asked). */
async function writeAll(handle: FileHandle, buffers: Buffer[]): Promise<number> {
  let total = 0;
  let rest = buffers.filter((b) => b.length > 0);
  while (rest.length > 0) {
    const { bytesWritten } = rest.length === 1 ? await handle.write(rest[0]) : await handle.writev(rest);
    total += bytesWritten;
    let skip = bytesWritten;
    const next: Buffer[] = [];
    for (const b of rest) {
      if (skip >= b.length) {
        skip -= b.length;
        continue;
      }
      next.push(skip > 0 ? b.subarray(skip) : b);
      skip = 0;
    }
    rest = next;
  }
  return total;
}

/**
 * A Writable onto an open file: bytes counted as the file system takes them (`bytes`), chunks
 * that wait meanwhile written together (writev). It never closes the handle: its owner syncs and
 * closes it. Errors of the file system fail the stream.
 */
export class BlobFile extends Writable {
  /** Bytes the file system has taken. */
  bytes = 0;

  constructor(readonly handle: FileHandle) {
    super({ highWaterMark: BLOB_FILE_BUFFER });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    writeAll(this.handle, [chunk]).then((n) => {
      this.bytes += n;
      done();
    }, done);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, done: (err?: Error | null) => void): void {
    writeAll(
      this.handle,
      chunks.map((c) => c.chunk),
    ).then((n) => {
      this.bytes += n;
      done();
    }, done);
  }
}
