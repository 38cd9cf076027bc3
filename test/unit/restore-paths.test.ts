import { describe, expect, it } from 'vitest';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { keepOnly } from '../../src/snapshot/restore-paths.js';
import { parseContainerPath } from '../../src/core/options.js';

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
    for (const name of ['data/', 'data/keep', 'data/up/', 'data/up/a', 'data/upper', 'data/other/x']) pack.entry({ name, type: name.endsWith('/') ? 'directory' : 'file' }, '');
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
});
