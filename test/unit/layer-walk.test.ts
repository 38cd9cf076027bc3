import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findTime, findUpperDir, walkUpperDir } from '../../src/snapshot/layer-walk.js';
import { goUtcTime, goUtcTimeOf } from '../../src/snapshot/layer-upper.js';

describe('walkUpperDir', () => {
  const root = mkdtempSync(join(tmpdir(), 'csx-walk-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'app/d'), { recursive: true });
  writeFileSync(join(root, 'app/a'), 'a');
  writeFileSync(join(root, 'app/d/x'), 'xx');
  mkdirSync(join(root, 'data/sub'), { recursive: true });
  writeFileSync(join(root, 'data/sub/hidden'), 'h');
  // Before 1970: the engine's stat says it (Go's time), not this host.
  writeFileSync(join(root, 'app/old'), 'o');
  utimesSync(join(root, 'app/old'), new Date('1960-01-01'), new Date('1960-01-01'));
  // A symlink to a directory (here to the host's /): listed, never entered.
  symlinkSync('/', join(root, 'app/root'));
  // A whiteout: a character device 0:0 (needs root, as the tests do: scripts/testbed.sh, CI).
  execFileSync('mknod', [join(root, 'app/gone'), 'c', '0', '0']);
  // Times to the nanosecond, with and without trailing zeros, and within the epoch's first second.
  writeFileSync(join(root, 'app/ns'), 'n');
  execFileSync('touch', ['-h', '-d', '@1796168025.059250540', join(root, 'app/ns')]);
  writeFileSync(join(root, 'app/whole'), 'w');
  execFileSync('touch', ['-h', '-d', '@981173106', join(root, 'app/whole')]);
  writeFileSync(join(root, 'app/epoch'), 'e');
  execFileSync('touch', ['-h', '-d', '@0.000000007', join(root, 'app/epoch')]);
  const none = () => false;

  it('lists every path below the root with its host stat, and whiteouts as such', () => {
    const walk = walkUpperDir(root, none, 100);
    if (typeof walk === 'string') throw new Error(walk);
    expect([...walk.entries.keys()].sort()).toEqual([
      '/app',
      '/app/a',
      '/app/d',
      '/app/d/x',
      '/app/epoch',
      '/app/gone',
      '/app/ns',
      '/app/root',
      '/app/whole',
      '/data',
      '/data/sub',
      '/data/sub/hidden',
    ]);
    expect(walk.entries.get('/app/gone')).toBe('whiteout');
    const x = walk.entries.get('/app/d/x');
    expect(x !== 'whiteout' && x?.size).toBe(2);
    expect(x !== 'whiteout' && x?.ctimeNs).toMatch(/^\d+$/);
    expect(walk.toEngine).toEqual(['/app/old']);
    expect(walk.truncated).toBeUndefined();
  });

  it('leaves paths under a mount to the engine', () => {
    const walk = walkUpperDir(root, (p) => p === '/data' || p.startsWith('/data/'), 100);
    if (typeof walk === 'string') throw new Error(walk);
    expect(walk.toEngine.sort()).toEqual(['/app/old', '/data', '/data/sub', '/data/sub/hidden']);
    expect(walk.entries.has('/data')).toBe(false);
  });

  it('stops past maxTotal paths, and refuses a name that is not UTF-8', () => {
    const walk = walkUpperDir(root, none, 3);
    expect(typeof walk !== 'string' && walk.truncated).toBe(true);
    const bad = mkdtempSync(join(tmpdir(), 'csx-walk-bad-'));
    try {
      writeFileSync(Buffer.concat([Buffer.from(`${bad}/`), Buffer.from([0xff, 0x41])]), '');
      expect(walkUpperDir(bad, none, 100)).toBe('a name in / is not UTF-8');
    } finally {
      rmSync(bad, { recursive: true, force: true });
    }
  });

  it("reads find's records as the walk here reads the same directory (times to the nanosecond, change times, whiteouts)", async () => {
    const here = walkUpperDir(root, none, 100);
    const found = await findUpperDir(root, none, 100);
    if (typeof here === 'string' || typeof found === 'string' || found === undefined) throw new Error(String(here) + String(found));
    expect(new Map([...found.entries].sort())).toEqual(new Map([...here.entries].sort()));
    expect(found.toEngine).toEqual(here.toEngine);
    const ns = found.entries.get('/app/ns');
    expect(ns !== 'whiteout' && ns?.mtime).toBe('2026-12-01T23:33:45.05925054Z');
    const whole = found.entries.get('/app/whole');
    expect(whole !== 'whiteout' && whole?.mtime).toBe('2001-02-03T04:05:06Z');
    const epoch = found.entries.get('/app/epoch');
    expect(epoch !== 'whiteout' && epoch?.mtime).toBe('1970-01-01T00:00:00.000000007Z');
  });
});

describe('findTime and goUtcTimeOf', () => {
  it('give what the BigInt arithmetic gives, for times after and before the epoch', () => {
    const exact = (text: string) => {
      const [s, f] = text.split('.');
      return BigInt(s) * 1_000_000_000n + BigInt(f.slice(0, 9).padEnd(9, '0'));
    };
    const times = [
      '1796168025.0592505400',
      '981173106.0000000000',
      '0.0000000070',
      '0.5',
      '253402300799.9999999990',
      '253402300800.0000000000',
      '-1.5000000000',
      '1234567890123456.0000000001',
    ];
    for (let i = 0; i < 200; i++) times.push(`${Math.floor(Math.random() * 4e9)}.${String(Math.floor(Math.random() * 1e9)).padStart(9, '0')}0`);
    for (const text of times) {
      const t = findTime(text);
      const ns = typeof t === 'bigint' ? t : BigInt(t!.seconds) * 1_000_000_000n + BigInt(t!.nanos);
      expect(ns).toBe(exact(text));
      if (typeof t !== 'bigint') expect(goUtcTimeOf(t!.seconds, t!.nanos)).toBe(goUtcTime(ns));
    }
    expect(findTime('12.')).toBeUndefined();
    expect(findTime('x.5')).toBeUndefined();
    expect(goUtcTime(-1_500_000_000n)).toBeUndefined();
  });
});
