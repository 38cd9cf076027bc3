import { describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ContainerInspect } from '../../src/engine/containers.js';
import { goFileMode, goUtcTime, hostEntry, tmpfsDestinations, upperDirOf, upperEntry, UpperStats } from '../../src/snapshot/layer-upper.js';
import { upperLayerTar } from '../../src/snapshot/layer-upper-tar.js';
import { TarChecker } from '../../src/util/tar-check.js';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
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

  it("stats a running container's paths through directory descriptors: never through a symlink, each directory opened once, all closed", () => {
    const dir = mkdtempSync(join(tmpdir(), 'upper-fd-'));
    try {
      mkdirSync(join(dir, 'srv', 'deep'), { recursive: true });
      writeFileSync(join(dir, 'srv', 'deep', 'f'), 'xy');
      symlinkSync('/', join(dir, 'x'));
      symlinkSync('srv', join(dir, 'rel'));
      const upper = { root: dir, shadowed: (p: string) => p.startsWith('/mnt'), realDirs: new Set<string>() };
      const stats = new UpperStats(upper);
      const before = readdirSync('/proc/self/fd').length;
      const f = stats.entry('/srv/deep/f');
      expect(f?.size).toBe(2);
      expect(f?.ino).toBe(String(statSync(join(dir, 'srv', 'deep', 'f'), { bigint: true }).ino));
      expect(f?.ctimeNs).toBeDefined();
      expect((stats.entry('/srv/deep')!.mode & 0x80000000) !== 0).toBe(true);
      // Below a symlink, absolute or relative: the engine's to stat, never the host's files.
      expect(stats.entry('/x/etc/passwd')).toBeUndefined();
      expect(stats.entry('/rel/deep/f')).toBeUndefined();
      // The symlink itself is an entry of its own.
      expect(stats.entry('/x')?.mode).toBe((0x08000000 | 0o777) >>> 0);
      expect(stats.entry('/mnt/a')).toBeUndefined();
      expect(stats.entry('/srv/missing')).toBeUndefined();
      // The top, /srv and /srv/deep held open (the failed opens of x and rel hold nothing).
      expect(readdirSync('/proc/self/fd').length).toBe(before + 3);
      stats.close();
      expect(readdirSync('/proc/self/fd').length).toBe(before);
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

describe('tmpfs mount points the runtime made', () => {
  it('are those of HostConfig.Tmpfs and tmpfs Mounts that no lower layer has, and are left out of the layer while empty', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'upper-tmpfs-'));
    try {
      const upper = join(dir, 'upper');
      const lower = join(dir, 'lower');
      for (const d of ['scratch', 'deep/er', 'www', 'full']) mkdirSync(join(upper, d), { recursive: true });
      mkdirSync(join(lower, 'www'), { recursive: true });
      writeFileSync(join(upper, 'full', 'f'), 'x');
      const info = {
        GraphDriver: { Name: 'overlay2', Data: { UpperDir: upper, LowerDir: lower } },
        Mounts: [],
        HostConfig: {
          Tmpfs: { '/scratch/': '', '/deep/er': 'mode=1770', '/full': '' },
          Mounts: [
            { Type: 'tmpfs', Target: '/www' },
            { Type: 'bind', Target: '/b', Source: '/x' },
          ],
        },
      } as unknown as ContainerInspect;
      expect(tmpfsDestinations(info).sort()).toEqual(['/deep/er', '/full', '/scratch', '/www']);
      const got = await upperDirOf(info);
      // /www is the image's own directory: kept (runc gives the tmpfs its mode, as it did before).
      expect([...(got?.tmpfsMadePoints ?? [])].sort()).toEqual(['deep/er', 'full', 'scratch']);
      const names = async () => {
        const layer = await upperLayerTar(got!);
        if (typeof layer === 'string') throw new Error(layer);
        const out: string[] = [];
        const extract = tar.extract();
        pipeline(layer, new TarChecker('layer', true), extract).catch(() => undefined);
        for await (const entry of extract) {
          out.push(entry.header.name.replace(/\/$/, ''));
          entry.resume();
        }
        return out.sort();
      };
      // /full holds a file (not a bare mount point): kept.
      expect(await names()).toEqual(['deep', 'full', 'full/f', 'www']);
      // Nothing left but the mount points: an archive of no member, which the layer's check takes.
      rmSync(join(upper, 'full'), { recursive: true });
      rmSync(join(upper, 'www'), { recursive: true });
      rmSync(join(upper, 'deep'), { recursive: true });
      const layer = await upperLayerTar(got!);
      if (typeof layer === 'string') throw new Error(layer);
      await expect(pipeline(layer, new TarChecker('layer', true), new Writable({ write: (_c, _e, d) => d() }))).resolves.toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
