import { createHash } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { BufferedUpload, type StreamingUpload } from '../../src/registry/upload.js';

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** BufferedUpload steps that record what they were asked; `streamed` gathers what went to the PATCH. */
function steps(opts: { failStreaming?: boolean } = {}) {
  const seen: string[] = [];
  const streamed: Buffer[] = [];
  return {
    seen,
    streamed,
    steps: {
      streaming: async () => {
        seen.push('patch');
        if (opts.failStreaming) throw new Error('no token');
        const stream = new PassThrough();
        stream.on('data', (b: Buffer) => streamed.push(b));
        return {
          stream,
          finish: async (d: string) => void seen.push(`finish ${d}`),
          cancel: async () => void seen.push('cancel streaming'),
        } as unknown as StreamingUpload;
      },
      whole: async (body: Buffer, digest: string) => void seen.push(`whole ${body.length} ${digest}`),
      discard: async () => void seen.push('discard'),
    },
  };
}

describe('BufferedUpload', () => {
  it('sends a blob of up to its limit whole, in the PUT that completes it', async () => {
    const s = steps();
    const up = new BufferedUpload(s.steps, 10);
    const data = Buffer.from('0123456789');
    up.stream.write(data.subarray(0, 4));
    up.stream.end(data.subarray(4));
    await up.finish(sha(data));
    expect(s.seen).toEqual([`whole 10 ${sha(data)}`]);
  });

  it('streams a larger one in a PATCH, what it held first, in order', async () => {
    const s = steps();
    const up = new BufferedUpload(s.steps, 10);
    const data = Buffer.from('0123456789abcdef');
    up.stream.write(data.subarray(0, 8));
    up.stream.end(data.subarray(8));
    await up.finish(sha(data));
    expect(Buffer.concat(s.streamed).equals(data)).toBe(true);
    expect(s.seen).toEqual(['patch', `finish ${sha(data)}`]);
  });

  it('fails its stream when the PATCH cannot be opened, and a cancel discards the session', async () => {
    const s = steps({ failStreaming: true });
    const up = new BufferedUpload(s.steps, 4);
    const failed = new Promise((resolve) => up.stream.once('error', resolve));
    up.stream.write(Buffer.from('0123456789'));
    expect(String(await failed)).toMatch(/no token/);
    await up.cancel();
    expect(s.seen).toEqual(['patch', 'discard']);
  });

  it('refuses an invalid digest at finish', async () => {
    const up = new BufferedUpload(steps().steps, 4);
    up.stream.end(Buffer.from('x'));
    await expect(up.finish('sha256:nope')).rejects.toThrow(/Invalid digest/);
  });
});
