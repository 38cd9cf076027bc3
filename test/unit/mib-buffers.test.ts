import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freeMiBCount, giveBackMiB, MIB_BUFFER, mibFileStream, takeMiB } from '../../src/util/mib-buffers.js';

describe('mib-buffers', () => {
  it('takes back only buffers it made, each once, whole or as a view from byte 0, at most 8; hands them out again', () => {
    while (freeMiBCount() > 0) takeMiB();
    const a = takeMiB();
    const b = takeMiB();
    expect([a.length, b.length]).toEqual([MIB_BUFFER, MIB_BUFFER]);
    expect(a.buffer).not.toBe(b.buffer);
    giveBackMiB([Buffer.alloc(MIB_BUFFER), Buffer.allocUnsafeSlow(100)]);
    expect(freeMiBCount()).toBe(0);
    giveBackMiB([a.subarray(0, 5000), a, b]);
    expect(freeMiBCount()).toBe(2);
    const again = [takeMiB(), takeMiB()];
    expect(new Set(again.map((x) => x.buffer))).toEqual(new Set([a.buffer, b.buffer]));
    expect(again.every((x) => x.length === MIB_BUFFER)).toBe(true);
    const many = Array.from({ length: 12 }, () => takeMiB());
    giveBackMiB(many);
    expect(freeMiBCount()).toBe(8);
  });
});

describe('mibFileStream', () => {
  const dir = mkdtempSync(join(tmpdir(), 'csx-mib-'));

  it('reads a file in pieces of 1 MiB into buffers of the pool, and reads into those given back', async () => {
    const data = randomBytes(3 * MIB_BUFFER + 1234);
    const path = join(dir, 'f');
    writeFileSync(path, data);
    while (freeMiBCount() > 0) takeMiB();
    const pieces: Buffer[] = [];
    const arrays = new Set<ArrayBufferLike>();
    for await (const piece of mibFileStream(path)) {
      const p = piece as Buffer;
      pieces.push(Buffer.from(p));
      arrays.add(p.buffer);
      giveBackMiB([p]);
    }
    expect(Buffer.concat(pieces).equals(data)).toBe(true);
    expect(pieces.map((p) => p.length)).toEqual([MIB_BUFFER, MIB_BUFFER, MIB_BUFFER, 1234]);
    // Each piece given back before the next read: fewer buffers than pieces.
    expect(arrays.size).toBeLessThan(pieces.length);
  });

  it('fails with the open error, and closes the file when destroyed early', async () => {
    await expect(async () => {
      for await (const _ of mibFileStream(join(dir, 'absent'))) void _;
    }).rejects.toThrow(/ENOENT/);
    const path = join(dir, 'g');
    writeFileSync(path, randomBytes(4 * MIB_BUFFER));
    const before = readdirSync('/proc/self/fd').length;
    for await (const _ of mibFileStream(path)) break;
    await new Promise((r) => setTimeout(r, 50));
    expect(readdirSync('/proc/self/fd').length).toBe(before);
  });
});
