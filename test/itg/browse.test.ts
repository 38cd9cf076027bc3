import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { diff, extract, ls, type SetSource } from '../../src/commands.js';
import type { SourceDiff } from '../../src/browse/compare.js';
import { CLI_WORDS } from '../../src/core/words.js';
import { parseDestination } from '../../src/core/destination-input.js';
import type { PathListing, SetListing } from '../../src/browse/ls.js';
import { Resources, docker, quietLog, runContainer } from '../support/fixtures.js';
import { backUp, testEnv } from '../support/commands.js';

const deps = { log: quietLog, env: testEnv };
const MTIME = 1577934245; // 2020-01-02 03:04:05 UTC

/** Changes to the fixture image's files (a layer) and to two volumes, one of them mounted inside a layer directory. */
const SCRIPT = [
  'echo new > /etc/added && chmod 640 /etc/added && chown 1000:1000 /etc/added',
  'ln /etc/added /etc/hard',
  'echo changed >> /www/index.html',
  'rm /etc/group',
  'ln -s /www/index.html /etc/link',
  'mkdir /emptydir',
  'busybox mkfifo /etc/fifo',
  'busybox mknod /etc/null c 1 3',
  'printf alpha > /v/a.txt && chmod 600 /v/a.txt && chown 1000:1000 /v/a.txt',
  'mkdir -p /v/sub /v/empty && echo b > /v/sub/b.txt && ln -s ../a.txt /v/sub/link && ln /v/a.txt /v/hard',
  'busybox mkfifo /v/fifo',
  'touch -d "2020-01-02 03:04:05" /v/a.txt',
  'echo up > /www/up/u.txt',
  'rm -r /root && mkdir /root && echo r > /root/r',
].join(' && ');

describe('browsing a set: ls, extract, diff', () => {
  const res = new Resources(inject('runPrefix'), 'browse');
  const image = inject('fixtureImage');
  let from: SetSource;
  let app: string;
  let vol: string;
  let up: string;
  let bound: string;

  beforeAll(async () => {
    app = res.name('app');
    vol = res.volume('v');
    up = res.volume('up');
    from = { spec: parseDestination(`dir:${join(res.tempDir(), 'store')}`), credentials: { username: '', password: '' } };
    bound = res.tempDir();
    writeFileSync(join(bound, 'host.txt'), 'from the host');
    await runContainer(
      { name: app, Image: image, Cmd: ['sh', '-ec', SCRIPT], HostConfig: { Binds: [`${vol}:/v`, `${up}:/www/up`, `${bound}:/srv/b`] } },
      'exited',
    );
    await backUp({ containers: app, destination: from.spec.raw, tag: 'one', 'include-bind-mounts': 'true' });
  });
  afterAll(() => res.cleanup());

  const entry = (l: PathListing, path: string) => {
    const found = l.entries.filter((e) => e.path === path);
    expect(found, path).toHaveLength(1);
    return found[0];
  };

  it('without a container names each container and the archives it has, by where they land', async () => {
    const l = (await ls(from, 'one', undefined, deps)) as SetListing;
    expect(l.snapshot).toBe('one');
    expect(l.containers.map((c) => c.name)).toEqual([app]);
    expect(l.containers[0].sources.map((s) => [s.label, s.path])).toEqual([
      ['layer', '/'],
      [`bind ${bound}`, '/srv/b'],
      [`volume ${vol}`, '/v'],
      [`volume ${up}`, '/www/up'],
    ]);
  });

  it("lists the writable layer's changes (whiteouts as deletions) and the volumes' files, with their metadata", async () => {
    const l = (await ls(from, 'one', { container: app }, deps)) as PathListing;
    expect(l.entries.some((e) => e.path.includes('.wh.'))).toBe(false);
    expect(entry(l, '/etc/group')).toMatchObject({ type: 'deleted', source: 'layer' });
    // A directory made again after its removal hides the image's content: its entry, and an opaque marker.
    expect(
      l.entries
        .filter((e) => e.path === '/root')
        .map((e) => e.type)
        .sort(),
    ).toEqual(['directory', 'opaque']);
    expect(entry(l, '/etc/link')).toMatchObject({ type: 'symlink', linkname: '/www/index.html' });
    const pair = [entry(l, '/etc/added'), entry(l, '/etc/hard')];
    const file = pair.find((e) => e.type === 'file');
    expect(file).toMatchObject({ size: 4, mode: 0o640, uid: 1000, gid: 1000 });
    expect(pair.find((e) => e.type === 'link')?.linkname).toBe(file?.path);
    expect(entry(l, '/emptydir').type).toBe('directory');
    expect(entry(l, '/etc/fifo').type).toBe('fifo');
    expect(entry(l, '/etc/null')).toMatchObject({ type: 'character-device', device: { major: 1, minor: 3 } });
    expect(entry(l, '/www/index.html')).toMatchObject({ type: 'file', size: 'fixture\nchanged\n'.length });
    expect(entry(l, '/v/a.txt')).toMatchObject({ type: 'file', size: 5, mode: 0o600, uid: 1000, gid: 1000, mtime: MTIME, source: `volume ${vol}` });
    expect(entry(l, '/v/sub/link')).toMatchObject({ type: 'symlink', linkname: '../a.txt' });
    expect([entry(l, '/v/a.txt').type, entry(l, '/v/hard').type].sort()).toEqual(['file', 'link']);
    expect(entry(l, '/v/empty').type).toBe('directory');
    expect(entry(l, '/v/fifo').type).toBe('fifo');
    // The mount point's directory in the layer is hidden by the volume, as in the container.
    expect(entry(l, '/www/up').source).toBe(`volume ${up}`);
    expect(entry(l, '/www/up/u.txt')).toMatchObject({ size: 3, source: `volume ${up}` });
    expect(entry(l, '/srv/b/host.txt')).toMatchObject({ type: 'file', size: 'from the host'.length, source: `bind ${bound}` });
  });

  it("shows no writable layer for a container that changed nothing, committed or read on this host, never the image's top layer", async () => {
    const idle = res.name('idle');
    await runContainer({ name: idle, Image: image, Cmd: ['true'] }, 'created');
    // layer-compaction 0: committed by the engine, which adds no layer when nothing changed (Engine 20.10).
    for (const [tag, extra] of [
      ['idle-commit', { 'layer-compaction': '0' }],
      ['idle-host', {}],
    ] as const) {
      const result = await backUp({ containers: idle, destination: from.spec.raw, tag, ...extra });
      expect(result.containers[0].error, tag).toBeUndefined();
      const l = (await ls(from, tag, { container: idle }, deps)) as PathListing;
      expect(
        l.entries.filter((e) => e.source === 'layer'),
        tag,
      ).toEqual([]);
      await expect(ls(from, tag, { container: idle, path: '/etc/passwd' }, deps), tag).rejects.toThrow(`Snapshot ${tag}: ${idle} has nothing at /etc/passwd`);
    }
  });

  it('with a path lists that subtree only, and names a path with nothing as an error', async () => {
    const l = (await ls(from, 'one', { container: app, path: '/v/sub' }, deps)) as PathListing;
    expect(l.entries.map((e) => e.path)).toEqual(['/v/sub', '/v/sub/b.txt', '/v/sub/link']);
    const www = (await ls(from, 'one', { container: app, path: '/www' }, deps)) as PathListing;
    expect(www.entries.map((e) => `${e.path} ${e.source}`)).toEqual([
      '/www layer',
      '/www/index.html layer',
      `/www/up volume ${up}`,
      `/www/up/u.txt volume ${up}`,
    ]);
    await expect(ls(from, 'one', { container: app, path: '/nothing' }, deps)).rejects.toThrow(`Snapshot one: ${app} has nothing at /nothing`);
    await expect(ls(from, 'one', { container: 'ghost' }, deps)).rejects.toThrow(`Snapshot one has no container ghost. Expected one of: ${app}.`);
  });

  const take = (path: string, to: string, overwrite = false, keepSpecial = false) =>
    extract(from, 'one', { container: app, path }, { to, overwrite, keepSpecial, words: CLI_WORDS }, deps);

  it("extracts a volume's directory with its modes, owners, mtimes, links, empty directory and fifo", async () => {
    const to = res.tempDir();
    const r = await take('/v', to);
    expect(r.skipped).toEqual([]);
    const a = lstatSync(join(to, 'v/a.txt'));
    expect(readFileSync(join(to, 'v/a.txt'), 'utf8')).toBe('alpha');
    expect([a.mode & 0o7777, a.uid, a.gid, Math.floor(a.mtimeMs / 1000)]).toEqual([0o600, 1000, 1000, MTIME]);
    expect(lstatSync(join(to, 'v/hard')).ino).toBe(a.ino);
    expect(readlinkSync(join(to, 'v/sub/link'))).toBe('../a.txt');
    expect(readFileSync(join(to, 'v/sub/b.txt'), 'utf8')).toBe('b\n');
    expect(readdirSync(join(to, 'v/empty'))).toEqual([]);
    expect(lstatSync(join(to, 'v/fifo')).isFIFO()).toBe(true);
    expect(r.written).toEqual({ files: 2, directories: 3, links: 2, special: 1 });
  });

  it('extracts one file of the layer and one of a bind mount, and a layer directory without what was deleted, with its device only with keepSpecial', async () => {
    const one = res.tempDir();
    await take('/etc/added', one);
    expect(readdirSync(one)).toEqual(['added']);
    await take('/srv/b/host.txt', one);
    expect(readFileSync(join(one, 'host.txt'), 'utf8')).toBe('from the host');
    const st = lstatSync(join(one, 'added'));
    expect([readFileSync(join(one, 'added'), 'utf8'), st.mode & 0o7777, st.uid]).toEqual(['new\n', 0o640, 1000]);
    const plain = await take('/etc', res.tempDir());
    expect(plain.skipped).toEqual(['/etc/null: a device, made only with --keep-special when run as root; not written']);
    const etc = res.tempDir();
    await take('/etc', etc, false, true);
    expect(readdirSync(join(etc, 'etc')).sort()).toEqual(['added', 'fifo', 'hard', 'link', 'null']);
    expect(lstatSync(join(etc, 'etc/hard')).ino).toBe(lstatSync(join(etc, 'etc/added')).ino);
    expect(readlinkSync(join(etc, 'etc/link'))).toBe('/www/index.html');
    const dev = lstatSync(join(etc, 'etc/null'));
    expect([dev.isCharacterDevice(), dev.rdev]).toEqual([true, (1 << 8) | 3]);
  });

  it('refuses to overwrite an existing file unless asked, and never writes through a symlink in the way', async () => {
    const to = res.tempDir();
    writeFileSync(join(to, 'added'), 'mine');
    await expect(take('/etc/added', to)).rejects.toThrow(`${join(to, 'added')} exists. Expected a --to directory without it, or --overwrite.`);
    expect(readFileSync(join(to, 'added'), 'utf8')).toBe('mine');
    await take('/etc/added', to, true);
    expect(readFileSync(join(to, 'added'), 'utf8')).toBe('new\n');
    const outside = res.tempDir();
    const trap = res.tempDir();
    symlinkSync(outside, join(trap, 'v'));
    await expect(take('/v', trap)).rejects.toThrow('/v exists.');
    await take('/v', trap, true);
    expect(readdirSync(outside)).toEqual([]);
    expect(lstatSync(join(trap, 'v')).isDirectory()).toBe(true);
    mkdirSync(join(trap, 'nothing'));
    await expect(take('/nothing', join(trap, 'nothing'))).rejects.toThrow(`${app} has nothing at /nothing`);
    await expect(take('/etc/group', join(trap, 'nothing'))).rejects.toThrow(`${app} has nothing at /etc/group`);
  });

  /** First run: the state backed up as d1; second run: the changes d2 holds. */
  const TWO_RUNS = [
    'if [ ! -f /tmp/state ]; then',
    '  touch /tmp/state; echo k > /etc/keep; echo 1 > /etc/edit; echo g > /etc/gone; echo m > /etc/mode;',
    '  echo s > /w/same; echo 1 > /w/edit; echo g > /w/gone; echo p > /w/perm; echo u > /u/file;',
    'else',
    '  echo 2 > /etc/edit; rm /etc/gone /www/index.html; echo n > /etc/new; chmod 600 /etc/mode;',
    '  echo 22 > /w/edit; rm /w/gone; echo n > /w/new; chown 1000 /w/perm; ln -s same /w/sym;',
    'fi',
  ].join('\n');

  it('diffs two sets per container and mount: added, changed (and how), removed; a mount that did not change', async () => {
    const name = res.name('diff');
    await runContainer(
      { name, Image: image, Cmd: ['sh', '-ec', TWO_RUNS], HostConfig: { Binds: [`${res.volume('w')}:/w`, `${res.volume('u')}:/u`] } },
      'exited',
    );
    await backUp({ containers: name, destination: from.spec.raw, tag: 'd1' });
    const c = docker.getContainer(name);
    await c.start();
    await c.wait();
    await backUp({ containers: name, destination: from.spec.raw, tag: 'd2' });
    const d = await diff(from, 'd1', 'd2', deps);
    expect([d.from, d.to, d.containers.map((x) => [x.name, x.status])]).toEqual(['d1', 'd2', [[name, 'compared']]]);
    const [layer, u, w] = d.containers[0].sources;
    const files = (s: SourceDiff) => s.changes.filter((x) => !['/etc', '/www', '/w', '/u'].includes(x.path));
    expect([layer.label, layer.status]).toEqual(['layer', 'changed']);
    expect(files(layer).map((x) => [x.path, x.change])).toEqual([
      ['/etc/edit', 'changed'],
      ['/etc/gone', 'removed'],
      ['/etc/mode', 'changed'],
      ['/etc/new', 'added'],
      ['/www/index.html', 'removed'],
    ]);
    expect(files(layer)[0].fields).toContain('content');
    expect(files(layer)[2].fields).toEqual(['mode']);
    expect([u.path, u.status, u.changes]).toEqual(['/u', 'unchanged', []]);
    expect([w.path, w.status]).toEqual(['/w', 'changed']);
    expect(files(w).map((x) => [x.path, x.change, x.fields])).toEqual([
      ['/w/edit', 'changed', expect.arrayContaining(['size'])],
      ['/w/gone', 'removed', undefined],
      ['/w/new', 'added', undefined],
      ['/w/perm', 'changed', ['owner']],
      ['/w/sym', 'added', undefined],
    ]);
    const across = await diff(from, 'one', 'd1', deps);
    expect(across.containers.map((x) => [x.name, x.status])).toEqual(
      [
        [app, 'removed'],
        [name, 'added'],
      ].sort((a, b) => a[0].localeCompare(b[0])),
    );
  });
});
