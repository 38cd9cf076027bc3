import { describe, expect, it } from 'vitest';
import { diffEntries, type DiffEntry } from '../../src/browse/diff.js';
import { diffText } from '../../src/browse/format.js';

const e = (path: string, more: Partial<DiffEntry> = {}): [string, DiffEntry] => [
  path,
  { path, type: 'file', size: 1, mode: 0o644, uid: 0, gid: 0, mtime: 10, digest: 'sha256:a', ...more },
];

describe('diff of two listings', () => {
  it('says what was added, changed (and in what) and removed, by path', () => {
    const a = new Map([e('/same'), e('/edit'), e('/gone'), e('/own'), e('/link', { type: 'symlink', linkname: 'x', digest: undefined })]);
    const b = new Map([
      e('/same'),
      e('/edit', { digest: 'sha256:b', mtime: 11 }),
      e('/new'),
      e('/own', { uid: 1000 }),
      e('/link', { type: 'symlink', linkname: 'y', digest: undefined }),
    ]);
    expect(diffEntries(a, b)).toEqual([
      { path: '/edit', change: 'changed', fields: ['mtime', 'content'] },
      { path: '/gone', change: 'removed' },
      { path: '/link', change: 'changed', fields: ['target'] },
      { path: '/new', change: 'added' },
      { path: '/own', change: 'changed', fields: ['owner'] },
    ]);
  });

  it('reads whiteouts of a layer as deletions, and leaves opaque markers out', () => {
    const a = new Map([
      e('/f'),
      e('/was-deleted', { type: 'deleted' }),
      e('/back', { type: 'deleted' }),
      e('/both', { type: 'deleted' }),
      e('/d', { type: 'opaque' }),
    ]);
    const b = new Map([e('/f', { type: 'deleted' }), e('/was-deleted'), e('/newly', { type: 'deleted' }), e('/both', { type: 'deleted' })]);
    expect(diffEntries(a, b)).toEqual([
      { path: '/back', change: 'added' },
      { path: '/f', change: 'removed' },
      { path: '/newly', change: 'removed' },
      { path: '/was-deleted', change: 'added' },
    ]);
  });

  it('prints a heading per archive with counts, a line per change, and containers in one set only', () => {
    const text = diffText({
      from: 'a',
      to: 'b',
      containers: [
        { name: 'gone', status: 'removed', sources: [] },
        {
          name: 'web',
          status: 'compared',
          sources: [
            {
              path: '/',
              label: 'layer',
              status: 'changed',
              changes: [
                { path: '/x', change: 'changed', fields: ['size', 'mtime'] },
                { path: '/y', change: 'added' },
              ],
            },
            { path: '/data', label: 'volume v', status: 'unchanged', changes: [] },
          ],
        },
      ],
    });
    expect(text.split('\n')).toEqual([
      'Snapshot a -> b:',
      'gone: container removed (only in a)',
      'web layer: 1 added, 1 changed, 0 removed',
      '  ~ /x (size, mtime)',
      '  + /y',
      'web volume v at /data: unchanged',
    ]);
  });
});
