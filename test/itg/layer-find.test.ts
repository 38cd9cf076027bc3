import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { findUpperDir, walkUpperDir, type UpperWalk } from '../../src/snapshot/layer-walk.js';
import { Resources, docker, runContainer, sh } from '../support/fixtures.js';

/** A walk's answer with its entries in path order, for comparing two walks. */
function sorted(walk: UpperWalk | string | undefined) {
  if (walk === undefined || typeof walk === 'string') return walk;
  return { ...walk, entries: [...walk.entries].sort(([a], [b]) => (a < b ? -1 : 1)), toEngine: [...walk.toEngine].sort() };
}

describe('the upper directory walked by find', () => {
  const res = new Resources(inject('runPrefix'), 'lfind');
  const app = res.name('app');
  let upper: string;

  beforeAll(async () => {
    await runContainer(
      { name: app, Image: inject('fixtureImage'), Cmd: ['sleep', '100000'], HostConfig: { Binds: [`${res.volume('data')}:/data`] } },
      'running',
    );
    // Every kind of path an upper directory holds: files (setuid, sticky, empty, with spaces and a
    // newline in the name, non-ASCII), directories (one made again: opaque), symlinks, a fifo,
    // devices, whiteouts (files of the image removed), times before 1970 and to the nanosecond, many files.
    await sh(
      app,
      [
        'mkdir -p /srv/a/b/c /srv/many && cd /srv',
        'echo x > a/file && chmod 4755 a/file && : > a/empty && chmod 1777 a/b',
        `printf 1 > 'a/with space' && printf 2 > "$(printf 'a/new\\nline')" && printf 3 > a/naïve`,
        'ln -s ../elsewhere a/link && ln -s /etc/passwd a/abs && mkfifo a/fifo && mknod a/tty c 5 0',
        'touch -d "1960-01-01 00:00:00" a/old && : > a/precise',
        'for i in $(seq 1 2000); do echo $i > many/$i; done',
        'rm -f /bin/true /etc/motd; rm -rf /usr/share/udhcpc; mkdir -p /usr/share/udhcpc',
        'echo data > /data/in-volume',
      ].join(' && '),
    );
    const info = await docker.getContainer(app).inspect();
    // A time to the nanosecond (busybox's touch takes whole seconds), through the container's root.
    execFileSync('touch', ['-d', '2001-02-03 04:05:06.123456789Z', `/proc/${info.State.Pid}/root/srv/a/precise`]);
    upper = (info.GraphDriver.Data as Record<string, string>).UpperDir;
    await docker.getContainer(app).pause();
  });
  afterAll(async () => {
    await docker
      .getContainer(app)
      .unpause()
      .catch(() => undefined);
    await res.cleanup();
  });

  const shadowed = (path: string) => path === '/data' || path.startsWith('/data/');

  it('finds every path, whiteout and stat the walk in this process finds, paths under a mount going to the engine alike', async () => {
    const found = await findUpperDir(upper, shadowed, 100_000);
    const walked = walkUpperDir(upper, shadowed, 100_000);
    expect(typeof found).toBe('object');
    expect(sorted(found)).toEqual(sorted(walked));
    const entries = new Map((found as UpperWalk).entries);
    expect(entries.get('/bin/true')).toBe('whiteout');
    expect(entries.get('/srv/a/new\nline')).toMatchObject({ size: 1 });
    expect(entries.get('/srv/a/precise')).toMatchObject({ mtime: '2001-02-03T04:05:06.123456789Z' });
    expect(entries.get('/srv/a/file')).toMatchObject({ mode: 0o755 | 0x800000 });
    expect(entries.get('/srv/a/tty')).toMatchObject({ mode: expect.any(Number) });
    // Before 1970: no RFC 3339 time here, so the engine stats it, in both walks.
    expect((found as UpperWalk).toEngine).toContain('/srv/a/old');
    expect((found as UpperWalk).entries.size).toBeGreaterThan(2000);
  });

  it('stops past maxTotal paths, truncated, as the walk in this process does', async () => {
    const found = await findUpperDir(upper, shadowed, 100);
    expect(found).toMatchObject({ truncated: true });
    expect(walkUpperDir(upper, shadowed, 100)).toMatchObject({ truncated: true });
  });

  it('gives the same reason as the walk in this process for a name that is not UTF-8', async () => {
    await docker.getContainer(app).unpause();
    await sh(app, `: > "/srv/a/b/$(printf 'bad\\377name')"`);
    await docker.getContainer(app).pause();
    const found = await findUpperDir(upper, shadowed, 100_000);
    expect(found).toBe('a name in /srv/a/b is not UTF-8');
    expect(walkUpperDir(upper, shadowed, 100_000)).toBe(found);
  });
});
