import { describe, expect, it } from 'vitest';
import { checksumOk, headerSum, memberSize, TAR_BLOCK } from '../../src/util/tar-header.js';
import { TarWriter } from '../../src/util/tar-writer.js';

// The fields as the string and regular-expression reading took them before the byte-wise one: the
// reference these tests hold the byte-wise reading to.
const referenceSum = (h: Uint8Array) => {
  let sum = 0;
  for (let i = 0; i < TAR_BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i];
  return sum;
};
const referenceChecksumOk = (h: Buffer) => {
  const field = h
    .subarray(148, 156)
    .toString('latin1')
    .replace(/[\0 ]+$/, '')
    .trim();
  return /^[0-7]+$/.test(field) && Number.parseInt(field, 8) === referenceSum(h);
};
const referenceSize = (h: Buffer) => {
  const field = h
    .subarray(124, 136)
    .toString('latin1')
    .replace(/^[\0 ]+|[\0 ]+$/g, '');
  if (!field) return 0;
  return /^[0-7]+$/.test(field) ? Number.parseInt(field, 8) : Number.NaN;
};

/** A deterministic generator (xorshift32), so that a failure is found again. */
function bytesFrom(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) & 0xff;
  };
}

/** A field of `width` bytes: octal digits with pads, blanks and now and then another byte, in the places a writer or a corruption puts them. */
function field(next: () => number, width: number): number[] {
  const pick = [0x00, 0x20, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1c, 0x1f, 0xa0, 0x30, 0x31, 0x37, 0x38, 0x2d, 0x41, 0x85];
  const out: number[] = [];
  for (let i = 0; i < width; i++) {
    const r = next();
    out.push(r < 150 ? 0x30 + (r & 7) : pick[r % pick.length]);
  }
  return out;
}

describe('tar header fields read byte by byte', () => {
  it('give what the string reading gave, for the headers a tar writer makes and for fields of every shape', async () => {
    const tar = new TarWriter(1 << 20);
    const chunks: Buffer[] = [];
    tar.stream.on('data', (c: Buffer) => chunks.push(c));
    for (const size of [0, 1, 511, 512, 70_000, 8 * 1024 * 1024 - 1]) {
      await tar.entry({ name: `f${size}`, mode: 0o100644, uid: 0, gid: 0, mtime: new Date(1_700_000_000_000), type: 'file', size }, Buffer.alloc(size));
    }
    await tar.finalize();
    const archive = Buffer.concat(chunks);
    const header = archive.subarray(0, TAR_BLOCK);
    expect(checksumOk(header)).toBe(true);
    expect(memberSize(header)).toBe(0);

    let checked = 0;
    let valid = 0;
    for (let seed = 1; seed <= 20_000; seed++) {
      const next = bytesFrom(seed);
      const h = Buffer.from(header);
      h.set(field(next, 8), 148);
      h.set(field(next, 12), 124);
      // Now and then a right checksum, written as writers write it (6 digits, NUL, space; or 7 digits and NUL).
      if (seed % 3 === 0) {
        const sum = referenceSum(h);
        h.write(seed % 2 ? `${sum.toString(8).padStart(6, '0')}\0 ` : `${sum.toString(8).padStart(7, '0')}\0`, 148, 'latin1');
      }
      expect(headerSum(h)).toBe(referenceSum(h));
      // At an offset that is no multiple of 4 the sum is taken byte by byte: the same.
      const odd = Buffer.alloc(TAR_BLOCK + 3).subarray(1 + (seed % 3));
      h.copy(odd);
      expect(headerSum(odd.subarray(0, TAR_BLOCK))).toBe(referenceSum(h));
      expect(checksumOk(h), `seed ${seed}: ${h.subarray(148, 156).toString('hex')}`).toBe(referenceChecksumOk(h));
      // A first byte with its high bit is a base-256 size (the next test).
      if (!(h[124] & 0x80)) expect(memberSize(h), `seed ${seed}: ${h.subarray(124, 136).toString('hex')}`).toEqual(referenceSize(h));
      if (checksumOk(h)) valid++;
      checked++;
    }
    expect(checked).toBe(20_000);
    // Both ways of writing a right checksum, and nothing else by chance.
    expect(valid).toBeGreaterThan(6000);
  });

  it('sum a header of all 0xff bytes without a carry between the 16-bit lanes', () => {
    const h = Buffer.alloc(TAR_BLOCK, 0xff);
    expect(h.byteOffset % 4).toBe(0);
    expect(headerSum(h)).toBe(8 * 0x20 + (TAR_BLOCK - 8) * 0xff);
  });

  it('read a base-256 size (GNU, 8 GiB and more)', () => {
    const h = Buffer.alloc(TAR_BLOCK);
    h[124] = 0x80;
    h.writeUIntBE(2 ** 40 + 5, 130, 6);
    expect(memberSize(h)).toBe(2 ** 40 + 5);
  });
});
