import { describe, expect, it } from 'vitest';
import { entrySegments, layerName, mountName, normalizePath, parseTarget, within } from '../../src/browse/paths.js';
import { ownerOf, sourcesUnder, type Source } from '../../src/browse/sources.js';
import { toEntry } from '../../src/browse/entries.js';
import { modeString } from '../../src/browse/format.js';
import { parseCommandLine } from '../../src/cli-args.js';

const blob = { mediaType: 'x', digest: 'sha256:a', size: 0, contentDigest: 'sha256:a', contentSize: 0 };
const src = (kind: Source['kind'], root: string): Source => ({ kind, root, label: `${kind} ${root}`, blob, scope: { set: true } });

describe('browse paths', () => {
  it('parses CONTAINER[:PATH], normalizing the path and refusing a relative one', () => {
    expect(parseTarget('web', 'X')).toEqual({ container: 'web' });
    expect(parseTarget('web:/var//lib/', 'X')).toEqual({ container: 'web', path: '/var/lib' });
    expect(parseTarget('web:/../../etc', 'X')).toEqual({ container: 'web', path: '/etc' });
    expect(() => parseTarget('web:var', 'X')).toThrow("Invalid X 'web:var'. Expected an absolute PATH");
    expect(() => parseTarget('web', 'X', true)).toThrow('Expected CONTAINER:PATH');
    expect(() => parseTarget(':/x', 'X')).toThrow('Expected CONTAINER');
  });

  it('matches subtrees by whole segments', () => {
    expect(within('/data/x', '/data')).toBe(true);
    expect(within('/data', '/data')).toBe(true);
    expect(within('/database', '/data')).toBe(false);
    expect(within('/anything', '/')).toBe(true);
    expect(normalizePath('a/./b/')).toBe('/a/b');
  });

  it('refuses entry names that climb, and reads whiteouts as the image spec does', () => {
    expect(entrySegments('./a/b/')).toEqual(['a', 'b']);
    expect(entrySegments('a/../../etc/passwd')).toBeUndefined();
    expect(layerName('etc/.wh.group')).toEqual({ kind: 'deleted', path: '/etc/group' });
    expect(layerName('root/.wh..wh..opq')).toEqual({ kind: 'opaque', path: '/root' });
    expect(layerName('.wh.top')).toEqual({ kind: 'deleted', path: '/top' });
    expect(layerName('etc/x.wh.y')).toEqual({ kind: 'file', path: '/etc/x.wh.y' });
    expect(layerName('../x')).toBeUndefined();
  });

  it("places a volume archive's entries at its mount destination, and nothing outside it", () => {
    expect(mountName('data/', '/var/data')).toBe('/var/data');
    expect(mountName('data/a/b', '/var/data')).toBe('/var/data/a/b');
    expect(mountName('other/a', '/var/data')).toBeUndefined();
    expect(mountName('data/../x', '/var/data')).toBeUndefined();
  });

  it('gives each path to the deepest mount above it, and reads only the archives that can hold a subtree', () => {
    const layer = src('layer', '/');
    const www = src('volume', '/www');
    const up = src('volume', '/www/up');
    const all = [layer, www, up];
    expect(ownerOf('/etc/x', all)).toBe(layer);
    expect(ownerOf('/www', all)).toBe(www);
    expect(ownerOf('/www/up/a', all)).toBe(up);
    expect(ownerOf('/wwwx', all)).toBe(layer);
    expect(sourcesUnder('/', all)).toEqual(all);
    expect(sourcesUnder('/www', all)).toEqual([www, up]);
    expect(sourcesUnder('/www/up/a', all)).toEqual([up]);
    expect(sourcesUnder('/etc', all)).toEqual([layer]);
  });

  it('turns headers into entries: hard links as container paths, unsafe names and links refused', () => {
    const v = src('volume', '/v');
    const h = { name: 'v/b', type: 'link' as const, linkname: 'v/a', mode: 0o100644, uid: 1, gid: 2, size: 0, mtime: new Date(5000) };
    expect(toEntry(v, h)).toEqual({ entry: { path: '/v/b', type: 'link', linkname: '/v/a', size: 0, mode: 0o644, uid: 1, gid: 2, mtime: 5 } });
    expect(toEntry(v, { ...h, linkname: '../../etc/shadow' })).toEqual({ unsafe: 'v/b -> ../../etc/shadow' });
    expect(toEntry(src('layer', '/'), { ...h, name: 'etc/.wh.x' })).toMatchObject({ entry: { path: '/etc/x', type: 'deleted' } });
    expect(toEntry(v, { ...h, name: 'v/../../x', type: 'file' })).toEqual({ unsafe: 'v/../../x' });
  });

  it('writes modes as ls -l does', () => {
    expect(modeString({ type: 'directory', mode: 0o755 })).toBe('drwxr-xr-x');
    expect(modeString({ type: 'file', mode: 0o4755 })).toBe('-rwsr-xr-x');
    expect(modeString({ type: 'directory', mode: 0o1777 })).toBe('drwxrwxrwt');
    expect(modeString({ type: 'file', mode: 0o2640 })).toBe('-rw-r-S---');
    expect(modeString({ type: 'deleted', mode: 0 })).toBe('deleted');
  });

  it('takes operands where a command has them, and a switch there takes only true or false after it', () => {
    expect(parseCommandLine('ls', ['--json', 'one', 'web:/v'])).toEqual({ flags: new Map([['json', 'true']]), operands: ['one', 'web:/v'] });
    expect(parseCommandLine('ls', ['one', '--json', 'false']).flags.get('json')).toBe('false');
    // ls alone: the newest set (cli.ts).
    expect(parseCommandLine('ls', []).operands).toEqual([]);
    expect(() => parseCommandLine('ls', ['a', 'b', 'c'])).toThrow("ls takes [SNAPSHOT [CONTAINER[:PATH]]], given 'a' 'b' 'c'.");
    expect(() => parseCommandLine('diff', ['a'])).toThrow("diff takes SNAPSHOT1 SNAPSHOT2, given 'a'.");
    expect(() => parseCommandLine('list', ['x'])).toThrow("Unexpected argument 'x' for list.");
  });
});
