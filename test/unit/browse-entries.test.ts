import { describe, expect, it } from 'vitest';
import { toEntry } from '../../src/browse/entries.js';
import type { Source } from '../../src/browse/sources.js';

const volume: Source = {
  kind: 'volume',
  root: '/data',
  label: 'volume v',
  blob: { mediaType: 'application/octet-stream', digest: 'sha256:0', size: 0, contentDigest: 'sha256:0', contentSize: 0 },
  scope: { set: true } as never,
};

describe('a tar header as an entry', () => {
  it('takes the owner from a PAX record over the header field (too short for large ids)', () => {
    const read = toEntry(volume, { name: 'data/f', type: 'file', size: 1, mode: 0o644, uid: 0o777777, gid: 0o777777, pax: { uid: '300000', gid: '2000000' } });
    expect('entry' in read && { uid: read.entry.uid, gid: read.entry.gid }).toEqual({ uid: 300000, gid: 2000000 });
    const plain = toEntry(volume, { name: 'data/g', type: 'file', size: 1, mode: 0o644, uid: 1234, gid: 5678 });
    expect('entry' in plain && { uid: plain.entry.uid, gid: plain.entry.gid }).toEqual({ uid: 1234, gid: 5678 });
  });
});
