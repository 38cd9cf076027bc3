import { afterAll, describe, expect, it } from 'vitest';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync, ftruncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { directStream, mostlyHoles } from '../../src/util/direct-read.js';
import { allZero } from '../../src/util/zeros.js';

const MiB = 1 << 20;

describe('O_DIRECT reads of a mostly-holes file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'csx-direct-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('give the same bytes as a buffered read, holes as shared zeros', async () => {
    const path = join(dir, 'sparse');
    const fd = openSync(path, 'w');
    writeSync(fd, Buffer.alloc(5000, 3), 0, 5000, 0);
    writeSync(fd, Buffer.alloc(100, 5), 0, 100, 20 * MiB + 77);
    ftruncateSync(fd, 40 * MiB + 123);
    closeSync(fd);
    const stream = directStream(path);
    // A file system without O_DIRECT (tmpfs before Linux 6.6) gives undefined: nothing to compare then.
    if (!stream) return expect(stream).toBeUndefined();
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).equals(readFileSync(path))).toBe(true);
    expect(chunks.filter((c) => allZero(c)).length).toBeGreaterThan(30);
  });

  it('are not used for a file that is mostly data', () => {
    const path = join(dir, 'dense');
    writeFileSync(path, Buffer.alloc(2 * MiB, 1));
    expect(directStream(path)).toBeUndefined();
    expect(mostlyHoles(4 * MiB, 8)).toBe(true);
    expect(mostlyHoles(4 * MiB, 8192)).toBe(false);
    expect(mostlyHoles(1000, 0)).toBe(false);
  });
});
