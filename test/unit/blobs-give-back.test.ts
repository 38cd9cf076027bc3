import { describe, expect, it, vi } from 'vitest';
import { randomFillSync } from 'node:crypto';
import { Readable } from 'node:stream';
import { SET_SCOPE } from '../../src/destinations/types.js';
import { openContent, storeBlob } from '../../src/snapshot/blobs.js';
import { freeMiBCount, MIB_BUFFER, takeMiB } from '../../src/util/mib-buffers.js';
import { readSmall } from '../../src/util/streams.js';
import { MemoryDestination } from '../support/memory-destination.js';

// Each buffer handed back is scribbled over at once, as the next take would fill it: one handed back
// before the compressor had read it whole puts those bytes in the stored blob.
const given: Buffer[] = [];
vi.mock('../../src/util/mib-buffers.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/util/mib-buffers.js')>();
  return {
    ...real,
    giveBackMiB: (pieces: Buffer[]) => {
      for (const p of pieces) {
        given.push(p);
        if (p.buffer.byteLength === real.MIB_BUFFER && p.byteOffset === 0) p.fill(0xa5);
      }
      real.giveBackMiB(pieces);
    },
  };
});

describe('storing a blob from buffers of mib-buffers.ts', () => {
  for (const mediaType of ['application/vnd.oci.image.layer.v1.tar+zstd', 'application/vnd.oci.image.layer.v1.tar+gzip']) {
    it(`hands each back once the compressor has read it, and stores what they held (${mediaType.split('+')[1]})`, async () => {
      given.length = 0;
      const batches = Array.from({ length: 12 }, (_, i) => {
        const b = takeMiB();
        // Half random, half repeated: the compressor takes its time over each.
        randomFillSync(b, 0, MIB_BUFFER / 2);
        b.fill(i, MIB_BUFFER / 2);
        return i === 11 ? b.subarray(0, 300_000) : b;
      });
      const copy = Buffer.concat(batches);
      const dest = new MemoryDestination();
      const blob = await storeBlob(Readable.from(batches), [{ dest, scope: SET_SCOPE }], mediaType);
      expect(blob.contentSize).toBe(copy.length);
      const content = await readSmall(await openContent(dest, SET_SCOPE, blob, 'blob'), 1 << 30);
      expect(content.equals(copy)).toBe(true);
      // Each batch once (the compressor's final empty write is handed back too, and ignored).
      const ours = new Set(batches.map((b) => b.buffer));
      expect(given.filter((p) => ours.has(p.buffer))).toHaveLength(batches.length);
      expect(freeMiBCount()).toBeGreaterThan(0);
    });
  }
});
