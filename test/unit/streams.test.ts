import { describe, expect, it } from 'vitest';
import { PassThrough, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fanOut, Gather } from '../../src/util/streams.js';
import { storeBlob } from '../../src/snapshot/blobs.js';
import { SET_SCOPE } from '../../src/destinations/types.js';
import { MemoryDestination } from '../support/memory-destination.js';
import { TarChecker } from '../../src/util/tar-check.js';

function sink(opts: { failAfter?: number; slow?: boolean } = {}): Writable & { bytes: number } {
  let bytes = 0;
  const w = new Writable({
    highWaterMark: 16,
    write(chunk: Buffer, _enc, done) {
      bytes += chunk.length;
      if (opts.failAfter !== undefined && bytes > opts.failAfter) {
        done(new Error('ENOSPC: no space left on device'));
        return;
      }
      if (opts.slow) setTimeout(done, 1);
      else done();
    },
  }) as Writable & { bytes: number };
  Object.defineProperty(w, 'bytes', { get: () => bytes });
  return w;
}

const chunks = () => Readable.from(Array.from({ length: 50 }, () => Buffer.alloc(1024, 7)));

describe('fanOut', () => {
  it('writes every byte to every target, the slowest one setting the pace', async () => {
    const a = sink();
    const b = sink({ slow: true });
    await pipeline(chunks(), fanOut([a, b]));
    expect([a.bytes, b.bytes]).toEqual([51200, 51200]);
  });

  it('leaves a target whose reader comes later intact after a normal end (an upload that starts late)', async () => {
    const a = sink();
    const late = new PassThrough();
    await pipeline(Readable.from([Buffer.from('small blob')]), fanOut([a, late]));
    expect(late.destroyed).toBe(false);
    const read: Buffer[] = [];
    for await (const c of late) read.push(c as Buffer);
    expect(Buffer.concat(read).toString()).toBe('small blob');
  });

  it('fails the pipeline, without an unhandled error or a hang, when one target fails', async () => {
    const a = sink({ slow: true });
    const b = sink({ failAfter: 4096 });
    await expect(pipeline(chunks(), fanOut([a, b]))).rejects.toThrow(/ENOSPC/);
    expect(a.destroyed).toBe(true);
  });
});

describe('TarChecker', () => {
  const archive = async () => {
    const tar = (await import('tar-stream')).default;
    const p = tar.pack();
    p.entry({ name: 'data/', type: 'directory' });
    p.entry({ name: 'data/f', size: 3000 }, Buffer.alloc(3000, 1));
    p.finalize();
    const parts: Buffer[] = [];
    for await (const c of p) parts.push(c as Buffer);
    return Buffer.concat(parts);
  };

  it('passes a whole archive through unchanged', async () => {
    const whole = await archive();
    const out: Buffer[] = [];
    await pipeline(Readable.from([whole]), new TarChecker('vol'), new Writable({ write: (c, _e, d) => (out.push(c), d()) }));
    expect(Buffer.concat(out)).toEqual(whole);
  });

  it('fails on an archive cut short', async () => {
    const whole = await archive();
    await expect(pipeline(Readable.from([whole.subarray(0, 1500)]), new TarChecker('vol'), new Writable({ write: (_c, _e, d) => d() }))).rejects.toThrow(
      /vol: the engine's archive is not a whole tar/,
    );
  });
});

describe('Gather', () => {
  const bytes = (n: number, seed = 1) => Buffer.from(Array.from({ length: n }, (_v, i) => (i * 31 + seed) & 0xff));
  const collect = async (source: Readable, gather: Gather) => {
    const out: Buffer[] = [];
    await pipeline(source, gather, new Writable({ write: (c: Buffer, _e, done) => (out.push(c), done()) }));
    return out;
  };

  it('passes the bytes unchanged in pieces of at least its size, the last one shorter', async () => {
    const parts = Array.from({ length: 40 }, (_v, i) => bytes(300 + i * 7, i));
    const out = await collect(Readable.from(parts), new Gather(4096));
    expect(Buffer.concat(out).equals(Buffer.concat(parts))).toBe(true);
    expect(out.slice(0, -1).every((c) => c.length >= 4096)).toBe(true);
    expect(out.length).toBeLessThan(parts.length);
  });

  it('passes a chunk of its size or more as it is when it holds nothing', async () => {
    const big = bytes(10_000);
    const out = await collect(Readable.from([big, bytes(10), bytes(9000)]), new Gather(4096));
    expect(out[0]).toBe(big);
    expect(out.map((c) => c.length)).toEqual([10_000, 9010]);
  });

  it('passes nothing on for an empty stream', async () => {
    expect(await collect(Readable.from([]), new Gather(4096))).toEqual([]);
  });

  it('fails the pipeline when its source fails, without passing on what it held', async () => {
    const failing = Readable.from(
      (async function* () {
        yield bytes(100);
        throw new Error('source cut');
      })(),
    );
    const out: Buffer[] = [];
    await expect(pipeline(failing, new Gather(4096), new Writable({ write: (c: Buffer, _e, done) => (out.push(c), done()) }))).rejects.toThrow(/source cut/);
    expect(out).toEqual([]);
  });
});

describe('storeBlob', () => {
  it('stores the same bytes (the same digest) however the content is cut, zstd and gzip', async () => {
    const content = Buffer.from(Array.from({ length: 3 << 20 }, (_v, i) => (i % 251) ^ ((i >> 12) & 0xff)));
    const cuts = [
      [content],
      Array.from({ length: Math.ceil(content.length / 4096) }, (_v, i) => content.subarray(i * 4096, (i + 1) * 4096)),
      [content.subarray(0, 5), content.subarray(5, 1_500_001), content.subarray(1_500_001)],
    ];
    for (const mediaType of ['application/vnd.oci.image.layer.v1.tar+zstd', 'application/vnd.oci.image.layer.v1.tar+gzip']) {
      const digests = new Set<string>();
      for (const parts of cuts) {
        const dest = new MemoryDestination();
        const blob = await storeBlob(Readable.from(parts), [{ dest, scope: SET_SCOPE }], mediaType);
        expect(blob.contentSize).toBe(content.length);
        digests.add(blob.digest);
      }
      expect(digests.size).toBe(1);
    }
  });
});
