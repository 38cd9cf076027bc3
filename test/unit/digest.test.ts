import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ChecksumError, VERIFIER_HOLD_BYTES, Verifier, sha256Digest } from '../../src/oci/digest.js';

/** Streams `data` in 16 KiB chunks through a Verifier; returns how many bytes its reader got, and the error if any. */
async function through(data: Buffer, expected: { digest: string; size?: number }): Promise<{ received: number; error?: unknown }> {
  const chunks = Array.from({ length: Math.ceil(data.length / 16384) }, (_, i) => data.subarray(i * 16384, (i + 1) * 16384));
  let received = 0;
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      received += chunk.length;
      done();
    },
  });
  try {
    await pipeline(Readable.from(chunks), new Verifier(expected, 'blob'), sink);
    return { received };
  } catch (error) {
    return { received, error };
  }
}

describe('Verifier', () => {
  const data = randomBytes(300 * 1024);

  it('passes every byte of content whose digest and size match', async () => {
    expect(await through(data, { digest: sha256Digest(data), size: data.length })).toEqual({ received: data.length });
  });

  it('keeps the end of content whose digest is wrong from its reader, and fails', async () => {
    const changed = Buffer.from(data);
    changed[changed.length - 1] ^= 1;
    const { received, error } = await through(changed, { digest: sha256Digest(data), size: data.length });
    expect(error).toBeInstanceOf(ChecksumError);
    expect((error as Error).message).toMatch(/^blob: checksum mismatch \(expected sha256:[0-9a-f]{64}, 307200 bytes; found sha256:/);
    expect(received).toBeLessThanOrEqual(data.length - VERIFIER_HOLD_BYTES);
  });

  it('fails as soon as more bytes than recorded come', async () => {
    const { error } = await through(data, { digest: sha256Digest(data), size: 1000 });
    expect((error as Error).message).toBe('blob: more than the 1000 bytes recorded');
  });

  it('makes the caller’s error on a mismatch when asked', async () => {
    const { error } = await through(data, { digest: sha256Digest(Buffer.from('other')) });
    expect(error).toBeInstanceOf(ChecksumError);
    const custom = new Verifier({ digest: sha256Digest(Buffer.from('other')) }, 'blob', (found) => new Error(`found ${found}`));
    await expect(pipeline(Readable.from([data]), custom, new Writable({ write: (_c, _e, d) => d() }))).rejects.toThrow(`found ${sha256Digest(data)}`);
  });
});
