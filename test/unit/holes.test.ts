import { describe, expect, it } from 'vitest';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { randomBytes } from 'node:crypto';
import tar from 'tar-stream';
import { HOLE_MIN, HoleFinder, MAX_HOLEY_FILES, holePlan } from '../../src/snapshot/holes.js';
import { allZero } from '../../src/util/zeros.js';

/** A tar (tar-stream's pack) of `files`: name → content, or null for a directory. */
async function archive(files: Array<[string, Buffer | null]>): Promise<Buffer> {
  const pack = tar.pack();
  for (const [name, content] of files) {
    if (content) pack.entry({ name, mode: 0o644 }, content);
    else pack.entry({ name, type: 'directory', mode: 0o755 });
  }
  pack.finalize();
  return buffer(pack as unknown as Readable);
}

/** `data` in pieces of `size` bytes (the last one shorter), as a stream. */
function pieces(data: Buffer, size: number): Readable {
  const out: Buffer[] = [];
  for (let at = 0; at < data.length; at += size) out.push(data.subarray(at, at + size));
  return Readable.from(out);
}

async function find(tarball: Buffer, size: number): Promise<{ out: Buffer; finder: HoleFinder }> {
  const finder = new HoleFinder();
  const out = await buffer(pieces(tarball, size).pipe(finder));
  return { out, finder };
}

const data = (n: number) => randomBytes(n);
const zeros = (n: number) => Buffer.alloc(n);

describe('HoleFinder', () => {
  const files: Array<[string, Buffer | null]> = [
    ['data/', null],
    ['data/hole-in-middle', Buffer.concat([data(5000), zeros(HOLE_MIN + 8192), data(100)])],
    ['data/ends-in-hole', Buffer.concat([data(10), zeros(1 << 20)])],
    ['data/all-hole', zeros(3 << 20)],
    ['data/short-runs', Buffer.concat([data(4096), zeros(HOLE_MIN - 4096), data(4096), zeros(HOLE_MIN - 8192), data(1)])],
    ['data/small', zeros(4000)],
    [`data/${'long-name-'.repeat(15)}/sparse`, Buffer.concat([zeros(2 * HOLE_MIN), data(1)])],
  ];

  for (const size of [512, 4096 + 17, 65_536, 1 << 22]) {
    it(`passes the archive through unchanged and names the files with a zero run of HOLE_MIN or more (pieces of ${size} bytes)`, async () => {
      const tarball = await archive(files);
      const { out, finder } = await find(tarball, size);
      expect(out.equals(tarball)).toBe(true);
      expect(finder.files).toEqual(['data/hole-in-middle', 'data/ends-in-hole', 'data/all-hole', `data/${'long-name-'.repeat(15)}/sparse`]);
      expect(finder.more).toBe(0);
    });
  }

  it('names at most MAX_HOLEY_FILES files and counts the rest', async () => {
    const many = Array.from({ length: MAX_HOLEY_FILES + 3 }, (_, i): [string, Buffer] => [`data/f${i}`, zeros(HOLE_MIN)]);
    const { finder } = await find(await archive(many), 1 << 16);
    expect(finder.files).toHaveLength(MAX_HOLEY_FILES);
    expect(finder.files[0]).toBe('data/f0');
    expect(finder.more).toBe(3);
  });

  it('passes a stream that is no tar through unchanged', async () => {
    const junk = Buffer.concat([Buffer.from('not a tar header'), randomBytes(5000)]);
    const { out, finder } = await find(junk, 1000);
    expect(out.equals(junk)).toBe(true);
    expect(finder.files).toEqual([]);
  });
});

describe('allZero', () => {
  it('is true for zeros of any length and false for one set byte anywhere, within or past the first MiB', () => {
    expect(allZero(Buffer.alloc(0))).toBe(true);
    expect(allZero(Buffer.alloc(3 << 20))).toBe(true);
    for (const at of [0, 4095, 1 << 20, (3 << 20) - 1]) {
      const b = Buffer.alloc(3 << 20);
      b[at] = 1;
      expect(allZero(b)).toBe(false);
    }
  });
});

describe('holePlan', () => {
  const found = { files: ['data/found'], more: 2 };

  it('punches the files the set recorded (under the archive base, at most MAX_HOLEY_FILES), not those found by their zeros', () => {
    expect(holePlan(['a', 'd/b'], 'data', found)).toEqual({ files: ['data/a', 'data/d/b'], more: 0 });
    expect(holePlan([], 'data', found)).toEqual({ files: [], more: 0 });
    const many = Array.from({ length: MAX_HOLEY_FILES + 5 }, (_, i) => `f${i}`);
    expect(holePlan(many, 'v', found)).toMatchObject({ files: many.slice(0, MAX_HOLEY_FILES).map((f) => `v/${f}`), more: 5 });
  });

  it('falls back on the files found by their zero runs, and says why, when the set names none', () => {
    expect(holePlan(undefined, 'data', found)).toEqual({
      ...found,
      guessed: expect.stringMatching(/^the set does not record which files were sparse .*: files with zero runs of 64 KiB or more were punched$/),
    });
    expect(holePlan('many', 'data', found).guessed).toMatch(/too many to list/);
    expect(holePlan(undefined, 'v', found, 'not here').guessed).toBe('not here: files with zero runs of 64 KiB or more were punched');
  });
});
