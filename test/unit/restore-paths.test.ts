import { describe, expect, it } from 'vitest';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { keepOnly, partlyWritten, pathsPerContainer, sparseWithin } from '../../src/snapshot/restore-paths.js';
import type { ContainerRecord } from '../../src/snapshot/manifest.js';
import { parseContainerPath } from '../../src/core/restore-input.js';

async function names(archive: Readable): Promise<string[]> {
  const extract = tar.extract();
  archive.pipe(extract);
  const out: string[] = [];
  for await (const e of extract) {
    out.push(`${e.header.name}${e.header.type === 'link' ? ` => ${e.header.linkname}` : ''}`);
    e.resume();
  }
  return out;
}

describe('restore paths', () => {
  it('keeps the entries at and below the paths, and hard links only to what it keeps', async () => {
    const pack = tar.pack();
    for (const name of ['data/', 'data/keep', 'data/up/', 'data/up/a', 'data/upper', 'data/other/x'])
      pack.entry({ name, type: name.endsWith('/') ? 'directory' : 'file' }, '');
    pack.entry({ name: 'data/up/in', type: 'link', linkname: 'data/up/a' });
    pack.entry({ name: 'data/up/out', type: 'link', linkname: 'data/keep' });
    pack.finalize();
    expect(await names(keepOnly(pack as unknown as Readable, '/srv/data', ['/srv/data/up', '/srv/data/other/x']))).toEqual([
      'data/up/',
      'data/up/a',
      'data/other/x',
      'data/up/in => data/up/a',
    ]);
  });

  it('takes absolute paths below /, normalized', () => {
    expect(parseContainerPath(' /var//lib/data/ ', 'paths')).toBe('/var/lib/data');
    expect(() => parseContainerPath('var/lib', 'paths')).toThrow("Invalid paths 'var/lib'. Expected an absolute path below /");
    expect(() => parseContainerPath('/', '--paths')).toThrow("Invalid --paths '/'.");
    expect(() => parseContainerPath('/a/..', '--paths')).toThrow("Invalid --paths '/a/..'.");
  });

  it('gives each container the paths in its mounts when none is named, and every path to named ones', () => {
    const blob = { mediaType: 'x', digest: 'sha256:a', size: 0, contentDigest: 'sha256:a', contentSize: 0 };
    const c = (name: string, destination: string) =>
      ({ name, image: { layers: [blob] }, volumes: [{ type: 'volume', name: `${name}-v`, destination, blob }] }) as unknown as ContainerRecord;
    const [db, web] = [c('db', '/var/lib/db'), c('web', '/srv/uploads')];
    const names = (r: Array<{ c: ContainerRecord; paths: string[] }>) => r.map((x) => [x.c.name, x.paths]);
    expect(names(pathsPerContainer([db, web], { containers: [], paths: ['/srv/uploads/2026'] }))).toEqual([['web', ['/srv/uploads/2026']]]);
    expect(names(pathsPerContainer([db, web], { containers: [], paths: ['/srv/uploads/a', '/var/lib/db/t'] }))).toEqual([
      ['db', ['/var/lib/db/t']],
      ['web', ['/srv/uploads/a']],
    ]);
    expect(names(pathsPerContainer([db], { containers: ['db'], paths: ['/srv/uploads/a'] }))).toEqual([['db', ['/srv/uploads/a']]]);
    expect(() => pathsPerContainer([db, web], { containers: [], paths: ['/etc/x'] })).toThrow('No container of the set has a mount at /etc/x.');
  });

  it('names the paths written, being written and not written once a write into a live volume had begun', () => {
    expect(partlyWritten(['/a', '/b'], { written: [], writing: [] })).toBeUndefined();
    expect(partlyWritten(['/a', '/b', '/c'], { written: ['/a'], writing: ['/b'] })).toBe(
      'paths partly written into the live volumes, not undone (written: /a; interrupted while writing: /b; not written: /c)',
    );
    expect(partlyWritten(['/a'], { written: [], writing: ['/a'] })).toBe(
      'paths partly written into the live volumes, not undone (written: none; interrupted while writing: /a)',
    );
  });
});

describe('sparseWithin', () => {
  it('keeps the recorded sparse files inside the paths written, and passes on a set that names none', () => {
    const record = { entries: [], sockets: [], sparse: ['db/a', 'db/sub/b', 'dbx/c', 'log'] };
    expect(sparseWithin(record, '/var/lib/data', ['/var/lib/data/db'])).toEqual(['db/a', 'db/sub/b']);
    expect(sparseWithin(record, '/var/lib/data', ['/var/lib/data/log', '/var/lib/data/dbx/c'])).toEqual(['dbx/c', 'log']);
    expect(sparseWithin({ ...record, sparse: 'many' }, '/d', ['/d/x'])).toBe('many');
    expect(sparseWithin({ entries: [], sockets: [] }, '/d', ['/d/x'])).toBeUndefined();
    expect(sparseWithin(undefined, '/d', ['/d/x'])).toBeUndefined();
  });
});
