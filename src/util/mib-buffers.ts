/**
 * Buffers of 1 MiB handed on through a stream and handed back by its last reader once written:
 * the pieces a host walk reads while its container is held (tar-writer.ts batches, volume-tar.ts
 * reads) go to the spool (spool.ts SparseFile), which gives each back when its write is done, so
 * the next piece is read into memory already touched instead of into a fresh allocation that V8
 * frees only after ~64 MB more of them (its external-memory limit) and glibc then keeps.
 *
 * Rules that keep a buffer from being written while still read: a producer takes a buffer, hands
 * it on once (whole or as one view from byte 0) and never touches it again; only a reader that
 * is the stream's end and holds no reference after its write gives it back. A buffer this module
 * did not make, or one already free, is ignored; at most MAX_FREE are kept.
 */
import { closeSync, open, read } from 'node:fs';
import { Readable } from 'node:stream';

export const MIB_BUFFER = 1 << 20;
const MAX_FREE = 8;
const ours = new WeakSet<ArrayBuffer>();
const free: Buffer[] = [];

/** A buffer of MIB_BUFFER bytes (content undefined): a free one, else a new one. */
export function takeMiB(): Buffer {
  const reused = free.pop();
  if (reused) return reused;
  const buf = Buffer.allocUnsafeSlow(MIB_BUFFER);
  ours.add(buf.buffer as ArrayBuffer);
  return buf;
}

/** Gives back the buffers under `pieces` that takeMiB made (each once); the caller must hold none of them any longer. */
export function giveBackMiB(pieces: readonly Buffer[]): void {
  for (const piece of pieces) {
    const ab = piece.buffer as ArrayBuffer;
    if (free.length >= MAX_FREE || !ours.has(ab) || free.some((f) => f.buffer === ab)) continue;
    free.push(Buffer.from(ab, 0, MIB_BUFFER));
  }
}

/** Free buffers kept (for tests). */
export function freeMiBCount(): number {
  return free.length;
}

/**
 * A file read in pieces of MIB_BUFFER bytes (the last one shorter), each read into a buffer of
 * takeMiB: a reader at the stream's end that follows this module's rules gives them back, and the
 * next piece is read into one of them instead of into a fresh allocation (node's ReadStream
 * allocates each piece: a backup's spooled archives were ~1 byte of garbage per byte read, which
 * V8 frees only after ~64 MB more and glibc then keeps). Errors are the stream's (ENOENT on open,
 * an EIO on a read); destroyed while a read is in flight, the file is closed once it returns.
 */
export function mibFileStream(path: string): Readable {
  let fd: number | undefined;
  let reading = false;
  let closing = false;
  const close = () => {
    if (fd === undefined) return;
    if (reading) closing = true;
    else closeSync(fd);
  };
  return new Readable({
    construct(done) {
      open(path, 'r', (err, opened) => {
        fd = opened;
        done(err);
      });
    },
    read() {
      const buf = takeMiB();
      reading = true;
      read(fd!, buf, 0, MIB_BUFFER, null, (err, n) => {
        reading = false;
        if (closing) {
          closeSync(fd!);
          return;
        }
        if (err || n === 0) giveBackMiB([buf]);
        if (err) return this.destroy(err);
        this.push(n === 0 ? null : n === MIB_BUFFER ? buf : buf.subarray(0, n));
      });
    },
    destroy(err, done) {
      close();
      done(err);
    },
  });
}
