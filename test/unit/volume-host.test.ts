import { afterAll, describe, expect, it } from 'vitest';
import { closeSync, lstatSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import tar from 'tar-stream';
import type { ContainerInspect } from '../../src/engine/containers.js';
import type { Engine } from '../../src/engine/engine.js';
import type { PathStat } from '../../src/engine/container-io.js';
import { hostEntry } from '../../src/snapshot/layer-upper.js';
import { hostReadBlocker, mountedPaths, mountsSubpath, trustHostDir, utf8, type HostReadFacts } from '../../src/snapshot/volume-host.js';
import { allZero, zeroBytes, ZERO_BYTES_MAX } from '../../src/util/zeros.js';

const facts = (over: Partial<HostReadFacts> = {}): HostReadFacts => ({
  address: 'unix:///var/run/docker.sock',
  running: true,
  paused: true,
  mount: { type: 'volume', name: 'v', destination: '/data', anonymous: false },
  driver: 'local',
  hostPath: '/var/lib/docker/volumes/v/_data',
  mounted: ['/data', '/etc/hosts'],
  uid: 0,
  ...over,
});

describe('whether a volume may be read on this host', () => {
  it('lets a paused or stopped container on a local engine be read, as root', () => {
    expect(hostReadBlocker(facts())).toBeUndefined();
    expect(hostReadBlocker(facts({ running: false, paused: false }))).toBeUndefined();
    const bind = facts({ mount: { type: 'bind', name: '', destination: '/srv', source: '/home/x', anonymous: false }, driver: undefined, hostPath: '/home/x' });
    expect(hostReadBlocker(bind)).toBeUndefined();
  });

  it('sends to the engine: a remote engine, a container taken running, not root, another driver, a subpath, no host path, a mount inside', () => {
    expect(hostReadBlocker(facts({ address: 'ssh://me@far' }))).toBe('the engine is reached at ssh://me@far, not on a local socket');
    expect(hostReadBlocker(facts({ address: 'tcp://127.0.0.1:2376 (TLS)' }))).toMatch(/not on a local socket/);
    expect(hostReadBlocker(facts({ paused: false }))).toBe('the container is taken running (neither paused nor stopped)');
    expect(hostReadBlocker(facts({ uid: 1000 }))).toBe('not run as root');
    expect(hostReadBlocker(facts({ driver: 'nfs-plugin' }))).toBe('its volume driver is nfs-plugin, not local');
    expect(hostReadBlocker(facts({ driver: undefined }))).toBe('its volume driver is unknown, not local');
    expect(hostReadBlocker(facts({ subpath: true }))).toBe('it shows a subpath of its volume');
    expect(hostReadBlocker(facts({ hostPath: undefined }))).toBe('the engine gives no host path for it');
    expect(hostReadBlocker(facts({ hostPath: 'relative/_data' }))).toBe('the engine gives no host path for it');
    expect(hostReadBlocker(facts({ mounted: ['/data', '/data/cache/'] }))).toBe('/data/cache is mounted inside it');
    expect(hostReadBlocker(facts({ mount: { type: 'volume', name: 'v', destination: '/etc', anonymous: false } }))).toBe('/etc/hosts is mounted inside it');
    // A sibling whose name starts alike is not inside.
    expect(hostReadBlocker(facts({ mounted: ['/data', '/database'] }))).toBeUndefined();
  });

  it("collects what the engine mounts, and a volume's subpath", () => {
    const info = {
      Mounts: [{ Destination: '/data' }, { Destination: '/data/x' }],
      HostConfig: { Tmpfs: { '/run/t': '' }, Mounts: [{ Target: '/data/', VolumeOptions: { Subpath: 'a/b' } }] },
    } as unknown as ContainerInspect;
    expect(mountedPaths(info)).toEqual(['/data', '/data/x', '/run/t', '/etc/hosts', '/etc/resolv.conf', '/etc/hostname', '/dev/shm', '/run/secrets']);
    expect(mountsSubpath(info, '/data')).toBe(true);
    expect(mountsSubpath(info, '/data/x')).toBe(false);
  });

  it('takes only UTF-8 names', () => {
    expect(utf8(Buffer.from('café-日本'))).toBe('café-日本');
    expect(utf8(Buffer.from([0x63, 0x61, 0x66, 0xe9]))).toBeUndefined();
  });
});

describe('shared zeros', () => {
  it('are known to be zero without a compare, and refuse more than they hold', () => {
    expect(allZero(zeroBytes(10))).toBe(true);
    expect(zeroBytes(ZERO_BYTES_MAX).length).toBe(ZERO_BYTES_MAX);
    expect(() => zeroBytes(ZERO_BYTES_MAX + 1)).toThrow(RangeError);
    expect(allZero(Buffer.from([0, 0, 1]))).toBe(false);
  });
});

/** A fake engine whose stat and archive header say what `paths` (container path → host path) are here, changed by `alter`. */
function engineSeeing(paths: Record<string, string>, alter: { mtime?: string; uid?: number } = {}): Engine {
  return {
    statPath: (_id: string, path: string): Promise<PathStat | undefined> => {
      const host = paths[path] ? hostEntry(lstatSync(paths[path], { bigint: true })) : undefined;
      return Promise.resolve(host && { name: path, linkTarget: '', ...host, ...(alter.mtime ? { mtime: alter.mtime } : {}) });
    },
    getArchive: (_id: string, path: string): Promise<Readable> => {
      const st = lstatSync(paths[path]);
      const pack = tar.pack();
      pack.entry({ name: 'data/', type: 'directory', mode: st.mode & 0o7777, uid: alter.uid ?? st.uid, gid: st.gid, mtime: st.mtime });
      pack.finalize();
      return Promise.resolve(pack as unknown as Readable);
    },
  } as unknown as Engine;
}

describe("a volume's directory checked against the engine", () => {
  const dir = mkdtempSync(join(tmpdir(), 'vhost-'));
  const root = join(dir, 'data');
  mkdirSync(root);
  writeFileSync(join(root, 'a'), 'a');
  writeFileSync(join(root, 'b'), 'b');
  symlinkSync(root, join(dir, 'link'));
  const paths = { '/data': root, '/data/a': join(root, 'a'), '/data/b': join(root, 'b') };
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('is trusted when the root and its entries stat alike and the archive header has the same owner', async () => {
    const trusted = await trustHostDir(engineSeeing(paths), 'c', '/data', root);
    if (typeof trusted === 'string') throw new Error(trusted);
    expect(trusted.path).toBe(root);
    expect(await trusted.owner).toBeUndefined();
    closeSync(trusted.fd);
  });

  it('is not when a time differs, the owner differs, an entry is missing there, or the path is a symlink', async () => {
    expect(await trustHostDir(engineSeeing(paths, { mtime: '2001-01-01T00:00:00Z' }), 'c', '/data', root)).toBe(
      '/data here is not what the engine sees there (mode, size or time differ)',
    );
    const other = await trustHostDir(engineSeeing(paths, { uid: 4242 }), 'c', '/data', root);
    if (typeof other === 'string') throw new Error(other);
    closeSync(other.fd);
    expect(await other.owner).toMatch(/another owner, mode or time in the engine's archive/);
    expect(await trustHostDir(engineSeeing({ '/data': root }), 'c', '/data', root)).toMatch(/not what the engine sees there/);
    expect(await trustHostDir(engineSeeing(paths), 'c', '/data', join(dir, 'link'))).toMatch(/cannot be opened here as a directory \(ENOTDIR\)/);
    expect(await trustHostDir(engineSeeing(paths), 'c', '/data', join(dir, 'none'))).toMatch(/\(ENOENT\)/);
  });
});
