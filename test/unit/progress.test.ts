import { describe, expect, it } from 'vitest';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { Progress, formatDuration, formatProgress, meterWith } from '../../src/util/progress.js';

describe('progress lines', () => {
  it('say bytes, rate and time left when the size is known; bytes and rate when not', () => {
    expect(formatProgress({ what: 'web: volume data', bytes: 50 << 20, total: 200 << 20, rate: 10 << 20 })).toBe(
      'web: volume data: 50.0 MiB of 200.0 MiB (25 %), 10.0 MiB/s, about 15 s left',
    );
    expect(formatProgress({ what: 'web: reading', bytes: 3 * 2 ** 30, rate: 1.5 * 2 ** 20 })).toBe('web: reading: 3.0 GiB, 1.5 MiB/s');
    expect(formatProgress({ what: 'x', bytes: 1024, total: 4096, rate: 0 })).toBe('x: 1.0 KiB of 4.0 KiB (25 %), no progress since the last line');
  });

  it('durations read as people say them', () => {
    expect([0, 44.6, 60, 200, 3600, 7500].map(formatDuration)).toEqual(['0 s', '45 s', '1 min 0 s', '3 min 20 s', '1 h 0 min', '2 h 5 min']);
  });

  it('a transfer says nothing before 5 s, then a line every 5 s with the rate of the last interval (fake clock)', () => {
    let now = 1000;
    const lines: string[] = [];
    const p = new Progress(
      'up',
      100 << 20,
      (l) => lines.push(l),
      () => now,
    );
    for (const [at, add] of [
      [2000, 10],
      [4999, 10],
      [6000, 10],
      [8000, 5],
      [11000, 0],
      [16000, 15],
      [20000, 40],
    ] as const) {
      now = 1000 + at;
      p.add(add << 20);
      p.tick();
    }
    expect(lines).toEqual([
      'up: 30.0 MiB of 100.0 MiB (30 %), 5.0 MiB/s, about 14 s left',
      'up: 35.0 MiB of 100.0 MiB (35 %), 1.0 MiB/s, about 1 min 5 s left',
      'up: 50.0 MiB of 100.0 MiB (50 %), 3.0 MiB/s, about 17 s left',
    ]);
  });

  it('a meter passes every byte through unchanged, and a short transfer says nothing', async () => {
    const lines: string[] = [];
    const got: Buffer[] = [];
    const sink = new Writable({ write: (c: Buffer, _e, done) => (got.push(c), done()) });
    await pipeline(Readable.from([Buffer.from('ab'), Buffer.from('cd')]), meterWith((l) => lines.push(l))('x', 4), sink);
    expect(Buffer.concat(got).toString()).toBe('abcd');
    expect(lines).toEqual([]);
  });
});
