import { afterAll, describe, expect, it } from 'vitest';
import { chmodSync, existsSync, mkdirSync, lstatSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { extractPath } from '../../src/browse/extract.js';
import { listPath } from '../../src/browse/ls.js';
import { storeBlob } from '../../src/snapshot/blobs.js';
import { volumeMediaType, type ContainerRecord, type SnapshotSet } from '../../src/snapshot/manifest.js';
import { SET_SCOPE } from '../../src/destinations/types.js';
import { CLI_WORDS } from '../../src/core/words.js';
import { MemoryDestination } from '../support/memory-destination.js';

type Entry = Partial<tar.Header> & { name: string; body?: string };

/** A set of one container `c` whose one volume at /v holds the archive `entries`, in memory. */
async function setWith(entries: Entry[]): Promise<{ dest: MemoryDestination; set: SnapshotSet }> {
  const pack = tar.pack();
  for (const { body, ...h } of entries) pack.entry({ mode: 0o644, ...h }, body ?? '');
  pack.finalize();
  const dest = new MemoryDestination();
  const blob = await storeBlob(pack as unknown as Readable, [{ dest, scope: SET_SCOPE }], volumeMediaType('gzip'));
  const c = {
    name: 'c',
    image: { layers: [] },
    volumes: [{ type: 'volume', name: 'vol', anonymous: false, destination: '/v', blob }],
  } as unknown as ContainerRecord;
  return { dest, set: { tag: 't', containers: [c] } as unknown as SnapshotSet };
}

describe('extract guards', () => {
  const dirs: string[] = [];
  const temp = () => {
    const d = mkdtempSync(join(tmpdir(), 'cs-extract-'));
    dirs.push(d);
    return d;
  };
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  it('leaves out names that climb out of the archive and hard links that point out of it', async () => {
    const { dest, set } = await setWith([
      { name: 'v/', type: 'directory', mode: 0o755 },
      { name: 'v/ok', body: 'fine' },
      { name: 'v/../../escape', body: 'bad' },
      { name: 'v/hard', type: 'link', linkname: '../../etc/passwd' },
    ]);
    const base = temp();
    const to = join(base, 'out');
    const warnings: string[] = [];
    const r = await extractPath(dest, set, { container: 'c', path: '/v' }, { to, overwrite: false, words: CLI_WORDS, warn: (m) => warnings.push(m) });
    expect(readdirSync(join(to, 'v'))).toEqual(['ok']);
    expect(readdirSync(base)).toEqual(['out']);
    expect(r.skipped).toHaveLength(2);
    expect(warnings.join('\n')).toMatch(/entry 'v\/\.\.\/\.\.\/escape' climbs out of its archive/);
    const l = await listPath(dest, set, { container: 'c' });
    expect(l.entries.map((e) => e.path)).toEqual(['/v', '/v/ok']);
    expect(l.unsafe).toEqual(['v/../../escape', 'v/hard -> ../../etc/passwd']);
  });

  it('refuses to write through a symlink the archive itself made', async () => {
    const outside = temp();
    const { dest, set } = await setWith([
      { name: 'v/', type: 'directory', mode: 0o755 },
      { name: 'v/evil', type: 'symlink', linkname: outside },
      { name: 'v/evil/planted', body: 'bad' },
    ]);
    const to = temp();
    await expect(extractPath(dest, set, { container: 'c', path: '/v' }, { to, overwrite: true, words: CLI_WORDS, warn: () => undefined })).rejects.toThrow(
      `${join(to, 'v/evil')} is a symlink; nothing is written through it.`,
    );
    expect(readdirSync(outside)).toEqual([]);
    expect(lstatSync(join(to, 'v/evil')).isSymbolicLink()).toBe(true);
    expect(existsSync(join(outside, 'planted'))).toBe(false);
  });

  it('never hard-links to a file reached through a symlink (which could be outside the directory)', async () => {
    const outside = temp();
    writeFileSync(join(outside, 'secret'), 'host file');
    const { dest, set } = await setWith([
      { name: 'v/', type: 'directory', mode: 0o755 },
      { name: 'v/evil', type: 'symlink', linkname: outside },
      { name: 'v/x', type: 'link', linkname: 'v/evil/secret' },
    ]);
    const to = temp();
    const r = await extractPath(dest, set, { container: 'c', path: '/v' }, { to, overwrite: false, words: CLI_WORDS, warn: () => undefined });
    expect(existsSync(join(to, 'v/x'))).toBe(false);
    expect(r.skipped).toEqual(['/v/x: a hard link to /v/evil/secret, which this extract did not write; not written']);
    expect(lstatSync(join(outside, 'secret')).nlink).toBe(1);
  });

  it('never sets the attributes of a directory the archive replaced with a symlink on what the symlink points at', async () => {
    const outside = temp();
    chmodSync(outside, 0o755);
    utimesSync(outside, 1_000_000, 1_000_000);
    const before = statSync(outside);
    const { dest, set } = await setWith([
      { name: 'v/', type: 'directory', mode: 0o755 },
      { name: 'v/d/', type: 'directory', mode: 0o777, uid: 4242, gid: 4242, mtime: new Date(2_000_000_000) },
      { name: 'v/d', type: 'symlink', linkname: outside },
    ]);
    const to = temp();
    await extractPath(dest, set, { container: 'c', path: '/v' }, { to, overwrite: true, words: CLI_WORDS, warn: () => undefined });
    const after = statSync(outside);
    expect({ mode: after.mode, uid: after.uid, gid: after.gid, mtime: after.mtimeMs }).toEqual({
      mode: before.mode,
      uid: before.uid,
      gid: before.gid,
      mtime: before.mtimeMs,
    });
    expect(lstatSync(join(to, 'v/d')).isSymbolicLink()).toBe(true);
  });

  it('says that the archive names a path twice when that, not the directory, is the clash', async () => {
    const outside = temp();
    const { dest, set } = await setWith([
      { name: 'v/', type: 'directory', mode: 0o755 },
      { name: 'v/d/', type: 'directory', mode: 0o777 },
      { name: 'v/d', type: 'symlink', linkname: outside },
    ]);
    const to = temp();
    await expect(extractPath(dest, set, { container: 'c', path: '/v' }, { to, overwrite: false, words: CLI_WORDS, warn: () => undefined })).rejects.toThrow(
      `volume vol: the archive names /v/d twice; ${join(to, 'v/d')} is its first entry. Expected --overwrite to let the later entry replace it.`,
    );
    expect(lstatSync(join(to, 'v/d')).isDirectory()).toBe(true);
  });

  it('hard-links only to a file this extract wrote, never to one that was already in the directory', async () => {
    const to = temp();
    mkdirSync(join(to, 'v'));
    writeFileSync(join(to, 'v/secret'), 'was here');
    const { dest, set } = await setWith([
      { name: 'v/', type: 'directory', mode: 0o755 },
      { name: 'v/own', body: 'from the set' },
      { name: 'v/x', type: 'link', linkname: 'v/secret' },
      { name: 'v/y', type: 'link', linkname: 'v/own' },
    ]);
    const r = await extractPath(dest, set, { container: 'c', path: '/v' }, { to, overwrite: false, words: CLI_WORDS, warn: () => undefined });
    expect(existsSync(join(to, 'v/x'))).toBe(false);
    expect(r.skipped).toEqual(['/v/x: a hard link to /v/secret, which this extract did not write; not written']);
    expect(lstatSync(join(to, 'v/secret')).nlink).toBe(1);
    expect(lstatSync(join(to, 'v/y')).ino).toBe(lstatSync(join(to, 'v/own')).ino);
  });

  it('leaves devices out and drops setuid/setgid bits of files unless keepSpecial asks for them', async () => {
    const { dest, set } = await setWith([
      { name: 'v/', type: 'directory', mode: 0o755 },
      { name: 'v/null', type: 'character-device', mode: 0o666, devmajor: 1, devminor: 3 },
      { name: 'v/su', body: '#!/bin/sh', mode: 0o4755 },
      { name: 'v/sg', body: '#!/bin/sh', mode: 0o2755 },
    ]);
    const warnings: string[] = [];
    const plain = temp();
    const r = await extractPath(dest, set, { container: 'c', path: '/v' }, { to: plain, overwrite: false, words: CLI_WORDS, warn: (m) => warnings.push(m) });
    expect(readdirSync(join(plain, 'v')).sort()).toEqual(['sg', 'su']);
    expect(['su', 'sg'].map((f) => lstatSync(join(plain, 'v', f)).mode & 0o7777)).toEqual([0o755, 0o755]);
    expect([r.skipped, r.stripped]).toEqual([['/v/null: a device, made only with --keep-special when run as root; not written'], ['/v/su', '/v/sg']]);
    expect(warnings).toContain('/v/su: setuid/setgid bits dropped (--keep-special keeps them)');
    const kept = temp();
    await extractPath(dest, set, { container: 'c', path: '/v' }, { to: kept, overwrite: false, keepSpecial: true, words: CLI_WORDS, warn: () => undefined });
    expect(['su', 'sg'].map((f) => lstatSync(join(kept, 'v', f)).mode & 0o7777)).toEqual([0o4755, 0o2755]);
    if (process.getuid?.() === 0) expect(lstatSync(join(kept, 'v/null')).rdev).toBe((1 << 8) | 3);
  });
});
