import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { CopySlabs } from '../../src/util/copy-slabs.js';

describe('CopySlabs', () => {
  it('gives copies equal to their source that later copies never overwrite while they are held', () => {
    const slabs = new CopySlabs(1000, 2);
    const held = Array.from({ length: 25 }, (_v, i) => {
      const src = randomBytes(100 + i * 7);
      return { src, ...slabs.copy(src) };
    });
    // Sources changed after the copy: the copies keep what was there.
    const before = held.map((h) => Buffer.from(h.src));
    for (const h of held) h.src.fill(0xee);
    held.forEach((h, i) => expect(h.copy.equals(before[i])).toBe(true));
    for (const h of held) h.release();
  });

  it('carves the next copies out of a slab whose copies were all released, and keeps at most `keep` free slabs', () => {
    const slabs = new CopySlabs(1000, 1);
    const a = slabs.copy(randomBytes(600));
    const b = slabs.copy(randomBytes(600)); // does not fit a's slab: a second slab
    expect(b.copy.buffer).not.toBe(a.copy.buffer);
    const slabOfA = a.copy.buffer;
    a.release();
    a.release(); // a second release changes nothing
    const c = slabs.copy(randomBytes(600)); // b's slab is full: a's, freed, is taken again
    expect(c.copy.buffer).toBe(slabOfA);
    // b's slab, freed once its copy is released (it no longer carves), is reused, not a fresh one.
    const slabOfB = b.copy.buffer;
    b.release();
    const d = slabs.copy(randomBytes(600));
    expect(d.copy.buffer).toBe(slabOfB);
    // A released copy in the slab that carves lets it start over at its beginning.
    d.release();
    const e = slabs.copy(randomBytes(900));
    expect(e.copy.buffer).toBe(slabOfB);
    expect(e.copy.byteOffset).toBe(0);
  });

  it('counts as held every slab a copy not yet released is in, whole, and what a next copy would add', () => {
    const slabs = new CopySlabs(1000, 4);
    expect(slabs.heldAfter(100)).toBe(1000);
    const a = slabs.copy(Buffer.alloc(100, 1));
    expect(slabs.heldAfter(100)).toBe(1000); // fits the slab a holds
    expect(slabs.heldAfter(901)).toBe(2000); // would take a second slab
    const b = slabs.copy(Buffer.alloc(901, 2));
    // One short copy in each of two slabs: both held whole.
    expect(slabs.heldAfter(50)).toBe(2000);
    a.release();
    expect(slabs.heldAfter(50)).toBe(1000);
    b.release();
    expect(slabs.heldAfter(50)).toBe(1000);
  });

  it('refuses a copy longer than a slab', () => {
    expect(() => new CopySlabs(100, 1).copy(Buffer.alloc(101))).toThrow(RangeError);
  });
});
