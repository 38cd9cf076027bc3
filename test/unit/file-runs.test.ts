import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { constants, fstatSync, mkdirSync, mkdtempSync, openSync, rmSync, symlinkSync, writeFileSync, type BigIntStats } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHUNK_SIZES, chunksOf, type RangeMark } from '../../src/snapshot/chunker.js';
import { buildFileIndex, FileWalk, indexedChunks, type FileIndex } from '../../src/snapshot/file-index.js';
import { endsRun, runDataBytes, runEndsAfter, runKey, RUN_MAX_FILES, RUN_MIN, type RunFile } from '../../src/snapshot/file-runs.js';
import { hostTar, writeRunHeaders, type FileTracker, type LaterFile } from '../../src/snapshot/volume-tar.js';
import { TarWriter } from '../../src/util/tar-writer.js';

const S = 1_000_000_000n;
const st = (o: Partial<Record<'ino' | 'size' | 'mtimeNs' | 'ctimeNs' | 'dev', bigint>>) =>
  ({ ino: 7n, size: 100n, mtimeNs: 10n * S, ctimeNs: 11n * S, dev: 1n, ...o }) as unknown as BigIntStats;
const file = (name: string, o: Parameters<typeof st>[0] = {}, h: Partial<RunFile['h']> = {}): RunFile => ({
  h: { name, mode: 0o100644, uid: 1, gid: 2, mtime: new Date(10_000), ...h },
  st: st(o),
});

/** Every item chunksOf yields for `data` in pieces of `piece` bytes, with `ranges`. */
async function cut(data: Buffer, ranges: { start: number; end: number; reused?: string }[], piece = 100_000) {
  const pieces = Array.from({ length: Math.ceil(data.length / piece) }, (_v, i) => data.subarray(i * piece, (i + 1) * piece));
  const items: Array<Buffer | RangeMark<string>> = [];
  for await (const item of chunksOf<string>(
    (async function* () {
      yield* pieces;
    })(),
    CHUNK_SIZES,
    undefined,
    ranges,
  ))
    items.push(Buffer.isBuffer(item) ? Buffer.from(item) : (item as RangeMark<string>));
  return items;
}

describe('runs of small files', () => {
  it('cut the chunk list at both ends of each range, so that a range is chunked alike wherever it stands', async () => {
    const run = randomBytes(300_000);
    const a = Buffer.concat([randomBytes(700_001), run, randomBytes(900_000)]);
    const b = Buffer.concat([randomBytes(123_457), run, randomBytes(50_000)]);
    const inA = await cut(a, [{ start: 700_001, end: 1_000_001 }]);
    const inB = await cut(b, [{ start: 123_457, end: 423_457 }], 65_536);
    // The chunks between each range's marks: the same in both streams, and they are the range's bytes.
    const between = (items: typeof inA) => {
      const s = items.findIndex((x) => !Buffer.isBuffer(x) && x.at === 'start');
      const e = items.findIndex((x) => !Buffer.isBuffer(x) && x.at === 'end');
      return items.slice(s + 1, e) as Buffer[];
    };
    expect(between(inA).map((c) => c.toString('hex'))).toEqual(between(inB).map((c) => c.toString('hex')));
    expect(Buffer.concat(between(inA)).equals(run)).toBe(true);
    // Nothing lost or added around them.
    expect(Buffer.concat(inA.filter((x): x is Buffer => Buffer.isBuffer(x))).equals(a)).toBe(true);
  });

  it('skip a reused range: its bytes are not chunked, the marks carry what stands for them', async () => {
    const data = Buffer.concat([randomBytes(200_000), Buffer.alloc(150_000), randomBytes(200_000), Buffer.alloc(80_000), randomBytes(10_000)]);
    const items = await cut(data, [
      { start: 200_000, end: 350_000, reused: 'earlier chunks' },
      { start: 550_000, end: 630_000 },
    ]);
    const marks = items.filter((x) => !Buffer.isBuffer(x));
    expect(marks).toEqual([
      { range: 0, at: 'start', reused: 'earlier chunks' },
      { range: 0, at: 'end' },
      { range: 1, at: 'start' },
      { range: 1, at: 'end' },
    ]);
    const chunks = items.filter((x): x is Buffer => Buffer.isBuffer(x));
    expect(Buffer.concat(chunks).equals(Buffer.concat([data.subarray(0, 200_000), data.subarray(350_000)]))).toBe(true);
  });

  it('fail when the stream ends before a range given for it', async () => {
    await expect(cut(randomBytes(100_000), [{ start: 50_000, end: 150_000 }])).rejects.toThrow(/ended/);
  });

  it('end after one name in 32 or so, the same for the same name', () => {
    const names = Array.from({ length: 3200 }, (_v, i) => Buffer.from(`file-${i}.txt`));
    const ends = names.filter(endsRun).length;
    expect(ends).toBeGreaterThan(50);
    expect(ends).toBeLessThan(200);
    expect(names.map(endsRun)).toEqual(names.map((n) => endsRun(Buffer.from(n))));
  });

  it('end at a picked name only once they hold RUN_MIN bytes, so that files of 1 KiB make runs long enough to index; a file removed changes few runs', () => {
    const cutRuns = (names: Buffer[]): string[][] => {
      const runs: string[][] = [[]];
      let bytes = 0;
      for (const n of names) {
        runs[runs.length - 1].push(n.toString());
        bytes += 1024;
        if (runEndsAfter(n, runs[runs.length - 1].length, bytes)) {
          runs.push([]);
          bytes = 0;
        }
      }
      return runs.filter((r) => r.length > 0);
    };
    const names = Array.from({ length: 4000 }, (_v, i) => Buffer.from(`f${i}`));
    const runs = cutRuns(names);
    // Every run but the last holds RUN_MIN bytes (64 files of 1 KiB) and ends at a picked name or full.
    for (const r of runs.slice(0, -1)) {
      expect(r.length * 1024).toBeGreaterThanOrEqual(RUN_MIN);
      expect(endsRun(Buffer.from(r[r.length - 1])) || r.length >= RUN_MAX_FILES).toBe(true);
    }
    expect(runs.length).toBeGreaterThan(10);
    // One file removed in the middle: the runs before it stay, and the ends fall where they fell again within a few runs.
    const before = new Set(runs.map((r) => r.join(',')));
    const without = cutRuns(names.filter((_n, i) => i !== 2000));
    const changed = without.filter((r) => !before.has(r.join(','))).length;
    expect(changed).toBeGreaterThan(0);
    expect(changed).toBeLessThanOrEqual(3);
  });

  it('have a key that changes with any header field or identity of any file, and only then', () => {
    const run = [file('data/a'), file('data/b', { ino: 8n })];
    const key = runKey(run);
    expect(runKey([file('data/a'), file('data/b', { ino: 8n })])).toBe(key);
    const changed = [
      [file('data/a', { ctimeNs: 11n * S + 1n }), run[1]],
      [file('data/a', { mtimeNs: 10n * S + 1n }), run[1]],
      [file('data/a', { ino: 9n }), run[1]],
      [file('data/a', { size: 101n }), run[1]],
      [file('other/a'), run[1]],
      [file('data/a', {}, { mode: 0o100600 }), run[1]],
      [file('data/a', {}, { uid: 3 }), run[1]],
      [file('data/a', {}, { pax: { 'SCHILY.xattr.security.capability': 'x' } }), run[1]],
      [run[1], run[0]],
      [run[0]],
    ];
    for (const c of changed) expect(runKey(c)).not.toBe(key);
    expect(runDataBytes(run)).toBe(1024);
  });

  it('are left unread only against an earlier run of the same first path, key and count; indexed with their chunks', () => {
    const run = [file('d/a'), file('d/b', { ino: 8n })];
    const key = runKey(run);
    const earlier: FileIndex = { files: {}, runs: { 'd/a': { key, files: 2, bytes: 2048, first: 3, count: 1 } } };
    expect(new FileWalk(64 << 10, 100n * S, earlier).settled(run[0].st)).toBe(true);
    expect(new FileWalk(64 << 10, 100n * S, earlier).settled(st({ ctimeNs: 100n * S }))).toBe(false);
    const misses: Array<[string, string, number]> = [
      ['d/a', key, 3],
      ['d/x', key, 2],
      ['d/a', 'another key', 2],
    ];
    for (const [first, k, n] of misses) expect(new FileWalk(64 << 10, 100n * S, earlier).runStarts(first, k, n, 1024, true)).toBeUndefined();
    // A run with a file not settled: neither left unread nor indexed (only cut apart).
    const young = new FileWalk(64 << 10, 100n * S, earlier);
    expect(young.runStarts('d/a', key, 2, 1024, false)).toBeUndefined();
    young.runEnds(0, 2048);
    expect(buildFileIndex(young, new Map(), new Map([[0, { first: 0, count: 1 }]])).runs).toBeUndefined();
    const walk = new FileWalk(64 << 10, 100n * S, earlier);
    // Left unread: the bytes the earlier run took in its archive.
    expect(walk.runStarts('d/a', key, 2, 1024, true)).toBe(2048);
    walk.runEnds(10_240, 12_288);
    expect(walk.runStarts('e/a', 'e key', 5, 70_000, true)).toBeUndefined();
    walk.runEnds(12_288, 90_000);
    expect(walk.runStarts('f/a', 'f key', 4, 70_000, true)).toBeUndefined();
    walk.runEnds(90_000, 170_000);
    expect({ files: walk.runFilesUnread, bytes: walk.runBytesUnread }).toEqual({ files: 2, bytes: 1024 });
    expect(walk.runs.map((r) => [r.rel, r.start, r.end, r.earlier?.first])).toEqual([
      ['d/a', 10_240, 12_288, 3],
      ['e/a', 12_288, 90_000, undefined],
      ['f/a', 90_000, 170_000, undefined],
    ]);
    // Indexed with the chunks each got (one with none is left out).
    const index = buildFileIndex(
      walk,
      new Map(),
      new Map([
        [0, { first: 0, count: 1 }],
        [1, { first: 1, count: 2 }],
        [2, { first: 3, count: 0 }],
      ]),
    );
    expect(index.runs).toEqual({
      'd/a': { key, files: 2, bytes: 2048, first: 0, count: 1 },
      'e/a': { key: 'e key', files: 5, bytes: 77_712, first: 1, count: 2 },
    });
    expect(indexedChunks({ files: { big: { ino: '1', size: 1, mtimeNs: '1', ctimeNs: '1', first: 5, count: 2 } }, runs: index.runs })).toEqual([5, 6, 0, 1, 2]);
    // Overlapping entries name each chunk once.
    const whole = { ino: '1', size: 1, mtimeNs: '1', ctimeNs: '1', first: 0, count: 3 };
    expect(indexedChunks({ files: { x: whole, y: whole, z: { ...whole, first: 2 } } })).toEqual([0, 1, 2, 3, 4]);
    // A racy entry's chunks are hints only: not named (no destination is asked for them before the hold).
    expect(indexedChunks({ files: { x: whole, r: { ...whole, ino: '', first: 7, racy: true } } })).toEqual([0, 1, 2]);
  });

  it('left as holes get their headers written after, each where the run puts it; a run that would not take its length fails', async () => {
    const mtime = new Date(1_700_000_000_000);
    const later = [
      { h: { name: 'v/d/a', mode: 0o100644, mtime }, size: 700 },
      { h: { name: 'v/d/b', mode: 0o100600, mtime, pax: { uid: '3000000' } }, size: 0 },
      { h: { name: 'v/d/c', mode: 0o100644, mtime }, size: 1024 },
    ];
    const sizes = later.map(({ h, size }) => TarWriter.fileHeader(h, size).length + Math.ceil(size / 512) * 512);
    const bytes = sizes.reduce((a, b) => a + b, 0);
    const file = Buffer.alloc(4096 + bytes);
    const writes: number[] = [];
    const patch = { write: (at: number, data: Buffer) => (writes.push(at), data.copy(file, at)) };
    await writeRunHeaders([{ rel: 'd/a', start: 4096, end: 4096 + bytes, later }], patch);
    // Headers close together go in one write, with the zeros between them.
    expect(writes).toEqual([4096]);
    const b = TarWriter.fileHeader(later[1].h, 0);
    expect(b.length).toBe(3 * 512);
    expect(file.subarray(4096 + sizes[0], 4096 + sizes[0] + b.length).equals(b)).toBe(true);
    // Runs read (no `later`) are left as they are.
    await writeRunHeaders([{ rel: 'x', start: 0, end: 10 }], patch);
    expect(writes).toHaveLength(1);
    // Headers farther apart than a block of zeros: a write each.
    const far = [later[0], { h: later[0].h, size: 20_000 }, later[2]];
    const farBytes = far.reduce((n, f) => n + 512 + Math.ceil(f.size / 512) * 512, 0);
    await writeRunHeaders([{ rel: 'd/a', start: 0, end: farBytes, later: far }], patch);
    expect(writes.slice(1)).toEqual([0, 1536 + 512 + 20_480]);
    await expect(writeRunHeaders([{ rel: 'd/a', start: 0, end: bytes + 512, later }], patch)).rejects.toThrow(
      /d\/a: a run of files left unread does not take the/,
    );
    await expect(writeRunHeaders([{ rel: 'd/a', start: 0, end: bytes - 512, later }], patch)).rejects.toThrow(/does not take/);
    // Files past a length their first ones fill exactly are no less a fault.
    await expect(writeRunHeaders([{ rel: 'd/a', start: 0, end: sizes[0], later }], patch)).rejects.toThrow(/does not take/);
    // Stopped by a cancel between turns.
    const many = Array.from({ length: 1500 }, () => later[2]);
    const cancel = new AbortController();
    cancel.abort(new Error('cancelled'));
    await expect(writeRunHeaders([{ rel: 'd/a', start: 0, end: 1500 * 1536, later: many }], { write: () => undefined }, cancel.signal)).rejects.toThrow(
      'cancelled',
    );
  });

  it('left unread must take the length their chunks hold, else the walk fails', () => {
    const walk = new FileWalk(64 << 10, 100n * S, { files: {}, runs: { 'd/a': { key: 'k', files: 2, bytes: 2048, first: 3, count: 1 } } });
    expect(walk.runStarts('d/a', 'k', 2, 1024, true)).toBe(2048);
    expect(() => walk.runEnds(0, 2047)).toThrow(/2047 bytes, not the 2048/);
  });
});

describe('a volume walked with its runs left as holes (hostTar, writeRunHeaders)', () => {
  /** A directory of `n` files of 1,000 random bytes each (a few runs of small files), a directory and a link amid them, and a subdirectory after them. */
  function volume(n: number): string {
    const dir = mkdtempSync(join(tmpdir(), 'csx-runs-'));
    for (let i = 0; i < n; i++) writeFileSync(join(dir, `f${String(i).padStart(3, '0')}`), randomBytes(1000));
    // Entries between two runs (each ends one): a header right after a run's last file, another right before the next run's first.
    mkdirSync(join(dir, 'f150d'));
    symlinkSync('f000', join(dir, 'f150e'));
    mkdirSync(join(dir, 'z'));
    writeFileSync(join(dir, 'z', 'last'), 'after the runs');
    return dir;
  }

  /** The archive of `dir` as hostTar writes it, with `files` as its tracker. */
  async function archive(dir: string, files?: FileTracker): Promise<Buffer> {
    const fd = openSync(dir, constants.O_DIRECTORY);
    const parts: Buffer[] = [];
    for await (const part of hostTar({ fd, root: fstatSync(fd, { bigint: true }) }, 'data', new Map(), files ? { files } : {})) parts.push(part as Buffer);
    return Buffer.concat(parts);
  }

  /** A tracker that leaves every run unread, answering `length(files, bytes)` for its length, and keeps what runEnds was told. */
  function tracker(length: (files: number, bytes: number) => number) {
    const runs: Array<{ rel: string; start: number; end: number; later?: readonly LaterFile[] }> = [];
    let rel = '';
    const files: FileTracker = {
      min: 1 << 20,
      file: () => false,
      settled: () => true,
      runStarts: (first, _key, n, bytes) => ((rel = first), length(n, bytes)),
      runEnds: (start, end, later) => void runs.push({ rel, start, end, ...(later ? { later } : {}) }),
    };
    return { files, runs };
  }

  it('gives, once the headers are written in, the archive written whole; a run whose length is not its headers and data fails the walk', async () => {
    const dir = volume(300);
    try {
      const whole = await archive(dir);
      // Each file's header is one block (a short ASCII name, no PAX records).
      const { files, runs } = tracker((n, bytes) => n * 512 + bytes);
      const holed = await archive(dir, files);
      expect(runs.length).toBeGreaterThan(1);
      expect(runs.every((r) => r.later?.length)).toBe(true);
      expect(holed.length).toBe(whole.length);
      expect(holed.equals(whole)).toBe(false);
      for (const { start, end } of runs) expect(holed.subarray(start, end).equals(Buffer.alloc(end - start))).toBe(true);
      await writeRunHeaders(runs, { write: (at, data) => void data.copy(holed, at) });
      // The runs' data are zeros here (their chunks stand for them): the rest is the same byte for byte.
      for (const { start, end, later } of runs) {
        let at = start;
        for (const { size } of later!) {
          whole.fill(0, at + 512, at + 512 + size);
          at += 512 + Math.ceil(size / 512) * 512;
        }
        expect(at).toBe(end);
      }
      expect(holed.equals(whole)).toBe(true);
      // An earlier run said to take one block more than its headers and data: the walk fails (the engine then reads the volume).
      const wrong = tracker((n, bytes) => n * 512 + bytes + 512);
      wrong.files.runEnds = (start, end, later) => {
        if (!later) throw new Error(`a run of ${end - start} bytes`);
      };
      await expect(archive(dir, wrong.files)).rejects.toThrow(/a run of \d+ bytes/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
