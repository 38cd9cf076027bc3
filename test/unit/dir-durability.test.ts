import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { putBlob as put, setNaming } from '../support/dir-sets.js';

/** What the dir: destination asked of the file system, in order: `sync <name>`, `rename <from> <to>`, `writeFile <name>`, `link <from> <to>`. */
const events: string[] = [];
const failSync = { path: '' };
const name = (p: unknown) => basename(String(p));

vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  return {
    ...real,
    open: async (...args: Parameters<typeof real.open>) => {
      const handle = await real.open(...args);
      const sync = handle.sync.bind(handle);
      handle.sync = async () => {
        if (failSync.path && name(args[0]).startsWith(failSync.path)) throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
        await sync();
        events.push(`sync ${name(args[0])}`);
      };
      return handle;
    },
    rename: async (from: string, to: string) => {
      await real.rename(from, to);
      events.push(`rename ${name(from)} ${name(to)}`);
    },
    writeFile: async (...args: Parameters<typeof real.writeFile>) => {
      await real.writeFile(...args);
      events.push(`writeFile ${name(args[0])}`);
    },
    link: async (from: string, to: string) => {
      await real.link(from, to);
      events.push(`link ${name(from)} ${name(to)}`);
    },
  };
});

const { DirDestination } = await import('../../src/destinations/dir/index.js');

const hex = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('dir: durability order', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'cs-durable-'));
    events.length = 0;
    failSync.path = '';
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('writes the set document only after every blob it names is synced, renamed into place and blobs/sha256 synced', async () => {
    const dest = new DirDestination('dir:t', root);
    await dest.check('write');
    const bodies = Array.from({ length: 40 }, (_v, i) => randomBytes(1000 + i));
    const digests = await Promise.all(bodies.map((b) => put(dest, b)));
    // Accepted blobs count as held and read back whole while their sync is still on its way.
    expect(await dest.hasBlob({ set: true }, digests[39])).toBe(true);
    const back: Buffer[] = [];
    for await (const piece of await dest.readBlob({ set: true }, digests[39])) back.push(piece as Buffer);
    expect(Buffer.concat(back).equals(bodies[39])).toBe(true);

    await dest.writeSet(setNaming('t1', digests));
    await dest.close();

    const setDocument = events.findIndex((e) => e.startsWith('writeFile blob-'));
    expect(setDocument).toBeGreaterThan(0);
    const blobsDirSync = events.lastIndexOf('sync sha256', setDocument);
    for (const d of digests) {
      const placed = events.findIndex((e) => e.startsWith('rename ') && e.endsWith(` ${d.slice(7)}`));
      const tmp = events[placed].split(' ')[1];
      const synced = events.indexOf(`sync ${tmp}`);
      expect(synced).toBeGreaterThanOrEqual(0);
      expect(synced).toBeLessThan(placed);
      expect(placed).toBeLessThan(blobsDirSync);
    }
    expect(blobsDirSync).toBeLessThan(setDocument);
    expect(events.findIndex((e) => e.startsWith('link '))).toBeGreaterThan(setDocument);
    for (const [i, d] of digests.entries()) expect(readFileSync(join(root, 'blobs', 'sha256', d.slice(7))).equals(bodies[i])).toBe(true);
    expect(readdirSync(join(root, '.tmp'))).toEqual([]);
  });

  it('writes no set when a blob could not be synced, and leaves neither that blob nor its temp file', async () => {
    const dest = new DirDestination('dir:t', root);
    await dest.check('write');
    const good = await put(dest, randomBytes(500));
    await dest.writeSet(setNaming('before', [good]));
    failSync.path = 'blob-';
    const bad = await put(dest, randomBytes(600));
    await expect(dest.writeSet(setNaming('t2', [good, bad]))).rejects.toThrow(`dir:t: blob ${bad} could not be made durable: EIO: i/o error, fsync`);
    await dest.close();
    expect(await dest.hasSet('t2')).toBe(false);
    expect(await dest.hasBlob({ set: true }, bad)).toBe(false);
    expect(readdirSync(join(root, '.tmp'))).toEqual([]);
    expect(events.some((e) => e.startsWith('link ') && e.includes('t2'))).toBe(false);
  });

  it('refuses a blob of another size than the one committed, and keeps nothing of it', async () => {
    const dest = new DirDestination('dir:t', root);
    await dest.check('write');
    const body = randomBytes(300);
    const writer = await dest.writeBlob();
    await new Promise<void>((resolve) => writer.stream.end(body, resolve));
    await expect(writer.commit(`sha256:${hex(body)}`, 301)).rejects.toThrow(`dir:t: blob sha256:${hex(body)} has 300 bytes, expected 301`);
    await dest.close();
    expect(await dest.hasBlob({ set: true }, `sha256:${hex(body)}`)).toBe(false);
    expect(readdirSync(join(root, '.tmp'))).toEqual([]);
  });

  it('keeps one copy when writers of the same blob commit at once (two containers storing one chunk), and a set after it', async () => {
    const dest = new DirDestination('dir:t', root);
    await dest.check('write');
    const write = async (body: Buffer) => {
      const writer = await dest.writeBlob();
      await new Promise<void>((resolve, reject) => {
        writer.stream.once('error', reject);
        writer.stream.end(body, resolve);
      });
      return writer;
    };
    for (let round = 0; round < 5; round++) {
      const shared = randomBytes(1000 + round);
      const others = [randomBytes(2000), randomBytes(3000)];
      const bodies = [...others, shared, shared, shared];
      const writers = await Promise.all(bodies.map(write));
      await Promise.all(writers.map((w, i) => w.commit(`sha256:${hex(bodies[i])}`, bodies[i].length)));
      const digests = [...new Set(bodies.map((b) => `sha256:${hex(b)}`))];
      await dest.writeSet(setNaming(`r${round}`, digests));
      for (const b of bodies) expect(readFileSync(join(root, 'blobs', 'sha256', hex(b))).equals(b)).toBe(true);
    }
    await dest.close();
    expect(readdirSync(join(root, '.tmp'))).toEqual([]);
  });
});
