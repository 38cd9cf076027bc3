import { describe, expect, it } from 'vitest';
import { effectiveCapabilities, opaqueDirs, overlayChange, upperLayerTar } from '../../src/snapshot/layer-upper-tar.js';
import { childConfig } from '../../src/snapshot/layer-store.js';

const b64 = (s: string) => Buffer.from(s, 'latin1').toString('base64');

/** An lstat as overlayChange reads it. */
function stat(kind: 'chr' | 'dir' | 'file', rdev = 0n, ino = 1n, nlink = 1n) {
  return { dev: 1n, ino, nlink, rdev, isCharacterDevice: () => kind === 'chr', isDirectory: () => kind === 'dir' };
}

describe("an overlay upper directory's attributes", () => {
  it('gives the opaque directories, and leaves out the attributes a diff does not depend on', () => {
    const xattrs = new Map<string, Record<string, string>>([
      ['www', { 'trusted.overlay.opaque': b64('y') }],
      ['app/a', { 'trusted.overlay.origin': b64('\x00\xfb') }],
      ['.', { 'trusted.overlay.impure': b64('y') }],
    ]);
    expect(opaqueDirs(xattrs)).toEqual(new Set(['www']));
  });

  it('says why for a redirect, a metacopy, an opaque value other than y, or an unknown overlay attribute', () => {
    expect(opaqueDirs(new Map([['moved', { 'trusted.overlay.redirect': b64('/www') }]]))).toBe('/moved has trusted.overlay.redirect');
    expect(opaqueDirs(new Map([['bin/big', { 'trusted.overlay.metacopy': '' }]]))).toBe('/bin/big has trusted.overlay.metacopy');
    expect(opaqueDirs(new Map([['d', { 'trusted.overlay.opaque': b64('x') }]]))).toBe('/d has trusted.overlay.opaque other than y');
    expect(opaqueDirs(new Map([['d', { 'trusted.overlay.whiteout': '' }]]))).toBe('/d has trusted.overlay.whiteout');
  });
});

describe("the entries of a layer made from an upper directory (moby's overlayWhiteoutConverter)", () => {
  it('turns a 0:0 character device into .wh.NAME, mode 0600, with its owner and mtime; a later link to it keeps the first name', () => {
    const change = overlayChange(new Set());
    const mtime = new Date(1_000_000_000_000);
    const first = change(stat('chr', 0n, 7n, 2n), { name: 'bin/seq', mode: 0o644, uid: 5, gid: 6, mtime }, 'bin/seq');
    expect(first).toEqual({ replace: { name: 'bin/.wh.seq', type: 'file', size: 0, mode: 0o600, uid: 5, gid: 6, mtime } });
    const second = change(stat('chr', 0n, 7n, 2n), { name: 'sort', mode: 0o644, mtime }, 'sort');
    expect(second?.replace).toMatchObject({ name: '.wh.sort', linkname: 'bin/seq' });
    // Another device is an entry as it is.
    expect(change(stat('chr', 0x0103n), { name: 'dev/null' }, 'dev/null')).toBeUndefined();
  });

  it('follows an opaque directory with .wh..wh..opq: its owner and permission bits, a regular empty file', () => {
    const change = overlayChange(new Set(['www']));
    const out = change(stat('dir'), { name: 'www/', mode: 0o4755, uid: 1, gid: 2, mtime: new Date(5000) }, 'www');
    // The regular-file type bit is kept: tar-stream writes the 0o7777 bits, and reads a mode of 0 as none given.
    expect(out).toEqual({ after: [{ name: 'www/.wh..wh..opq', type: 'file', size: 0, mode: 0o100755, uid: 1, gid: 2, mtime: new Date(0) }] });
    const closed = change(stat('dir'), { name: 'www/', mode: 0o40000, uid: 0, gid: 0, mtime: new Date(0) }, 'www');
    expect(closed?.after?.[0].mode).toBe(0o100000);
    expect(change(stat('dir'), { name: 'etc/' }, 'etc')).toBeUndefined();
  });
});

describe('the config of a layer made on this host', () => {
  it("is the base's with the container's config, one more diff ID and history entry, created now", () => {
    const base = {
      architecture: 'amd64',
      os: 'linux',
      config: { Cmd: ['sh'] },
      container: 'builder',
      container_config: { Cmd: ['/bin/sh', '-c', 'x'] },
      created: '2020-01-01T00:00:00Z',
      rootfs: { type: 'layers', diff_ids: ['sha256:a'] },
      history: [{ created: '2020-01-01T00:00:00Z', created_by: 'x' }],
    };
    const out = JSON.parse(
      childConfig(Buffer.from(JSON.stringify(base)), { Cmd: ['sleep', '1'], Env: ['A=1'] }, 'sha256:b', '2026-12-02T00:00:00.000Z').toString(),
    ) as Record<string, unknown>;
    expect(out).toEqual({
      architecture: 'amd64',
      os: 'linux',
      config: { Cmd: ['sleep', '1'], Env: ['A=1'] },
      created: '2026-12-02T00:00:00.000Z',
      rootfs: { type: 'layers', diff_ids: ['sha256:a', 'sha256:b'] },
      history: [
        { created: '2020-01-01T00:00:00Z', created_by: 'x' },
        { created: '2026-12-02T00:00:00.000Z', created_by: 'sleep 1' },
      ],
    });
  });
});

describe('who may make the layer on this host', () => {
  it("reads the effective capabilities from /proc/self/status's CapEff line", () => {
    expect(effectiveCapabilities('Name:\tnode\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n')).toBe(0x1ffffffffffn);
    expect(effectiveCapabilities('Name:\tnode\n')).toBeUndefined();
  });

  it('refuses root without CAP_SYS_ADMIN (trusted.* attributes hidden: opaque directories would be missed)', async () => {
    // Docker's default capability set for a container (no CAP_SYS_ADMIN, bit 21).
    const dockerDefault = 0xa80425fbn;
    expect(await upperLayerTar({ root: '/nonexistent' } as never, undefined, 0, dockerDefault)).toBe(
      'run without CAP_SYS_ADMIN (overlay attributes cannot be read)',
    );
    expect(await upperLayerTar({ root: '/nonexistent' } as never, undefined, 1000, 0x1ffffffffffn)).toBe('not run as root');
  });
});
