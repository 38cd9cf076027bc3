import { describe, expect, it } from 'vitest';
import { PassThrough, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fanOut } from '../../src/util/streams.js';
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
