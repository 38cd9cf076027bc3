import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { walkUpperDir } from '../../src/snapshot/layer-walk.js';

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
  const none = () => false;

  it('lists every path below the root with its host stat, and whiteouts as such', () => {
    const walk = walkUpperDir(root, none, 100);
    if (typeof walk === 'string') throw new Error(walk);
    expect([...walk.entries.keys()].sort()).toEqual([
      '/app',
      '/app/a',
      '/app/d',
      '/app/d/x',
      '/app/gone',
      '/app/root',
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
});
