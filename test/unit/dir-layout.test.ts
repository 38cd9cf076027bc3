import { hostname } from 'node:os';
import { basename, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DirLayout, blobName, tmpOwner } from '../../src/destinations/dir/layout.js';
import { DestinationError } from '../../src/destinations/types.js';

describe('dir: layout', () => {
  const layout = new DirLayout('/backups/x');
  const digest = `sha256:${'ab'.repeat(32)}`;

  it('puts blobs under blobs/sha256/<hex> and tags under sets/<tag>.json', () => {
    expect(layout.blobPath(digest)).toBe(join('/backups/x', 'blobs', 'sha256', 'ab'.repeat(32)));
    expect(layout.setPath('t1')).toBe(join('/backups/x', 'sets', 't1.json'));
  });

  it('refuses a name that is not a sha256 digest', () => {
    expect(() => blobName('sha256:../../etc/passwd')).toThrow(DestinationError);
    expect(() => layout.blobPath('md5:00')).toThrow(DestinationError);
  });

  it('names temporary files so that their process can be told from the name', () => {
    for (const [kind, length] of [
      ['blob', 6],
      ['set', 4],
    ] as const) {
      const path = layout.tmpPath(kind, length);
      expect(path.startsWith(join('/backups/x', '.tmp'))).toBe(true);
      expect(tmpOwner(basename(path))).toEqual({ host: hostname(), pid: process.pid });
    }
    expect(tmpOwner('notes.txt')).toBeUndefined();
  });
});
