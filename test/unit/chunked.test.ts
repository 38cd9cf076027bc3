import { describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { SET_SCOPE } from '../../src/destinations/types.js';
import { openContent } from '../../src/snapshot/blobs.js';
import { CHUNK_SIZES, chunksOf, cutPoint, type ChunkSizes } from '../../src/snapshot/chunker.js';
import { splicedArchive, storeChunked } from '../../src/snapshot/chunked.js';
import {
  CHUNK_LIST_VOLUME_MEDIA_TYPE,
  CHUNKED_VOLUME_MEDIA_TYPE,
  ManifestError,
  chunkListDigest,
  SET_MEDIA_TYPE,
  setBlobs,
  type BlobDescriptor,
  type SnapshotSet,
} from '../../src/snapshot/manifest.js';
import { parseSet } from '../../src/snapshot/set-parse.js';
import { RegistryDestination } from '../../src/destinations/registry.js';
import type { RegistryClient } from '../../src/registry/client.js';
import { drain } from '../../src/util/streams.js';
import { freeMiBCount, mibFileStream, takeMiB } from '../../src/util/mib-buffers.js';
import { TarChecker } from '../../src/util/tar-check.js';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryDestination } from '../support/memory-destination.js';

const SMALL: ChunkSizes = { min: 2 << 10, avg: 8 << 10, max: 32 << 10 };
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function* pieces(b: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

async function cut(b: Buffer, sizes = SMALL, piece = 1000): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const c of chunksOf(pieces(b, piece), sizes)) if (Buffer.isBuffer(c)) out.push(Buffer.from(c));
  return out;
}

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of stream) parts.push(p as Buffer);
  return Buffer.concat(parts);
}

describe('content-defined chunking (FastCDC)', () => {
  it('cuts a stream into chunks within the sizes that concatenate to it, whatever the pieces it arrives in', async () => {
    const data = randomBytes(600 << 10);
    const a = await cut(data, SMALL, 1000);
    const b = await cut(data, SMALL, 65536);
    expect(Buffer.concat(a).equals(data)).toBe(true);
    expect(a.map(sha)).toEqual(b.map(sha));
    for (const c of a.slice(0, -1)) {
      expect(c.length).toBeGreaterThanOrEqual(SMALL.min);
      expect(c.length).toBeLessThanOrEqual(SMALL.max);
    }
    const average = data.length / a.length;
    expect(average).toBeGreaterThan(SMALL.avg / 2);
    expect(average).toBeLessThan(SMALL.avg * 2);
  });

  it('keeps the chunks before and after an insertion: only those around it change', async () => {
    const data = randomBytes(800 << 10);
    const edited = Buffer.concat([data.subarray(0, 400 << 10), Buffer.from('an inserted line\n'), data.subarray(400 << 10)]);
    const before = new Set((await cut(data)).map(sha));
    const after = (await cut(edited)).map(sha);
    const fresh = after.filter((d) => !before.has(d));
    expect(fresh.length).toBeGreaterThan(0);
    expect(fresh.length).toBeLessThanOrEqual(3);
  });

  it('cuts a run of zeros where hashing it would, without hashing it', async () => {
    const zeros = Buffer.alloc(SMALL.max * 5 + 123);
    const chunks = await cut(zeros);
    let at = 0;
    for (const c of chunks) {
      expect(at + c.length).toBe(cutPoint(zeros, at, zeros.length, SMALL));
      at += c.length;
    }
    expect(at).toBe(zeros.length);
  });

  it('cuts a tar archive before and after the header of each large member, so that a changed header is a chunk of its own', async () => {
    const archive = async (mtime: number, big: Buffer) => {
      const pack = tar.pack();
      pack.entry({ name: 'small.txt', mtime: new Date(0) }, 'a small file\n');
      pack.entry({ name: `${'long-name/'.repeat(30)}big.bin`, mtime: new Date(mtime * 1000) }, big);
      pack.entry({ name: 'after.bin', mtime: new Date(0) }, big.subarray(0, 100 << 10));
      pack.finalize();
      return readAll(pack as unknown as Readable);
    };
    const big = randomBytes(300 << 10);
    const [a, b] = [await cut(await archive(1, big), SMALL, 4096), await cut(await archive(2, big), SMALL, 4096)];
    expect(Buffer.concat(a).equals(await archive(1, big))).toBe(true);
    const before = new Set(a.map(sha));
    const changed = b.filter((c) => !before.has(sha(c)));
    // Only the member's headers: its pax header (the name is too long for ustar) and data, then its ustar header.
    expect(changed.map((c) => c.length)).toEqual([1536]);
  });

  it('cuts a changed large member where it would without hints, taking the earlier cuts where its data is the same', async () => {
    const archive = async (big: Buffer) => {
      const pack = tar.pack();
      pack.entry({ name: 'small.txt', mtime: new Date(0) }, 'a small file\n');
      pack.entry({ name: 'big.bin', mtime: new Date(0) }, big);
      pack.entry({ name: 'after.bin', mtime: new Date(0) }, Buffer.alloc(100 << 10, 7));
      pack.finalize();
      return readAll(pack as unknown as Readable);
    };
    type Hint = { contentSize: number; contentDigest: string };
    // Every chunk (its sha256) and mark in order; with `record`, each member's chunks as hints.
    const chunking = async (data: Buffer, piece: number, hints?: Map<number, Hint[]>, record?: Map<number, Hint[]>) => {
      const out: string[] = [];
      let member: number | undefined;
      const items = chunksOf(pieces(data, piece), SMALL, undefined, [], (m) => hints?.get(m));
      for await (const c of items) {
        if (Buffer.isBuffer(c)) {
          out.push(sha(c));
          if (record && member !== undefined) record.get(member)!.push({ contentSize: c.length, contentDigest: `sha256:${sha(c)}` });
        } else {
          out.push(JSON.stringify(c));
          if ('member' in c) member = c.at === 'data' ? c.member : undefined;
          if (record && 'member' in c && c.at === 'data') record.set(c.member, []);
        }
      }
      return out;
    };
    const big = Buffer.concat([randomBytes(200 << 10), Buffer.from('some text, '.repeat(20_000)), randomBytes(100 << 10)]);
    const earlier = new Map<number, Hint[]>();
    await chunking(await archive(big), 65536, undefined, earlier);
    // Members: 0 small.txt (no marks: under SMALL.min), 1 big.bin, 2 after.bin.
    expect([...earlier.keys()]).toEqual([1, 2]);
    expect(earlier.get(1)!.length).toBeGreaterThan(20);
    const rewritten = Buffer.from(big);
    randomBytes(4096).copy(rewritten, 250 << 10);
    const changes: Record<string, Buffer> = {
      'rewritten in the middle': rewritten,
      'grown at its end': Buffer.concat([big, randomBytes(10_000)]),
      'cut short': big.subarray(0, big.length - (50 << 10) - 17),
      unchanged: big,
    };
    const bogus = new Map([
      [1, earlier.get(1)!.map((h, i) => (i % 2 ? { ...h, contentSize: h.contentSize + 512 } : { ...h, contentDigest: `sha256:${'0'.repeat(64)}` }))],
    ]);
    for (const [what, data] of Object.entries(changes)) {
      const a = await archive(data);
      const plain = await chunking(a, 65536);
      for (const piece of [4096, 65536]) {
        expect(await chunking(a, piece, earlier), `${what}, pieces of ${piece}`).toEqual(plain);
        expect(await chunking(a, piece, bogus), `${what}, bogus hints, pieces of ${piece}`).toEqual(plain);
      }
    }
    // A hint shorter than the least chunk is never a cut (it cannot be an earlier cut with these sizes).
    const short = new Map([[1, [{ contentSize: 1024, contentDigest: `sha256:${sha(big.subarray(0, 1024))}` }]]]);
    expect(await chunking(await archive(big), 65536, short)).toEqual(await chunking(await archive(big), 65536));
  });

  it('uses 64 KiB, 512 KiB and 2 MiB by default', () => {
    expect(CHUNK_SIZES).toEqual({ min: 64 << 10, avg: 512 << 10, max: 2 << 20 });
  });
});

describe('chunked volumes', () => {
  it('stores each new chunk once, reuses known ones, and reads back the whole, every chunk checked', async () => {
    const dest = new MemoryDestination();
    const targets = [{ dest, scope: SET_SCOPE }];
    const known = new Map<string, BlobDescriptor>();
    const data = Buffer.concat([randomBytes(6 << 20), Buffer.alloc(12 << 20), randomBytes(3 << 20)]);
    const first = await storeChunked(Readable.from(pieces(data, 65536)), targets, 'zstd', known);
    expect(first.blob.mediaType).toBe(CHUNK_LIST_VOLUME_MEDIA_TYPE);
    expect(first.blob.contentDigest).toBe(chunkListDigest(first.blob.chunks));
    expect(Buffer.concat(await Promise.all(first.blob.chunks.map(async (c) => readAll(await openContent(dest, SET_SCOPE, c, 'c'))))).equals(data)).toBe(true);
    expect(first.blob.contentSize).toBe(data.length);
    // The zero run is cut into repeated chunks of zeros, stored once.
    expect(first.written).toBeLessThan(first.blob.chunks.length);
    expect(dest.blobs.size).toBe(first.written);
    expect((await readAll(await openContent(dest, SET_SCOPE, first.blob, 'v'))).equals(data)).toBe(true);

    const changed = Buffer.from(data);
    randomBytes(1000).copy(changed, 3 << 20);
    const writes = dest.writes;
    const second = await storeChunked(Readable.from(pieces(changed, 65536)), targets, 'zstd', known);
    expect(second.written).toBeGreaterThan(0);
    expect(second.written).toBeLessThanOrEqual(2);
    expect(dest.writes - writes).toBe(second.written);
    expect((await readAll(await openContent(dest, SET_SCOPE, second.blob, 'v'))).equals(changed)).toBe(true);
  });

  it('stores exactly the bytes of a spooled archive read into reused buffers, and hands each piece back once cut', async () => {
    // A tar archive of random files (its large members are cut at their boundaries), read as spool.ts reads one.
    const p = tar.pack();
    const files = Array.from({ length: 6 }, (_v, i) => randomBytes((i + 1) * 700_000));
    files.forEach((f, i) => p.entry({ name: `f${i}`, size: f.length }, f));
    p.finalize();
    const parts: Buffer[] = [];
    for await (const c of p) parts.push(c as Buffer);
    const archive = Buffer.concat(parts);
    const path = join(mkdtempSync(join(tmpdir(), 'csx-chunked-')), 'spooled');
    writeFileSync(path, archive);
    while (freeMiBCount() > 0) takeMiB();
    const dest = new MemoryDestination();
    const source = mibFileStream(path).pipe(new TarChecker('vol'));
    const stored = await storeChunked(source, [{ dest, scope: SET_SCOPE }], 'zstd', new Map());
    expect(sha(await readAll(await openContent(dest, SET_SCOPE, stored.blob, 'v')))).toBe(sha(archive));
    expect(freeMiBCount()).toBeGreaterThan(0);
  });

  it('stores again a known chunk that a target no longer holds, and asks about known chunks side by side', async () => {
    const dest = new MemoryDestination();
    const targets = [{ dest, scope: SET_SCOPE }];
    const known = new Map<string, BlobDescriptor>();
    const data = randomBytes(8 << 20);
    const first = await storeChunked(Readable.from(pieces(data, 65536)), targets, 'zstd', known);
    // One chunk of the earlier set lost from the destination (a blob removed by hand).
    const lost = first.blob.chunks[2].digest;
    dest.blobs.delete(lost);
    const hasBlob = dest.hasBlob.bind(dest);
    let asking = 0;
    let most = 0;
    dest.hasBlob = async (scope, digest) => {
      most = Math.max(most, ++asking);
      await new Promise((r) => setTimeout(r, 5));
      asking--;
      return hasBlob(scope, digest);
    };
    const second = await storeChunked(Readable.from(pieces(data, 65536)), targets, 'zstd', known);
    expect(second.written).toBe(1);
    expect(dest.blobs.has(lost)).toBe(true);
    expect(second.blob.chunks.map((c) => c.digest)).toEqual(first.blob.chunks.map((c) => c.digest));
    expect(most).toBeGreaterThan(1);
    expect((await readAll(await openContent(dest, SET_SCOPE, second.blob, 'v'))).equals(data)).toBe(true);
  });

  it('holds at most 8 MiB of known chunks while their checks are out, and still asks side by side', async () => {
    const dest = new MemoryDestination();
    const targets = [{ dest, scope: SET_SCOPE }];
    const known = new Map<string, BlobDescriptor>();
    const data = randomBytes(20 << 20);
    const first = await storeChunked(Readable.from(pieces(data, 1 << 20)), targets, 'zstd', known);
    const sizeOf = new Map(first.blob.chunks.map((c) => [c.digest, c.contentSize]));
    const hasBlob = dest.hasBlob.bind(dest);
    let bytes = 0;
    let most = 0;
    let mostAsked = 0;
    let asking = 0;
    dest.hasBlob = async (scope, digest) => {
      const n = sizeOf.get(digest) ?? 0;
      bytes += n;
      most = Math.max(most, bytes);
      mostAsked = Math.max(mostAsked, ++asking);
      await new Promise((r) => setTimeout(r, 20));
      bytes -= n;
      asking--;
      return hasBlob(scope, digest);
    };
    const second = await storeChunked(Readable.from(pieces(data, 1 << 20)), targets, 'zstd', known);
    expect(second.written).toBe(0);
    expect(mostAsked).toBeGreaterThan(1);
    expect(most).toBeLessThanOrEqual(8 << 20);
    // 16 checks of chunks averaging 512 KiB come near the bound: it is reached, not just avoided.
    expect(most).toBeGreaterThan(4 << 20);
  }, 60_000);

  it("fails when a chunk cannot be stored (the others in flight finish first), with the destination's error", async () => {
    const dest = new MemoryDestination();
    const writeBlob = dest.writeBlob.bind(dest);
    let n = 0;
    dest.writeBlob = async () => {
      if (++n === 3) throw new Error('memory: disk full');
      return writeBlob();
    };
    await expect(storeChunked(Readable.from(pieces(randomBytes(6 << 20), 65536)), [{ dest, scope: SET_SCOPE }], 'zstd', new Map())).rejects.toThrow(
      /disk full/,
    );
  });

  it('fails the read of a chunked volume whose chunk is damaged, naming the chunk', async () => {
    const dest = new MemoryDestination();
    const { blob } = await storeChunked(Readable.from([randomBytes(3 << 20)]), [{ dest, scope: SET_SCOPE }], 'zstd', new Map());
    const victim = blob.chunks[1].digest;
    const body = Buffer.from(dest.blobs.get(victim)!);
    body[10] ^= 1;
    dest.blobs.set(victim, body);
    await expect(drain(await openContent(dest, SET_SCOPE, blob, 'web volume data'))).rejects.toThrow(/web volume data chunk 1/);
  });

  it("is listed as its chunks (prune, verify, an encrypted set's envelope), never as its whole", async () => {
    const dest = new MemoryDestination();
    const { blob } = await storeChunked(Readable.from([randomBytes(3 << 20)]), [{ dest, scope: SET_SCOPE }], 'gzip', new Map());
    const config = { mediaType: 'x', digest: `sha256:${'1'.repeat(64)}`, size: 1, contentDigest: `sha256:${'1'.repeat(64)}`, contentSize: 1 };
    const set = {
      schemaVersion: 2,
      mediaType: SET_MEDIA_TYPE,
      tag: 't',
      created: '2026-12-01T00:00:00Z',
      containers: [{ name: 'web', image: { config, layers: [] }, volumes: [{ type: 'volume', name: 'data', destination: '/data', blob }] }],
    };
    const parsed = parseSet(JSON.stringify(set), 'here');
    expect(
      setBlobs(parsed)
        .map((b) => b.digest)
        .sort(),
    ).toEqual([config.digest, ...new Set(blob.chunks.map((c) => c.digest))].sort());
    expect(() => parseSet(JSON.stringify({ ...set, schemaVersion: 1 }), 'here')).not.toThrow();
    expect(() => parseSet(JSON.stringify({ ...set, schemaVersion: 4 }), 'here')).toThrow(ManifestError);
    const wrong = {
      ...set,
      containers: [{ ...set.containers[0], volumes: [{ ...set.containers[0].volumes[0], blob: { ...blob, contentDigest: config.digest } }] }],
    };
    expect(() => parseSet(JSON.stringify(wrong), 'here')).toThrow(/not that of its chunk list/);
    const short = { ...blob, chunks: blob.chunks.slice(1) };
    const broken = { ...set, containers: [{ ...set.containers[0], volumes: [{ ...set.containers[0].volumes[0], blob: short }] }] };
    expect(() => parseSet(JSON.stringify(broken), 'here')).toThrow(/do not add up/);
  });
});

describe('a registry set manifest names every chunk', () => {
  it('is refused before anything is written when it would be larger than the client reads back', async () => {
    const calls: string[] = [];
    const client = new Proxy(
      { host: 'r.example' },
      { get: (t, k) => (k in t ? t[k as 'host'] : (calls.push(String(k)), async () => undefined)) },
    ) as unknown as RegistryClient;
    const dest = new RegistryDestination('registry:r.example/p', 'p', client);
    const d = (i: number) => `sha256:${createHash('sha256').update(String(i)).digest('hex')}`;
    const chunks = Array.from({ length: 40_000 }, (_v, i) => ({
      mediaType: 'application/vnd.container-snapshot.chunk.v1+zstd',
      digest: d(i),
      size: 1,
      contentDigest: d(-i - 1),
      contentSize: 1,
    }));
    const blob = { mediaType: CHUNKED_VOLUME_MEDIA_TYPE, digest: d(-1), size: chunks.length, contentDigest: d(-1), contentSize: chunks.length, chunks };
    const config = chunks[0];
    const set = {
      schemaVersion: 2,
      mediaType: SET_MEDIA_TYPE,
      tag: 'big',
      created: '2026-12-01T00:00:00Z',
      containers: [{ name: 'web', image: { config, layers: [] }, volumes: [{ type: 'volume', name: 'data', destination: '/data', blob }] }],
    } as unknown as SnapshotSet;
    await expect(dest.writeSet(set)).rejects.toThrow(
      /registry:r\.example\/p: the set manifest of big would take \d+ bytes \(40000 blobs\), more than the 4194304 .* not written/,
    );
    expect(calls).toEqual([]);
  });
});

describe('files left unread (their data chunks taken from the archive before)', () => {
  const archive = async (files: Array<[string, Buffer]>) => {
    const pack = tar.pack();
    pack.entry({ name: 'data/', type: 'directory', mtime: new Date(0) });
    for (const [name, data] of files) pack.entry({ name, mtime: new Date(0) }, data);
    pack.finalize();
    return readAll(pack as unknown as Readable);
  };

  it('gives the same chunk list as reading them, and reads back the whole archive', async () => {
    const dest = new MemoryDestination();
    const targets = [{ dest, scope: SET_SCOPE }];
    const files: Array<[string, Buffer]> = [
      ['data/a.bin', randomBytes((700 << 10) + 3)],
      ['data/small.txt', Buffer.from('a small file\n')],
      ['data/b.bin', Buffer.concat([Buffer.alloc(3 << 20), randomBytes(100 << 10)])],
      ['data/c.bin', randomBytes(200 << 10)],
    ];
    const full = await archive(files);
    const known = new Map<string, BlobDescriptor>();
    const first = await storeChunked(Readable.from(pieces(full, 65536)), targets, 'zstd', known);
    // Members: 0 the directory, 1 a.bin, 2 small.txt, 3 b.bin, 4 c.bin; the small file has no run.
    expect([...first.runs.keys()].sort()).toEqual([1, 3, 4]);
    const runOf = (m: number) => first.blob.chunks.slice(first.runs.get(m)!.first, first.runs.get(m)!.first + first.runs.get(m)!.count);
    expect(runOf(1).reduce((n, c) => n + c.contentSize, 0)).toBe(Math.ceil(((700 << 10) + 3) / 512) * 512);

    // a.bin and b.bin left unread: zeros in their place, their runs given.
    const zeroed = await archive(files.map(([n, d], i) => [n, i === 0 || i === 2 ? Buffer.alloc(d.length) : d]));
    const writes = dest.writes;
    const second = await storeChunked(
      Readable.from(pieces(zeroed, 65536)),
      targets,
      'zstd',
      known,
      undefined,
      new Map([
        [1, runOf(1)],
        [3, runOf(3)],
      ]),
    );
    expect(second.blob.chunks.map((c) => c.digest)).toEqual(first.blob.chunks.map((c) => c.digest));
    expect(second.blob.contentDigest).toBe(first.blob.contentDigest);
    expect(second.blob.contentSize).toBe(full.length);
    expect(second.runs).toEqual(first.runs);
    expect(dest.writes - writes).toBe(0);
    expect((await readAll(await openContent(dest, SET_SCOPE, second.blob, 'v'))).equals(full)).toBe(true);

    // Stored whole instead (too many chunks for the set): the unread data read back from its chunks.
    const unread = new Map([
      [1, runOf(1)],
      [3, runOf(3)],
    ]);
    const spliced = await readAll(Readable.from(splicedArchive(pieces(zeroed, 65536), unread, (c) => openContent(dest, SET_SCOPE, c, 'c'))));
    expect(spliced.equals(full)).toBe(true);
    // A member planned unread but not among the large members (small.txt): refused, never stored as zeros.
    await expect(storeChunked(Readable.from(pieces(zeroed, 65536)), targets, 'zstd', known, undefined, new Map([...unread, [2, runOf(1)]]))).rejects.toThrow(
      '1 file(s) left unread were not found in the archive',
    );
    await expect(
      readAll(Readable.from(splicedArchive(pieces(zeroed, 65536), new Map([[2, runOf(1)]]), (c) => openContent(dest, SET_SCOPE, c, 'c')))),
    ).rejects.toThrow('1 file(s) left unread were not found in the archive');
  });

  it('with the earlier chunks of a changed file as hints: the same chunk list and the same chunks stored as without', async () => {
    // Seeded bytes, so that where the chunks fall (and how many the change touches) is the same at every run.
    const seeded = (seed: string, n: number) =>
      Buffer.concat(Array.from({ length: Math.ceil(n / 32) }, (_v, i) => createHash('sha256').update(`${seed} ${i}`).digest())).subarray(0, n);
    const a = seeded('a.bin', 3 << 20);
    const full = await archive([['data/a.bin', a]]);
    const first = await storeChunked(Readable.from(pieces(full, 65536)), [{ dest: new MemoryDestination(), scope: SET_SCOPE }], 'zstd', new Map());
    const run = first.blob.chunks.slice(first.runs.get(1)!.first, first.runs.get(1)!.first + first.runs.get(1)!.count);
    const changed = Buffer.from(a);
    seeded('change', 100 << 10).copy(changed, 1 << 20);
    const next = await archive([['data/a.bin', changed]]);
    const store = async (hints?: Map<number, BlobDescriptor[]>) => {
      const dest = new MemoryDestination();
      const r = await storeChunked(Readable.from(pieces(next, 65536)), [{ dest, scope: SET_SCOPE }], 'zstd', new Map(), undefined, new Map(), [], hints);
      return { digests: r.blob.chunks.map((c) => c.digest), written: r.written, whole: await readAll(await openContent(dest, SET_SCOPE, r.blob, 'v')) };
    };
    const plain = await store();
    const hinted = await store(new Map([[1, run]]));
    expect(hinted.digests).toEqual(plain.digests);
    expect(hinted.written).toBe(plain.written);
    expect(hinted.whole.equals(next)).toBe(true);
    // Most of the file's chunks are the earlier ones.
    const earlier = new Set(run.map((c) => c.digest));
    expect(hinted.digests.filter((d) => earlier.has(d)).length).toBeGreaterThanOrEqual(run.length - 3);
  });

  it('takes a run of small files whole from the archive before: the same chunk list, the whole archive read back, a run of another length refused', async () => {
    const dest = new MemoryDestination();
    const targets = [{ dest, scope: SET_SCOPE }];
    // 60 small files (a run from the 2nd to the 41st), then a large one.
    const smalls: Array<[string, Buffer]> = Array.from({ length: 60 }, (_v, i) => [`data/s${String(i).padStart(2, '0')}`, randomBytes(2000 + i * 37)]);
    const files: Array<[string, Buffer]> = [...smalls, ['data/z.bin', randomBytes(300 << 10)]];
    const full = await archive(files);
    // Offsets: the directory's header, then each small file's header and padded data.
    const at = (i: number) => 512 + smalls.slice(0, i).reduce((n, [, d]) => n + 512 + Math.ceil(d.length / 512) * 512, 0);
    const range = { start: at(1), end: at(41) };
    const known = new Map<string, BlobDescriptor>();
    const first = await storeChunked(Readable.from(pieces(full, 65536)), targets, 'zstd', known, undefined, new Map(), [range]);
    const r = first.ranges.get(0)!;
    const run = first.blob.chunks.slice(r.first, r.first + r.count);
    expect(run.reduce((n, c) => n + c.contentSize, 0)).toBe(range.end - range.start);

    // Left unread: its files' headers written as they are, zeros for their data (as the walk writes them).
    const zeroed = await archive(files.map(([n, d], i) => [n, i >= 1 && i < 41 ? Buffer.alloc(d.length) : d]));
    expect(zeroed.length).toBe(full.length);
    const writes = dest.writes;
    const second = await storeChunked(Readable.from(pieces(zeroed, 65536)), targets, 'zstd', known, undefined, new Map(), [{ ...range, reused: run }]);
    expect(second.blob.chunks.map((c) => c.digest)).toEqual(first.blob.chunks.map((c) => c.digest));
    expect(second.ranges).toEqual(first.ranges);
    expect(dest.writes - writes).toBe(0);
    expect((await readAll(await openContent(dest, SET_SCOPE, second.blob, 'v'))).equals(full)).toBe(true);
    const read = (c: BlobDescriptor) => openContent(dest, SET_SCOPE, c, 'c');
    expect((await readAll(Readable.from(splicedArchive(pieces(zeroed, 65536), new Map(), read, [{ ...range, reused: run }])))).equals(full)).toBe(true);

    // Chunks that do not add up to the range: refused, never stored as zeros.
    const short = { ...range, reused: run.slice(1) };
    await expect(storeChunked(Readable.from(pieces(zeroed, 65536)), targets, 'zstd', known, undefined, new Map(), [short])).rejects.toThrow(
      /a run of files left unread takes/,
    );
    await expect(readAll(Readable.from(splicedArchive(pieces(zeroed, 65536), new Map(), read, [short])))).rejects.toThrow(/a run of files left unread takes/);
  });

  it('refuses a run that does not hold the member it stands for', async () => {
    const dest = new MemoryDestination();
    const targets = [{ dest, scope: SET_SCOPE }];
    const files: Array<[string, Buffer]> = [['data/a.bin', randomBytes(300 << 10)]];
    const first = await storeChunked(Readable.from([await archive(files)]), targets, 'zstd', new Map());
    const other = await archive([['data/a.bin', Buffer.alloc(400 << 10)]]);
    await expect(storeChunked(Readable.from([other]), targets, 'zstd', new Map(), undefined, new Map([[1, first.blob.chunks.slice(1, 2)]]))).rejects.toThrow(
      /a file left unread has 409600 bytes, not what its chunks hold/,
    );
  });
});
