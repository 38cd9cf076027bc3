import { describe, expect, it } from 'vitest';
import { layerSource } from '../../src/browse/sources.js';
import { deltaBaseMismatch, deltaConfig, isEmpty, planDelta, whiteoutName } from '../../src/snapshot/layer-delta.js';
import { isDir, isRegular, isSymlink, layerIndexJson, markRacy, sameEntry, type LayerEntry, type LayerIndex } from '../../src/snapshot/layer-index.js';
import { rfc3339Ns } from '../../src/util/rfc3339.js';
import { parseLayerCompaction } from '../../src/core/backup-input.js';
import { stackWinners } from '../../src/browse/layer-stack.js';
import { SET_SCHEMA_VERSION, type ContainerRecord } from '../../src/snapshot/manifest.js';
import { parseSet } from '../../src/snapshot/set-parse.js';

const DIR = 0x80000000 + 0o755;
const LINK = 0x08000000 + 0o777;
const file = (mtime: string, size = 1, mode = 0o644): LayerEntry => ({ mode, size, mtime });
const dir = (mtime: string): LayerEntry => ({ mode: DIR, size: 4096, mtime });
const wh: LayerEntry = { mode: 0, size: 0, mtime: '', whiteout: true };
const index = (entries: Record<string, LayerEntry>): LayerIndex => ({ entries });

describe('layer index entries', () => {
  it('reads the type from Go os.FileMode bits', () => {
    expect(isDir(dir('t'))).toBe(true);
    expect(isRegular(file('t'))).toBe(true);
    expect(isSymlink({ mode: LINK, size: 3, mtime: 't' })).toBe(true);
    expect(isRegular({ mode: LINK, size: 3, mtime: 't' })).toBe(false);
    expect(isDir(wh)).toBe(false);
  });

  it('compares mode, size and mtime; whiteouts only with whiteouts', () => {
    expect(sameEntry(file('a'), file('a'))).toBe(true);
    expect(sameEntry(file('a'), file('b'))).toBe(false);
    expect(sameEntry(file('a', 1), file('a', 2))).toBe(false);
    expect(sameEntry(file('a', 1, 0o644), file('a', 1, 0o755))).toBe(false);
    expect(sameEntry(undefined, file('a'))).toBe(false);
    expect(sameEntry(wh, wh)).toBe(true);
    expect(sameEntry(file('a'), wh)).toBe(false);
  });
});

describe('the stored layer index', () => {
  it('holds the entries in path order whatever order the scan found them in, and the rest as it was', () => {
    const found: LayerIndex = {
      entries: { '/b/x': file('t'), '/a': dir('t'), '/b': dir('t'), '/A': wh, '/a/é': file('u') },
      source: 'upper',
      racyMarked: true,
    };
    const stored = JSON.parse(layerIndexJson(found)) as LayerIndex;
    expect(Object.keys(stored.entries)).toEqual(['/A', '/a', '/a/é', '/b', '/b/x']);
    expect(stored).toEqual(found);
    // The scan's own object is left as it was.
    expect(Object.keys(found.entries)).toEqual(['/b/x', '/a', '/b', '/A', '/a/é']);
    // Two indexes of the same entries found in other orders store the same bytes.
    expect(layerIndexJson({ ...found, entries: Object.fromEntries(Object.entries(found.entries).reverse()) })).toBe(layerIndexJson(found));
  });
});

describe('sameEntry', () => {
  const f = (ctimeNs?: string): LayerEntry => ({ mode: 0o644, size: 10, mtime: '2026-01-01T00:00:00.5Z', ...(ctimeNs ? { ctimeNs } : {}) });

  it('tells a change by the ctime where this host stat both sides (a same-size rewrite with its mtime put back), and by the rest elsewhere', () => {
    expect(sameEntry(f('100'), f('100'))).toBe(true);
    expect(sameEntry(f('100'), f('101'))).toBe(false);
    // An index written before ctimes were kept, or a path the engine stat'ed: mode, size and mtime only.
    expect(sameEntry(f(), f('101'))).toBe(true);
    expect(sameEntry(f('100'), f())).toBe(true);
    expect(sameEntry(f('100'), { ...f('100'), size: 11 })).toBe(false);
  });

  it('tells a file moved to the path (a directory renamed above it) by its inode where both sides have one', () => {
    expect(sameEntry({ ...f('100'), ino: '7' }, { ...f('100'), ino: '7' })).toBe(true);
    expect(sameEntry({ ...f('100'), ino: '7' }, { ...f('100'), ino: '8' })).toBe(false);
    // An index written before inodes were kept: the times decide.
    expect(sameEntry(f('100'), { ...f('100'), ino: '8' })).toBe(true);
    expect(sameEntry({ ...f('100'), ino: '7' }, f('100'))).toBe(true);
  });
});

describe('racy entries', () => {
  const at = (ctimeNs: string): LayerEntry => ({ mode: 0o644, size: 10, mtime: '2026-01-01T00:00:00.5Z', ctimeNs, ino: '7' });

  it('marks a regular file changed at or after the cutoff (its ctime where this host stat it, its mtime on the engine clock else); never a directory, link or whiteout', () => {
    const entries: Record<string, LayerEntry> = {
      '/old': at('99'),
      '/edge': at('100'),
      '/new': at('150'),
      '/dir': { ...dir('2026-01-01T00:00:00Z'), ctimeNs: '150' },
      '/link': { mode: LINK, size: 3, mtime: '2026-01-01T00:00:00Z', ctimeNs: '150' },
      '/gone': { ...wh },
      '/engine-old': file('2025-12-31T23:59:59.999999999Z'),
      '/engine-new': file('2026-01-01T01:00:00+01:00'),
      '/engine-odd': file('yesterday'),
    };
    markRacy(entries, { host: 100n, engine: rfc3339Ns('2026-01-01T00:00:00Z') });
    expect(Object.keys(entries).filter((p) => entries[p].racy)).toEqual(['/edge', '/new', '/engine-new', '/engine-odd']);
    // Change times against a cutoff of the same number of digits and of others, as nanoseconds since the epoch are.
    const cutoff = 1_765_000_000_123_456_789n;
    const times: Record<string, LayerEntry> = {
      '/1': at(String(cutoff - 1n)),
      '/2': at(String(cutoff)),
      '/3': at(String(cutoff + 1n)),
      '/4': at('999999999999999999'),
      '/5': at('10000000000000000000'),
      '/6': at('0'),
      '/7': at('-5'),
      '/8': at(String(cutoff - 1_000_000_000n)),
    };
    markRacy(times, { host: cutoff });
    expect(Object.keys(times).filter((p) => times[p].racy)).toEqual(['/2', '/3', '/5']);
  });

  it('marks every regular file when no cutoff holds (periodic writeback off; an engine without a clock for the engine-stat ones)', () => {
    const entries: Record<string, LayerEntry> = { '/a': at('1'), '/b': file('2000-01-01T00:00:00Z'), '/d': dir('x') };
    markRacy(entries, { host: 100n });
    expect(Object.keys(entries).filter((p) => entries[p].racy)).toEqual(['/b']);
    markRacy(entries, {});
    expect(Object.keys(entries).filter((p) => entries[p].racy)).toEqual(['/a', '/b']);
  });

  it('takes a racy entry of the set before again, whatever the stat now says', () => {
    expect(sameEntry({ ...at('100'), racy: true }, at('100'))).toBe(false);
    expect(planDelta(index({ '/f': { ...at('100'), racy: true } }), index({ '/f': at('100') })).reads).toEqual(['/f']);
    expect(planDelta(index({ '/f': at('100') }), index({ '/f': { ...at('100'), racy: true } })).reads).toEqual([]);
  });
});

describe('rfc3339Ns', () => {
  it('reads RFC 3339 times to the nanosecond, with Z or an offset; undefined for anything else', () => {
    expect(rfc3339Ns('1970-01-01T00:00:01.5Z')).toBe(1_500_000_000n);
    expect(rfc3339Ns('2026-12-07T05:46:40.123456789Z')).toBe(BigInt(Date.parse('2026-12-07T05:46:40Z')) * 1_000_000n + 123_456_789n);
    expect(rfc3339Ns('2026-12-07T06:46:40+01:00')).toBe(BigInt(Date.parse('2026-12-07T05:46:40Z')) * 1_000_000n);
    expect(rfc3339Ns('2026-12-07T05:46:40')).toBeUndefined();
    expect(rfc3339Ns('2026-12-07T05:46:40.1234567890Z')).toBeUndefined();
    expect(rfc3339Ns('')).toBeUndefined();
  });
});

describe('planDelta', () => {
  const prev = index({
    '/app': dir('1'),
    '/app/a': file('1'),
    '/app/d': dir('1'),
    '/app/d/x': file('1'),
    '/app/d/sub': dir('1'),
    '/app/d/sub/y': file('1'),
    '/app/f': file('1'),
    '/www/index.html': wh,
  });

  it('is empty when nothing changed', () => {
    expect(isEmpty(planDelta(prev, prev))).toBe(true);
  });

  it('reads changed and new paths, parents first; whiteouts for paths gone and newly deleted', () => {
    const now = index({ ...prev.entries, '/app/a': file('2'), '/app/new': file('2'), '/etc/passwd': wh, '/app': dir('2') });
    delete now.entries['/app/f'];
    expect(planDelta(prev, now)).toEqual({ whiteouts: ['/app/f', '/etc/passwd'], reads: ['/app', '/app/a', '/app/new'], opaque: [], parents: ['/etc'] });
  });

  it('a renamed directory: one whiteout for the old tree, the new tree read', () => {
    const now = index({
      '/app': dir('2'),
      '/app/a': file('1'),
      '/app/e': dir('1'),
      '/app/e/x': file('1'),
      '/app/e/sub': dir('1'),
      '/app/e/sub/y': file('1'),
      '/app/f': file('1'),
      '/www/index.html': wh,
    });
    expect(planDelta(prev, now)).toEqual({
      whiteouts: ['/app/d'],
      reads: ['/app', '/app/e', '/app/e/sub', '/app/e/sub/y', '/app/e/x'],
      opaque: [],
      parents: [],
    });
  });

  it('a directory replaced by a file: no whiteout below it (the layer could not descend into a file)', () => {
    const now = index({ '/app': dir('1'), '/app/a': file('1'), '/app/d': file('2'), '/app/f': file('1'), '/www/index.html': wh });
    expect(planDelta(prev, now)).toEqual({ whiteouts: [], reads: ['/app/d'], opaque: [], parents: ['/app'] });
  });

  it('takes every directory above what it holds, so that applying it makes none with default attributes', () => {
    // /tmp (1777) above a file changed again: without its own entry the load would make /tmp 0755.
    const before = index({ '/tmp': dir('1'), '/tmp/x': file('1'), '/a/b/c/f': file('1') });
    const after = index({ '/tmp': dir('1'), '/tmp/x': file('2') });
    expect(planDelta(before, after)).toEqual({ whiteouts: ['/a/b/c/f'], reads: ['/tmp/x'], opaque: [], parents: ['/a', '/a/b', '/a/b/c', '/tmp'] });
  });

  it('a base file deleted before stays deleted: no second whiteout', () => {
    expect(planDelta(prev, index({ ...prev.entries })).whiteouts).toEqual([]);
  });

  it('a directory made again (opaque now): read with everything under it, marked, no whiteouts below it', () => {
    // rm -rf /app/d && mkdir /app/d && echo > /app/d/new: the upper directory holds /app/d (opaque) and /app/d/new only.
    const up = (entries: Record<string, LayerEntry>): LayerIndex => ({ entries, source: 'upper' });
    const before = up({ ...prev.entries, '/app/d/sub/y': file('1') });
    const now = up({ ...prev.entries, '/app/d': { ...dir('3'), opaque: true }, '/app/d/new': file('3'), '/app/d/x': file('1') });
    for (const gone of ['/app/d/sub', '/app/d/sub/y']) delete now.entries[gone];
    const plan = planDelta(before, now);
    // /app/d/x is unchanged but read again: the opaque whiteout hides what the layers below hold of it.
    expect(plan).toEqual({ whiteouts: [], reads: ['/app/d', '/app/d/new', '/app/d/x'], opaque: ['/app/d'], parents: ['/app'] });
    // Opaque before and now: only what changed since.
    const later = up({ ...now.entries, '/app/d/x': file('4') });
    expect(planDelta(now, later)).toEqual({ whiteouts: [], reads: ['/app/d/x'], opaque: [], parents: ['/app', '/app/d'] });
    // An index from the engine's list before it (no opaque mark): marked now, everything under it read.
    expect(planDelta(prev, now).opaque).toEqual(['/app/d']);
  });

  it('refuses a delta from an index of the upper directory to one from the engine (its directories would read as removed)', () => {
    const upper: LayerIndex = { ...prev, source: 'upper' };
    expect(deltaBaseMismatch(upper, prev)).toMatch(/upper directory/);
    expect(deltaBaseMismatch(prev, upper)).toBeUndefined();
    expect(deltaBaseMismatch(upper, upper)).toBeUndefined();
    expect(deltaBaseMismatch(prev, prev)).toBeUndefined();
  });

  it('names whiteouts as OCI image-spec layer.md says', () => {
    expect(whiteoutName('/app/d')).toBe('app/.wh.d');
    expect(whiteoutName('/top')).toBe('.wh.top');
  });
});

describe('deltaConfig', () => {
  it('adds the diff ID and a history entry, keeps the rest', () => {
    const before = Buffer.from(
      JSON.stringify({ architecture: 'amd64', config: { Cmd: ['sh'] }, rootfs: { type: 'layers', diff_ids: ['sha256:a'] }, history: [{ created_by: 'x' }] }),
    );
    const after = JSON.parse(deltaConfig(before, 'sha256:b', '2026-12-01T00:00:00.000Z').toString()) as Record<string, unknown>;
    expect(after).toMatchObject({
      architecture: 'amd64',
      config: { Cmd: ['sh'] },
      created: '2026-12-01T00:00:00.000Z',
      rootfs: { type: 'layers', diff_ids: ['sha256:a', 'sha256:b'] },
    });
    expect((after.history as unknown[]).length).toBe(2);
  });
});

describe('layer-compaction', () => {
  it('defaults to 8, takes 0 to 100', () => {
    expect(parseLayerCompaction('')).toBe(8);
    expect(parseLayerCompaction('0')).toBe(0);
    expect(parseLayerCompaction('100')).toBe(100);
    expect(() => parseLayerCompaction('101')).toThrow("Invalid layer-compaction '101'. Expected a whole number from 0 to 100.");
    expect(() => parseLayerCompaction('x', '--layer-compaction')).toThrow('--layer-compaction');
  });
});

describe('set schema', () => {
  const blob = (n: string) => ({ mediaType: 'm', digest: `sha256:${n.repeat(64)}`, size: 1, contentDigest: `sha256:${n.repeat(64)}`, contentSize: 1 });
  const set = (schemaVersion: number, deltas?: number) =>
    JSON.stringify({
      schemaVersion,
      mediaType: 'application/vnd.container-snapshot.set.v1+json',
      tag: 't',
      containers: [
        { name: 'c', image: { id: 'x', baseImage: 'b', config: blob('a'), layers: [blob('b'), blob('c')], deltas, layerIndex: blob('d') }, volumes: [] },
      ],
    });

  it('reads schema 1, 2 and 3, and says which it found otherwise', () => {
    expect(parseSet(set(1), 'here').schemaVersion).toBe(1);
    expect(parseSet(set(2, 1), 'here').containers[0].image.deltas).toBe(1);
    expect(parseSet(set(3, 1), 'here').containers[0].image.deltas).toBe(1);
    expect(() => parseSet(set(4), 'here')).toThrow(
      'expected application/vnd.container-snapshot.set.v1+json schema 1 or 2 or 3, found application/vnd.container-snapshot.set.v1+json 4',
    );
  });

  it('refuses more delta layers than the image has layers above its first', () => {
    expect(() => parseSet(set(2, 2), 'here')).toThrow('has 2 delta layers of 2');
  });

  it('refuses more base image layers than there are below the delta layers', () => {
    const withBase = (baseLayers: unknown, deltas?: number) => {
      const doc = JSON.parse(set(3, deltas)) as { containers: Array<{ image: Record<string, unknown> }> };
      doc.containers[0].image.baseLayers = baseLayers;
      return JSON.stringify(doc);
    };
    expect(parseSet(withBase(2), 'here').containers[0].image.baseLayers).toBe(2);
    expect(parseSet(withBase(1, 1), 'here').containers[0].image.baseLayers).toBe(1);
    // Deltas straight on the base image's layers (its commit added none), even on a base of no layer.
    expect(parseSet(withBase(0, 2), 'here').containers[0].image.deltas).toBe(2);
    expect(() => parseSet(withBase(2, 1), 'here')).toThrow('has 2 base image layers and 1 delta layers of 2');
    expect(() => parseSet(withBase(-1), 'here')).toThrow('has -1 base image layers');
    expect(() => parseSet(withBase('1'), 'here')).toThrow('has 1 base image layers');
  });

  it('is written as 3 (a record names its engine state `state`), and reads the `status` of sets written before, keeping it on a schema 1 set', () => {
    expect(SET_SCHEMA_VERSION).toBe(3);
    const written = (schemaVersion: number, record: Record<string, string>) => {
      const doc = JSON.parse(set(schemaVersion)) as { containers: Array<Record<string, unknown>> };
      Object.assign(doc.containers[0], record);
      return parseSet(JSON.stringify(doc), 'here').containers[0];
    };
    for (const c of [written(2, { status: 'paused' }), written(2, { state: 'paused' })]) {
      expect([c.state, c.status]).toEqual(['paused', undefined]);
    }
    // A schema 1 set copied to another destination (completeSet) still says `status` to releases that read only schema 1.
    const v1 = written(1, { status: 'paused' });
    expect([v1.state, v1.status]).toEqual(['paused', 'paused']);
    expect(JSON.parse(JSON.stringify(v1))).toMatchObject({ state: 'paused', status: 'paused' });
  });
});

describe('stackWinners', () => {
  const e = (path: string, type = 'file') => ({ path, type });

  it('the topmost entry of a path wins; a delta whiteout hides the path and its subtree below', () => {
    const w = stackWinners([
      [e('/app', 'directory'), e('/app/a'), e('/app/d', 'directory'), e('/app/d/x'), e('/www/index.html', 'deleted')],
      [e('/app', 'directory'), e('/app/a'), e('/app/d', 'deleted'), e('/app/e', 'directory'), e('/app/e/x'), e('/bin/sort', 'deleted')],
    ]);
    // /app/d was made by the layer: its whiteout is not shown; /bin/sort was the image's: deleted.
    expect(Object.fromEntries(w)).toEqual({ '/app': 1, '/app/a': 1, '/app/e': 1, '/app/e/x': 1, '/www/index.html': 0, '/bin/sort': 1 });
  });

  it('an entry that is no directory hides what was under it below; an opaque directory its children below', () => {
    const w = stackWinners([
      [e('/d', 'directory'), e('/d/x'), e('/o', 'directory'), e('/o/old')],
      [e('/d'), e('/o', 'directory'), e('/o', 'opaque'), e('/o/new')],
    ]);
    expect(Object.fromEntries(w)).toEqual({ '/d': 1, '/o': 1, '/o/new': 1 });
  });

  it('a path deleted in one delta and made again in the next shows the new one', () => {
    const w = stackWinners([[e('/f')], [e('/f', 'deleted')], [e('/f', 'symlink')]]);
    expect(Object.fromEntries(w)).toEqual({ '/f': 2 });
  });
});

describe("a container's writable layer in a set (browse sources)", () => {
  const blob = (n: number) => ({
    mediaType: 'm',
    digest: `sha256:${String(n).repeat(64)}`,
    size: 1,
    contentDigest: `sha256:${String(n).repeat(64)}`,
    contentSize: 1,
  });
  const record = (layers: number, image: { deltas?: number; baseLayers?: number }) =>
    ({
      name: 'c',
      image: { id: 'x', baseImage: 'b', config: blob(9), layers: Array.from({ length: layers }, (_v, i) => blob(i)), ...image },
      volumes: [],
    }) as unknown as ContainerRecord;
  const stack = (c: ContainerRecord) => {
    const s = layerSource(c);
    return s && [...(s.below ?? []), s.blob].map((b) => Number(b.digest[7]));
  };

  it('is the layers above the base image: the whole layer, then its deltas', () => {
    expect(stack(record(4, { baseLayers: 2 }))).toEqual([2, 3]);
    expect(stack(record(5, { baseLayers: 2, deltas: 2 }))).toEqual([2, 3, 4]);
  });

  it('is nothing when the commit added no layer (the container changed nothing), and only the deltas above one such', () => {
    expect(layerSource(record(3, { baseLayers: 3 }))).toBeUndefined();
    expect(stack(record(4, { baseLayers: 3, deltas: 1 }))).toEqual([3]);
  });

  it('is the top layer and its deltas in a set written before the base was recorded', () => {
    expect(stack(record(4, {}))).toEqual([3]);
    expect(stack(record(4, { deltas: 2 }))).toEqual([1, 2, 3]);
  });
});
