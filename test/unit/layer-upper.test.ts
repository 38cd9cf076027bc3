import { describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, symlinkSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ContainerInspect } from '../../src/engine/containers.js';
import { goFileMode, goUtcTime, hostEntry, upperDirOf, upperEntry } from '../../src/snapshot/layer-upper.js';
import type { BigIntStats } from 'node:fs';

describe('host stats as the engine gives them', () => {
  it("maps st_mode to Go's os.FileMode", () => {
    expect(goFileMode(0o040755)).toBe(2147484141); // a directory 0755, as the engine's stat of /usr says
    expect(goFileMode(0o100644)).toBe(0o644);
    expect(goFileMode(0o120777)).toBe((0x08000000 | 0o777) >>> 0);
    expect(goFileMode(0o104755)).toBe((0x00800000 | 0o755) >>> 0);
    expect(goFileMode(0o042750)).toBe((0x80000000 | 0x00400000 | 0o750) >>> 0);
    expect(goFileMode(0o041777)).toBe((0x80000000 | 0x00100000 | 0o777) >>> 0);
    expect(goFileMode(0o010644)).toBe((0x02000000 | 0o644) >>> 0);
    expect(goFileMode(0o140755)).toBe((0x01000000 | 0o755) >>> 0);
    expect(goFileMode(0o020600)).toBe((0x04000000 | 0x00200000 | 0o600) >>> 0);
    expect(goFileMode(0o060660)).toBe((0x04000000 | 0o660) >>> 0);
  });

  it('formats an mtime as Go marshals a UTC time.Time (RFC 3339, nanoseconds, trailing zeros dropped)', () => {
    expect(goUtcTime(1796168025_059250540n)).toBe('2026-12-01T23:33:45.05925054Z');
    expect(goUtcTime(981173106_000000000n)).toBe('2001-02-03T04:05:06Z');
    expect(goUtcTime(981173106_000000001n)).toBe('2001-02-03T04:05:06.000000001Z');
    expect(goUtcTime(0n)).toBe('1970-01-01T00:00:00Z');
    expect(goUtcTime(-1n)).toBeUndefined();
    expect(goUtcTime(253402300800n * 1_000_000_000n)).toBeUndefined();
  });
});

describe('upperDirOf', () => {
  const inspect = (data: Record<string, string>, mounts: string[] = [], name = 'overlay2') =>
    ({ GraphDriver: { Name: name, Data: data }, Mounts: mounts.map((Destination) => ({ Destination })) }) as unknown as ContainerInspect;

  it('answers for paths not under a mount, and not at all for another driver, a missing directory or a mount through a symlink', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'upper-'));
    try {
      const upper = join(dir, 'upper');
      const lower = join(dir, 'lower');
      mkdirSync(join(upper, 'srv'), { recursive: true });
      mkdirSync(join(lower, 'real'), { recursive: true });
      writeFileSync(join(upper, 'srv', 'f'), 'x');
      symlinkSync('real', join(lower, 'link'));
      const got = await upperDirOf(inspect({ UpperDir: upper, LowerDir: lower }, ['/srv/data']));
      expect(got?.root).toBe(upper);
      expect(got?.shadowed('/srv/data')).toBe(true);
      expect(got?.shadowed('/srv/data/x')).toBe(true);
      expect(got?.shadowed('/srv/database')).toBe(false);
      expect(got?.shadowed('/srv')).toBe(false);
      expect(got?.shadowed('/etc/hosts')).toBe(true);
      expect(await upperDirOf(inspect({ UpperDir: upper }, [], 'vfs'))).toBeUndefined();
      expect(await upperDirOf(inspect({ UpperDir: join(dir, 'none') }))).toBeUndefined();
      expect(await upperDirOf(inspect({ UpperDir: upper, LowerDir: lower }, ['/link/data']))).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('upperEntry', () => {
  it('leaves to the engine a path under a directory that is a symlink in the upper directory (the host would follow it out)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'upper-'));
    try {
      mkdirSync(join(dir, 'srv'));
      writeFileSync(join(dir, 'srv', 'f'), 'x');
      symlinkSync('/', join(dir, 'x'));
      const upper = { root: dir, shadowed: () => false, realDirs: new Set<string>() };
      expect(upperEntry(upper, '/srv/f')?.size).toBe(1);
      expect(upperEntry(upper, '/x/etc/passwd')).toBeUndefined();
      expect(upperEntry(upper, '/x')?.mode).toBe((0x08000000 | 0o777) >>> 0);
      expect([...upper.realDirs]).toEqual(['/srv']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('takes an overlay whiteout (a character device 0:0) for what the engine would not find', () => {
    const whiteout = { isCharacterDevice: () => true, rdev: 0n, mode: 0o020000n, size: 0n, mtimeNs: 1n } as unknown as BigIntStats;
    expect(hostEntry(whiteout)).toBeUndefined();
    const device = { ...whiteout, isCharacterDevice: () => true, rdev: 259n } as unknown as BigIntStats;
    expect(hostEntry(device)?.mode).toBe((0x04000000 | 0x00200000) >>> 0);
  });
});
