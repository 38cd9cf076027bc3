import { describe, expect, it } from 'vitest';
import { freeMiBCount, giveBackMiB, MIB_BUFFER, takeMiB } from '../../src/util/mib-buffers.js';

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
