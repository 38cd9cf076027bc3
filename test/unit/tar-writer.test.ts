import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { TAR_HOLE_MIN, TarWriter, type TarHeader } from '../../src/util/tar-writer.js';
import { isZeroBytes, zeroBytes } from '../../src/util/zeros.js';
import { putEntry } from '../../src/util/tar-entry.js';
import { giveBackMiB, MIB_BUFFER } from '../../src/util/mib-buffers.js';

/** Every byte of `stream`, once it ends. */
async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

/** One entry as both writers are given it: data at once, small data read into the room `open` gives, or large data in pieces. */
interface Case {
  h: TarHeader;
  data?: Buffer;
  how?: 'entry' | 'open' | 'room';
}

/** The archive tar-stream's pack writes for `cases`. */
async function byTarStream(cases: Case[]): Promise<Buffer> {
  const pack = tar.pack();
  const out = readAll(pack as unknown as NodeJS.ReadableStream);
  for (const { h, data } of cases) await putEntry(pack, { ...h } as tar.Header, data);
  pack.finalize();
  return out;
}

/** The archive TarWriter writes for `cases`, taking each data the way `how` says. */
async function byWriter(cases: Case[], highWaterMark?: number): Promise<Buffer> {
  const w = new TarWriter(highWaterMark);
  const out = readAll(w.stream);
  for (const { h, data, how } of cases) {
    if (how === undefined || how === 'entry' || !data) {
      await w.entry(h, data);
      continue;
    }
    if (how === 'room') {
      w.open({ ...h, size: data.length }, true);
      // As volume-tar reads a file: into the batch's room, as much as it takes, then committed.
      for (let at = 0; at < data.length;) {
        const room = w.room();
        const n = data.copy(room, 0, at);
        at += n;
        await w.commit(n, at === data.length ? data.length : undefined);
      }
      continue;
    }
    const room = w.open({ ...h, size: data.length });
    if (room) data.copy(room);
    else
      for (let at = 0; at < data.length; at += 300_000) {
        const end = Math.min(data.length, at + 300_000);
        await w.write(data.subarray(at, end), end === data.length ? data.length : undefined);
      }
  }
  await w.finalize();
  return out;
}

const mtime = new Date(1_700_000_000_000);
const file = (name: string, size: number, how: Case['how'] = 'entry', extra: Partial<TarHeader> = {}): Case => ({
  h: { name, type: 'file', mode: 0o100644, uid: 1000, gid: 1000, mtime, ...extra },
  data: randomBytes(size),
  how,
});

describe('TarWriter writes the bytes tar-stream writes', () => {
  it('for every kind of entry, long and non-ASCII names, PAX records and default modes', async () => {
    const deep = Array.from({ length: 12 }, (_v, i) => `directory-${i}`).join('/');
    const cases: Case[] = [
      { h: { name: 'top/', type: 'directory', mode: 0o40755, mtime } },
      file('top/empty', 0),
      file('top/one', 1),
      file('top/block', 512),
      file('top/block-and-one', 513),
      file('top/large-at-once', 200_000),
      file('top/small-read', 4000, 'open'),
      file('top/large-in-pieces', 1_500_000, 'open'),
      file('top/sixty-four-k', 64 << 10, 'open'),
      { h: { name: 'top/link', type: 'symlink', linkname: '../elsewhere', mode: 0o120777, mtime } },
      { h: { name: 'top/hard', type: 'link', linkname: 'top/one', mode: 0o100644, mtime } },
      { h: { name: 'top/tty', type: 'character-device', devmajor: 5, devminor: 0, mode: 0o20620, mtime } },
      { h: { name: 'top/disk', type: 'block-device', devmajor: 259, devminor: 70000, mode: 0o60660, mtime } },
      { h: { name: 'top/pipe', type: 'fifo', mode: 0o10600, mtime } },
      // A whiteout as layer-upper-tar writes it: no type, a character device's mode, no data.
      { h: { name: 'top/.wh.gone', mode: 0o20000, mtime }, data: Buffer.alloc(0) },
      { h: { name: 'top/no-mode-dir/', type: 'directory', mtime } },
      file('top/no-mode', 10, 'entry', { mode: 0 }),
      file(`top/${deep}/named-with-a-prefix`, 700),
      file(`top/${'x'.repeat(120)}`, 30),
      file('top/naïve-ünïcode', 30, 'open'),
      { h: { name: 'top/far', type: 'symlink', linkname: `/${'l'.repeat(150)}`, mode: 0o120777, mtime } },
      file('top/owned-high', 20, 'entry', { uid: 3_000_000, gid: 2_999_999, pax: { uid: '3000000', gid: '2999999' } }),
      file('top/capable', 20, 'open', { pax: { 'SCHILY.xattr.security.capability': '\u0001\u0000\u0000\u0002 \u0000' } }),
      file('top/setuid', 5, 'entry', { mode: 0o104755 }),
      file('top/old', 5, 'entry', { mtime: new Date(0) }),
      file('top/before-1970', 5, 'entry', { mtime: new Date('1950-06-01T00:00:00Z') }),
      file('top/far-future', 5, 'entry', { mtime: new Date('2200-01-01T00:00:00Z') }),
      file('top/top-of-field', 5, 'entry', { uid: 8 ** 6 - 1, gid: 8 ** 6, mode: 0o107777 }),
    ];
    expect((await byWriter(cases)).equals(await byTarStream(cases))).toBe(true);
  });

  it('for thousands of small files across many batches, with a reader that keeps it waiting', async () => {
    const cases = Array.from({ length: 3000 }, (_v, i) => file(`many/${i}`, (i * 997) % 5000, i % 2 ? 'open' : 'entry'));
    const ours = await byWriter(cases, 64 << 10);
    expect(ours.length).toBeGreaterThan(8 << 20);
    expect(ours.equals(await byTarStream(cases))).toBe(true);
  });
});

describe('TarWriter with a reader that takes each piece as it is handed on', () => {
  it('never hands on the room a small file is read into before it is filled: the padding that would cross the batch goes to the next one', async () => {
    // A long file of odd size leaves the batch off a block boundary; empty entries fill it to 1,600 bytes short of its MiB.
    const cases: Case[] = [
      file('odd', 70_000, 'open'),
      ...Array.from({ length: 2043 }, (_v, i) => ({ h: { name: `e${i}`, type: 'fifo' as const, mtime } })),
      file('small', 1600, 'open'),
    ];
    const w = new TarWriter();
    const copies: Buffer[] = [];
    // What a meter or a cipher does: it reads the piece the moment it is pushed.
    w.stream.on('data', (piece: Buffer) => copies.push(Buffer.from(piece)));
    const ended = new Promise((resolve) => w.stream.on('end', resolve));
    // Flowing from here on: each push reaches the listener at once.
    await new Promise((resolve) => setImmediate(resolve));
    for (const { h, data } of cases) {
      if (!data) await w.entry(h);
      else {
        const room = w.open({ ...h, size: data.length });
        if (room) data.copy(room);
        else await w.write(data, data.length);
      }
    }
    await w.finalize();
    await ended;
    expect(Buffer.concat(copies).equals(await byTarStream(cases))).toBe(true);
  });
});

describe('TarWriter with data read into its batch (room, commit)', () => {
  it('writes the bytes tar-stream writes, files of every size across batches, among small ones and entries', async () => {
    const sizes = [0, 1, 511, 512, 65_536, 70_001, 1 << 20, (1 << 20) + 3, 2_500_000, 300_000];
    const cases: Case[] = sizes.flatMap((size, i) => [file(`big/${i}`, size, 'room'), file(`small/${i}`, (i * 911) % 4000, i % 2 ? 'open' : 'entry')]);
    const ours = await byWriter(cases, 64 << 10);
    expect(ours.equals(await byTarStream(cases))).toBe(true);
  });

  it('refuses a commit longer than the room it gave, and gives at least 64 KiB of room', async () => {
    const w = new TarWriter();
    void readAll(w.stream);
    w.open({ name: 'f', type: 'file', mtime, size: 3 << 20 }, true);
    const room = w.room();
    expect(room.length).toBeGreaterThanOrEqual(64 << 10);
    expect(() => w.commit(room.length + 1)).toThrow(RangeError);
    await w.commit(room.length - 1000);
    expect(w.room().length).toBeGreaterThanOrEqual(64 << 10);
  });

  it('writes the same bytes when its reader hands each batch back the moment it has read it (the spool, mib-buffers.ts)', async () => {
    const cases: Case[] = Array.from({ length: 40 }, (_v, i) => file(`f${i}`, 150_000 + i * 9_973, i % 3 ? 'room' : 'entry'));
    const w = new TarWriter();
    const copies: Buffer[] = [];
    let handedBack = 0;
    w.stream.on('data', (piece: Buffer) => {
      copies.push(Buffer.from(piece));
      // Scribbled over, as a batch reused by the next take would be: nothing read later may come from it.
      if (piece.buffer.byteLength === MIB_BUFFER && piece.byteOffset === 0) {
        piece.fill(0xa5);
        giveBackMiB([piece]);
        handedBack++;
      }
    });
    const ended = new Promise((resolve) => w.stream.on('end', resolve));
    await new Promise((resolve) => setImmediate(resolve));
    for (const { h, data, how } of cases) {
      if (how !== 'room') await w.entry(h, data);
      else {
        w.open({ ...h, size: data!.length }, true);
        for (let at = 0; at < data!.length;) {
          const n = data!.copy(w.room(), 0, at);
          at += n;
          await w.commit(n, at === data!.length ? data!.length : undefined);
        }
      }
    }
    await w.finalize();
    await ended;
    expect(handedBack).toBeGreaterThan(3);
    expect(Buffer.concat(copies).equals(await byTarStream(cases))).toBe(true);
  });
});

describe('TarWriter with zeros read as holes (zeroBytes)', () => {
  it('hands a zero piece of TAR_HOLE_MIN or more on as it is, a shorter one copied, and writes the bytes tar-stream writes', async () => {
    const holes = [TAR_HOLE_MIN, 10_000, 60_000, TAR_HOLE_MIN - 1, 100];
    const cases: Case[] = holes.map((n, i) => ({ h: { name: `z${i}`, type: 'file', mode: 0o100644, mtime }, data: Buffer.alloc(n) }));
    const w = new TarWriter();
    const pieces: Buffer[] = [];
    w.stream.on('data', (piece: Buffer) => pieces.push(piece));
    const ended = new Promise((resolve) => w.stream.on('end', resolve));
    for (const [i, n] of holes.entries()) {
      expect(w.open({ ...cases[i].h, size: n }, true)).toBeUndefined();
      await w.write(zeroBytes(n), n);
    }
    await w.finalize();
    await ended;
    // Only the pieces of TAR_HOLE_MIN or more come out as views of the shared zeros, each as long as it went in.
    expect(pieces.filter(isZeroBytes).map((p) => p.length)).toEqual(holes.filter((n) => n >= TAR_HOLE_MIN));
    expect(Buffer.concat(pieces).equals(await byTarStream(cases))).toBe(true);
  });
});

describe('TarWriter with room left for headers written afterwards (skip, fileHeader)', () => {
  it('gives, with each header put in its place later, the bytes of the archive written whole', async () => {
    // A run of files between two entries, as volume-tar leaves one unread: its zeros as a hole, its headers after.
    const run: Case[] = [
      { h: { name: 'd/a', type: 'file', mode: 0o100600, uid: 70, gid: 70, mtime }, data: Buffer.alloc(700) },
      // A name too long for ustar and a capability: a PAX header first.
      { h: { name: `d/${'n'.repeat(120)}`, type: 'file', mode: 0o100755, mtime, pax: { 'SCHILY.xattr.security.capability': 'x' } }, data: Buffer.alloc(5000) },
      { h: { name: 'd/empty', type: 'file', mode: 0o100644, mtime }, data: Buffer.alloc(0) },
      { h: { name: 'd/é', type: 'file', mode: 0o100644, uid: 3_000_000, mtime, pax: { uid: '3000000' } }, data: Buffer.alloc(2 << 20) },
    ];
    const cases = [file('before', 1000), ...run, file('after', 3000)];
    const whole = await byWriter(cases);
    const w = new TarWriter();
    const out = readAll(w.stream);
    await w.entry(cases[0].h, cases[0].data);
    const start = 512 + 1024;
    const headers = run.map(({ h, data }) => TarWriter.fileHeader(h, data!.length));
    const bytes = run.reduce((n, { data }, i) => n + headers[i].length + Math.ceil(data!.length / 512) * 512, 0);
    await w.skip(bytes);
    await w.entry(cases.at(-1)!.h, cases.at(-1)!.data);
    await w.finalize();
    const archive = await out;
    expect(archive.length).toBe(whole.length);
    // The room is zeros until the headers are written into it.
    expect(archive.subarray(start, start + bytes).equals(Buffer.alloc(bytes))).toBe(true);
    let at = start;
    for (const [i, { data }] of run.entries()) {
      headers[i].copy(archive, at);
      at += headers[i].length + Math.ceil(data!.length / 512) * 512;
    }
    expect(archive.equals(whole)).toBe(true);
    // fileHeaderBytes gives each header's length without making it where one block holds it.
    for (const [i, { h, data }] of run.entries()) expect(TarWriter.fileHeaderBytes(h, data!.length)).toBe(headers[i].length);
    const splitName = `${'p'.repeat(90)}/${'n'.repeat(90)}`;
    expect(TarWriter.fileHeaderBytes({ name: splitName, mtime }, 1)).toBe(TarWriter.fileHeader({ name: splitName, mtime }, 1).length);
  });
});

describe('TarWriter when its reader fails', () => {
  it('rejects the waiting call and every later one with the reader’s error, and raises nothing uncaught', async () => {
    const w = new TarWriter(64 << 10);
    const failing = new Writable({ write: (_c, _e, done) => done(new Error('no space left on device')) });
    const piped = pipeline(w.stream, failing).catch((err: Error) => err);
    let waited: Error | undefined;
    for (let i = 0; i < 1000 && !waited; i++) await Promise.resolve(w.entry(file(`f${i}`, 4000).h, randomBytes(4000))).catch((err: Error) => (waited = err));
    expect(waited?.message).toBe('no space left on device');
    expect((await piped)?.message).toBe('no space left on device');
    await expect(w.entry({ name: 'after', type: 'file', mtime }, Buffer.from('x'))).rejects.toThrow('no space left on device');
    expect(() => w.open({ name: 'after', size: 1, mtime })).toThrow('no space left on device');
  });
});
