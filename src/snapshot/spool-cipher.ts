/**
 * The spool's encryption (spool.ts, when the run's sets are encrypted): AES-256-CTR at each byte's
 * offset, all-zero blocks kept zero (holes stay holes), and a generation per block written again.
 */
import { createCipheriv, type Cipheriv } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { allZero } from '../util/zeros.js';

/** All-zero runs of this size, at this alignment, are left as holes in a spooled file (and clear, not encrypted). */
export const BLOCK = 4096;

/**
 * AES-256-CTR at the offset of each byte, so that one transform both encrypts (into the spool) and
 * decrypts (out of it): a whole BLOCK (or the tail) of zeros passes as zeros both ways, so that it
 * stays a hole in the file. The spool thus shows which blocks are all zero, and nothing else; a
 * ciphertext block that is all zero (chance 2^-32768) would read back as zeros.
 * Not authenticated: the spool is local to the run, and a volume's archive is checked when read back.
 */
export class ZeroKeepingCtr extends Transform {
  private offset = 0;
  private rest = Buffer.alloc(0);
  private readonly ctr: BlockCtr;

  constructor(key: FileKey) {
    super();
    this.ctr = new BlockCtr(key);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    const data = this.rest.length ? Buffer.concat([this.rest, chunk]) : chunk;
    const whole = data.length - (data.length % BLOCK);
    this.rest = Buffer.from(data.subarray(whole));
    if (whole > 0) this.push(this.apply(data.subarray(0, whole)));
    done();
  }

  override _flush(done: TransformCallback): void {
    if (this.rest.length) this.push(this.apply(this.rest));
    done();
  }

  private apply(data: Buffer): Buffer {
    const out = this.ctr.apply(data, this.offset);
    this.offset += data.length;
    return out;
  }
}

/**
 * A spooled file's key (32 bytes, AES-256) and the generation of each BLOCK written again by a
 * SpoolPatch: the key stream of a block is AES-CTR with the counter block [generation, 8 bytes
 * big-endian][byte offset / 16, 8 bytes big-endian], generation 0 as the file was taken. A block
 * written again takes a generation not used before, so no key stream ever covers two different
 * clear texts (which would give away their XOR to whoever saw both versions of the file).
 */
export interface FileKey {
  key: Buffer;
  /** Generation by block number (byte offset / BLOCK), for the blocks written again; absent: 0. */
  gens: Map<number, number>;
  /** The last generation given out. */
  lastGen: number;
}

/** ZeroKeepingCtr's key stream (FileKey), applied to any run of whole BLOCKs (or a file's tail) at its offset. */
export class BlockCtr {
  private cipher?: Cipheriv;
  private cipherAt = -1;
  private cipherGen = -1;

  constructor(private readonly fileKey: FileKey) {}

  /**
   * `data` (starting at byte `at` of the file, a multiple of BLOCK) with each block's key stream
   * applied, each all-zero BLOCK left zero: a new buffer, or `data` itself when it is all zero.
   */
  apply(data: Buffer, at: number): Buffer {
    if (allZero(data)) return data;
    const gens = this.fileKey.gens;
    const genAt = (i: number) => (gens.size === 0 ? 0 : (gens.get((at + i) / BLOCK) ?? 0));
    let out: Buffer | undefined;
    let i = 0;
    while (i < data.length) {
      // A run of blocks that are not all zero and share a generation.
      const gen = genAt(i);
      let end = i;
      while (end < data.length && !allZero(data.subarray(end, end + BLOCK)) && genAt(end) === gen) end += BLOCK;
      end = Math.min(end, data.length);
      if (end === i) {
        i += BLOCK;
        continue;
      }
      if (i === 0 && end === data.length) out = this.cipherFrom(at, gen).update(data);
      else
        this.cipherFrom(at + i, gen)
          .update(data.subarray(i, end))
          .copy((out ??= Buffer.alloc(data.length)), i);
      this.cipherAt += end - i;
      i = end;
    }
    return out!;
  }

  /** The cipher whose key stream starts at byte `at` (a multiple of 16) of generation `gen`: the running one when it is there already. */
  private cipherFrom(at: number, gen: number): Cipheriv {
    if (!this.cipher || this.cipherAt !== at || this.cipherGen !== gen) {
      const counter = Buffer.alloc(16);
      counter.writeBigUInt64BE(BigInt(gen), 0);
      counter.writeBigUInt64BE(BigInt(at / 16), 8);
      this.cipher = createCipheriv('aes-256-ctr', this.fileKey.key, counter);
      this.cipherAt = at;
      this.cipherGen = gen;
    }
    return this.cipher;
  }
}
