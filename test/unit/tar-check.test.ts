import { describe, expect, it } from 'vitest';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { TarChecker } from '../../src/util/tar-check.js';

/** A ustar header block (POSIX.1-2017 pax, ustar) with its checksum. */
function header(name: string, size: number, type = '0', magic = 'ustar\u000000'): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 'latin1');
  h.write('0000644\0', 100, 'latin1');
  h.write(`${size.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  h.write('00000000000\0', 136, 'latin1');
  h.write(type, 156, 'latin1');
  h.write(magic, 257, 'latin1');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return h;
}
const padded = (data: Buffer) => Buffer.concat([data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
const END = Buffer.alloc(1024);

/** A pax extended header (`x`) holding one `size` record (POSIX.1-2017 pax, "pax Extended Header"). */
function paxSize(size: number): Buffer {
  const body = ` size=${size}\n`;
  let record = `${body.length + 2}${body}`;
  if (record.length !== Number.parseInt(record, 10)) record = `${body.length + 3}${body}`;
  return Buffer.concat([header('PaxHeaders/f', record.length, 'x'), padded(Buffer.from(record, 'latin1'))]);
}

async function check(parts: Buffer[], opts: { overwrite?: boolean } = {}): Promise<Buffer[]> {
  const out: Buffer[] = [];
  await pipeline(
    Readable.from(parts),
    new TarChecker('vol'),
    new Writable({
      write(c: Buffer, _e, done) {
        out.push(c);
        // A reader that reuses the piece at once (mib-buffers.ts): the checker must hold nothing of it.
        if (opts.overwrite) setImmediate(() => (c.fill(0xa5), done()));
        else done();
      },
    }),
  );
  return out;
}

async function packed(): Promise<Buffer> {
  const p = tar.pack();
  p.entry({ name: 'data/', type: 'directory' });
  p.entry({ name: 'data/f', size: 3000 }, Buffer.alloc(3000, 1));
  p.entry({ name: `data/${'long-'.repeat(40)}`, size: 10 }, Buffer.alloc(10, 2));
  p.entry({ name: 'data/l', type: 'symlink', linkname: 'f' });
  p.finalize();
  const parts: Buffer[] = [];
  for await (const c of p) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** The names tar-stream's extract reads from `archive`: what the checker must agree with. */
async function tarStreamTakes(archive: Buffer): Promise<string[]> {
  const names: string[] = [];
  const extract = tar.extract();
  extract.on('entry', (h, stream, next) => {
    names.push(h.name);
    stream.on('end', next);
    stream.resume();
  });
  await pipeline(Readable.from([archive]), extract);
  return names;
}

describe('TarChecker', () => {
  it('passes each piece on as the same Buffer, in order', async () => {
    const whole = await packed();
    const parts = [whole.subarray(0, 700), whole.subarray(700, 701), whole.subarray(701)];
    const out = await check(parts);
    expect(out.length).toBe(3);
    out.forEach((o, i) => expect(o).toBe(parts[i]));
  });

  it('keeps nothing of a piece once passed on: pieces reused at once by the reader do not change its verdict', async () => {
    const whole = await packed();
    // Pieces of 100 bytes split every header; each is overwritten once the reader has it.
    const copies = Array.from({ length: Math.ceil(whole.length / 100) }, (_v, i) => Buffer.from(whole.subarray(i * 100, (i + 1) * 100)));
    await expect(check(copies, { overwrite: true })).resolves.toHaveLength(copies.length);
    const cut = Array.from({ length: 20 }, (_v, i) => Buffer.from(whole.subarray(i * 100, (i + 1) * 100)));
    await expect(check(cut, { overwrite: true })).rejects.toThrow(/vol: the engine's archive is not a whole tar \(it ends inside a member\)/);
  });

  it("takes a pax header's size for the next member's (a member of 8 GiB or more)", async () => {
    const data = Buffer.alloc(5000, 3);
    // The ustar size field says 0; the pax record says 5000: the member's data follows.
    const archive = Buffer.concat([paxSize(5000), header('big', 0), padded(data), header('after', 4), padded(Buffer.from('tail')), END]);
    await expect(check([archive])).resolves.toHaveLength(1);
    expect(await tarStreamTakes(archive)).toEqual(['big', 'after']);
    // Read by the ustar field alone, the data would be taken for headers.
    const without = Buffer.concat([header('big', 0), padded(data), END]);
    await expect(check([without])).rejects.toThrow(/checksum is wrong at byte 512/);
  });

  it('fails at once on a header whose checksum is wrong or whose format is unknown, naming the byte', async () => {
    const good = Buffer.concat([header('a', 3), padded(Buffer.from('abc'))]);
    const bad = header('b', 0);
    bad[0] ^= 1;
    await expect(check([good, bad, END])).rejects.toThrow(/not a whole tar \(a header's checksum is wrong at byte 1024\)/);
    await expect(check([header('c', 0, '0', 'nottar\0\0'), END])).rejects.toThrow(/a header of unknown format at byte 0/);
  });

  it("takes a header-only member's data as empty whatever its size field, as Go's archive/tar reads it, and says an archive of no member is empty", async () => {
    // A directory and a symlink whose size fields are not 0: the next header follows each at once.
    for (const type of ['5', '2']) await expect(check([Buffer.concat([header('d', 700, type), header('f', 0), END])])).resolves.toHaveLength(1);
    // A pre-POSIX regular file (type NUL) named with a trailing slash is a directory too.
    await expect(check([Buffer.concat([header('e/', 700, '\0'), header('f', 0), END])])).resolves.toHaveLength(1);
    // Type '0' with a trailing slash is a file: its 1600 bytes of data would run past the end.
    await expect(check([Buffer.concat([header('e/', 1600, '0'), header('f', 0), END])])).rejects.toThrow(/ends inside a member/);
    await expect(check([END])).rejects.toThrow(/vol: the engine sent an empty archive/);
  });

  it('fails on an archive cut short between two members: it must end with the end-of-archive marker', async () => {
    const first = Buffer.concat([header('a', 3), padded(Buffer.from('abc'))]);
    const second = Buffer.concat([header('b', 2), padded(Buffer.from('de'))]);
    await expect(check([first, second, END])).resolves.toHaveLength(3);
    // One zero block ends it too (GNU tar reads it so); padding after the marker is zeros.
    await expect(check([first, END.subarray(512)])).resolves.toHaveLength(2);
    await expect(check([first, END, Buffer.alloc(8192)])).resolves.toHaveLength(3);
    await expect(check([first, second])).rejects.toThrow(/it ends without the end-of-archive marker, cut short between two members/);
    // A zero block followed by more members is not the end.
    await expect(check([first, END.subarray(512), second])).rejects.toThrow(/without the end-of-archive marker/);
  });

  it('fails on an archive that ends inside a header or inside a pax header', async () => {
    await expect(check([header('a', 0).subarray(0, 300)])).rejects.toThrow(/it ends inside a member/);
    await expect(check([paxSize(10).subarray(0, 600)])).rejects.toThrow(/it ends inside a member/);
  });
});

describe('TarChecker on a size field it cannot read', () => {
  it('fails at once, never loops, on an extended or regular header whose size is not octal; NULs around an octal size are read', async () => {
    for (const type of ['x', 'L', '0']) {
      const h = header('bad', 0, type);
      h.write('zzzzzzzzzzz\0', 124, 'latin1');
      // The checksum made again over the new size field.
      h.fill(0x20, 148, 156);
      let sum = 0;
      for (const b of h) sum += b;
      h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
      await expect(check([h, END]), type).rejects.toThrow(/a header with no valid size at byte 0/);
    }
    const nuls = header('nul', 0);
    nuls.write(`${'\0'.repeat(8)}3${'\0'.repeat(3)}`, 124, 'latin1');
    nuls.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of nuls) sum += b;
    nuls.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
    await expect(check([nuls, padded(Buffer.from('abc')), END])).resolves.toHaveLength(3);
  });
});

describe('TarChecker of a writable layer (emptyOk)', () => {
  it('takes an archive of no member, ended by its marker, as whole; not one of no bytes', async () => {
    const run = (parts: Buffer[]) => pipeline(Readable.from(parts), new TarChecker('layer', true), new Writable({ write: (_c, _e, d) => d() }));
    await expect(run([END])).resolves.toBeUndefined();
    await expect(run([Buffer.alloc(0)])).rejects.toThrow(/layer: the engine's archive is not a whole tar \(it ends without the end-of-archive marker/);
  });
});
