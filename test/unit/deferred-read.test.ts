import { afterEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import {
  linkSync,
  lstatSync,
  readFileSync,
  mkdirSync,
  mkdtempSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
  appendFileSync,
  closeSync,
  existsSync,
  openSync,
  readdirSync,
  fstatSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { COPIES_AT_ONCE, DeferredChange, DeferredReads, HELD_COPY_MIN, readDeferred } from '../../src/snapshot/deferred-read.js';
import { Spool } from '../../src/snapshot/spool.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const rootOf = (path: string) => ({ path, dev: lstatSync(path, { bigint: true }).dev });

/** A directory with `files`, their lstat recorded as a walk would (every file settled), and a spool of zeros to read them into. */
async function setUp(files: Record<string, Buffer>, before?: (root: string) => void) {
  const root = mkdtempSync(join(tmpdir(), 'csx-deferred-'));
  dirs.push(root);
  for (const [rel, data] of Object.entries(files)) {
    mkdirSync(join(root, rel, '..'), { recursive: true });
    writeFileSync(join(root, rel), data);
  }
  before?.(root);
  const deferred = new DeferredReads(BigInt(Date.now() + 60_000) * 1_000_000n, rootOf(root));
  let at = 0;
  for (const rel of Object.keys(files)) {
    const st = lstatSync(join(root, rel), { bigint: true });
    expect(deferred.takes(st, rel)).toBe(true);
    deferred.add(rel, at, st);
    at += files[rel].length + 100;
  }
  const spool = Spool.for({ RUNNER_TEMP: root });
  await spool.ready();
  const spooled = await spool.take(Readable.from([Buffer.alloc(at)]));
  const run = async (during?: () => void, signal?: AbortSignal) => {
    const patch = spool.patch(spooled);
    if (during) {
      // Called as the first piece is written: a change while the file is read.
      const write = patch.write.bind(patch);
      patch.write = (at, data) => (during(), write(at, data));
    }
    try {
      await readDeferred(root, deferred, patch, signal);
    } finally {
      patch.close();
    }
  };
  const read = async () => {
    const parts: Buffer[] = [];
    for await (const part of spool.read(spooled)) parts.push(part as Buffer);
    return Buffer.concat(parts);
  };
  return { root, deferred, run, read, close: () => spool.close() };
}

describe('files read once the container is back (deferred reads)', () => {
  it('writes each file at its offset in the spooled archive, and nothing else', async () => {
    const a = randomBytes(3000);
    const b = randomBytes((1 << 20) * 2 + 13);
    const s = await setUp({ a, 'dir/b': b });
    await s.run();
    const got = await s.read();
    expect(got.subarray(0, 3000).equals(a)).toBe(true);
    expect(got.subarray(3000, 3100).equals(Buffer.alloc(100))).toBe(true);
    expect(got.subarray(3100, 3100 + b.length).equals(b)).toBe(true);
    expect(s.deferred.bytes).toBe(a.length + b.length);
    await s.close();
  });

  it('leaves to be read while held an empty file, one changed at or after the cutoff, one on another device, one whose path passes PATH_MAX', () => {
    const root = mkdtempSync(join(tmpdir(), 'csx-deferred-'));
    dirs.push(root);
    writeFileSync(join(root, 'empty'), '');
    writeFileSync(join(root, 'new'), 'x');
    const st = lstatSync(join(root, 'new'), { bigint: true });
    const later = BigInt(Date.now() + 60_000) * 1_000_000n;
    expect(new DeferredReads(later, rootOf(root)).takes(lstatSync(join(root, 'empty'), { bigint: true }), 'empty')).toBe(false);
    expect(new DeferredReads(st.ctimeNs, rootOf(root)).takes(st, 'new')).toBe(false);
    expect(new DeferredReads(st.ctimeNs + 1n, rootOf(root)).takes(st, 'new')).toBe(true);
    // A file system mounted below the top (a tmpfs, say): its own device.
    expect(new DeferredReads(later, { path: root, dev: st.dev + 1n }).takes(st, 'new')).toBe(false);
    const deep = `${'d/'.repeat(2040)}new`;
    expect(Buffer.byteLength(root) + 1 + deep.length).toBeGreaterThanOrEqual(4096);
    expect(new DeferredReads(later, rootOf(root)).takes(st, deep)).toBe(false);
  });

  it('never covers two clear texts with one key stream in an encrypting spool: a block written again takes a key stream of its own', async () => {
    const root = mkdtempSync(join(tmpdir(), 'csx-deferred-'));
    dirs.push(root);
    const spool = Spool.for({ RUNNER_TEMP: root }, true);
    await spool.ready();
    // A "header" of non-zero bytes, then zeros where a file's data goes, in one 4096-byte block; a second block all zero.
    const header = Buffer.alloc(512, 0x41);
    const spooled = await spool.take(Readable.from([Buffer.concat([header, Buffer.alloc(8192 - 512)])]));
    const before = readFileSync(spooled.path);
    const secret = Buffer.from('-----BEGIN PRIVATE KEY----- not to be seen in the spool -----END PRIVATE KEY-----');
    const patch = spool.patch(spooled);
    patch.write(512, secret);
    patch.write(4096 + 100, secret);
    patch.write(600, secret);
    patch.close();
    const after = readFileSync(spooled.path);
    const xor = Buffer.alloc(after.length);
    for (let i = 0; i < xor.length; i++) xor[i] = before[i] ^ after[i];
    expect(xor.includes(secret)).toBe(false);
    expect(after.includes(secret)).toBe(false);
    const parts: Buffer[] = [];
    for await (const part of spool.read(spooled)) parts.push(part as Buffer);
    const clear = Buffer.concat(parts);
    expect(clear.subarray(0, 512).equals(header)).toBe(true);
    expect(clear.subarray(512, 512 + secret.length).equals(secret)).toBe(true);
    expect(clear.subarray(512 + secret.length, 600).equals(Buffer.alloc(600 - 512 - secret.length))).toBe(true);
    expect(clear.subarray(600, 600 + secret.length).equals(secret)).toBe(true);
    expect(clear.subarray(4196, 4196 + secret.length).equals(secret)).toBe(true);
    await spool.close();
  });

  const changes: Array<[string, (root: string) => void, RegExp]> = [
    ['appended to', (root) => appendFileSync(join(root, 'dir/f'), 'more'), /its size/],
    [
      'rewritten in place with its size and mtime kept (only its ctime tells)',
      (root) => {
        const st = statSync(join(root, 'dir/f'));
        writeFileSync(join(root, 'dir/f'), randomBytes(st.size));
        utimesSync(join(root, 'dir/f'), st.atime, st.mtime);
      },
      /its times/,
    ],
    [
      'replaced by another file of the same size and mtime (renamed over it)',
      (root) => {
        const st = statSync(join(root, 'dir/f'));
        writeFileSync(join(root, 'dir/other'), randomBytes(st.size));
        utimesSync(join(root, 'dir/other'), st.atime, st.mtime);
        renameSync(join(root, 'dir/other'), join(root, 'dir/f'));
      },
      /another file/,
    ],
    ['removed', (root) => rmSync(join(root, 'dir/f')), /not found: ENOENT/],
    [
      'replaced by a fifo (never opened for reading: no wait on a writer)',
      (root) => {
        rmSync(join(root, 'dir/f'));
        execFileSync('mkfifo', [join(root, 'dir/f')]);
      },
      /another file/,
    ],
    [
      'replaced by a symlink to its own inode (a last symlink is named, not followed)',
      (root) => {
        renameSync(join(root, 'dir/f'), join(root, 'dir/moved'));
        symlinkSync('moved', join(root, 'dir/f'));
      },
      /another file/,
    ],
  ];

  it.each(changes)('fails with DeferredChange for a file %s between the hold and its read', async (_what, change, why) => {
    const s = await setUp({ 'dir/f': randomBytes(5000), g: randomBytes(10) });
    change(s.root);
    const failed = await s.run().then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(failed).toBeInstanceOf(DeferredChange);
    expect((failed as DeferredChange).rel).toBe('dir/f');
    expect((failed as Error).message).toMatch(why);
    await s.close();
  });

  it('fails with DeferredChange for a file written while it is read (checked again after its read)', async () => {
    const s = await setUp({ 'dir/f': randomBytes(5000) });
    const failed = await s
      .run(() => writeFileSync(join(s.root, 'dir/f'), randomBytes(5000)))
      .then(
        () => undefined,
        (err: unknown) => err,
      );
    expect(failed).toBeInstanceOf(DeferredChange);
    expect((failed as Error).message).toMatch(/its times/);
    await s.close();
  });

  it('stops within a large file once the run is cancelled: at its next MiB, with the reason', async () => {
    const s = await setUp({ big: randomBytes(8 << 20) });
    const controller = new AbortController();
    let pieces = 0;
    const failed = await s
      .run(() => {
        // Cancelled as the first MiB is written: the timer fires at the read's next turn of the event loop.
        if (pieces++ === 0) setImmediate(() => controller.abort(new Error('cancelled by the test')));
      }, controller.signal)
      .then(
        () => undefined,
        (err: unknown) => err,
      );
    expect((failed as Error).message).toBe('cancelled by the test');
    expect(pieces).toBeLessThanOrEqual(2);
    await s.close();
  });

  it('reads the same inode through a directory swapped for a symlink to another holding it: the bytes are that inode’s', async () => {
    const f = randomBytes(5000);
    const s = await setUp({ 'dir/f': f }, (root) => {
      mkdirSync(join(root, 'elsewhere'));
      linkSync(join(root, 'dir/f'), join(root, 'elsewhere/f'));
    });
    renameSync(join(s.root, 'dir'), join(s.root, 'old'));
    symlinkSync('elsewhere', join(s.root, 'dir'));
    await s.run();
    expect((await s.read()).subarray(0, 5000).equals(f)).toBe(true);
    await s.close();
  });

  it('a file not settled is copied while held: the copy is read in its place once back (the file changed since or not), then removed', async () => {
    const root = mkdtempSync(join(tmpdir(), 'csx-deferred-'));
    dirs.push(root);
    const data = randomBytes(HELD_COPY_MIN + 7);
    writeFileSync(join(root, 'db'), data);
    writeFileSync(join(root, 'small'), randomBytes(HELD_COPY_MIN - 1));
    const spool = Spool.for({ RUNNER_TEMP: root });
    await spool.ready();
    // Nothing settled (the cutoff before every ctime): only copies.
    const deferred = new DeferredReads(0n, rootOf(root), spool.dir);
    const st = lstatSync(join(root, 'db'), { bigint: true });
    expect([deferred.takes(st, 'db'), deferred.copies(st), deferred.copies(lstatSync(join(root, 'small'), { bigint: true }))]).toEqual([false, true, false]);
    const fd = openSync(join(root, 'db'), 'r');
    const copy = await deferred.copy(fd, st);
    closeSync(fd);
    expect(copy?.path.startsWith(`${spool.dir}/held-`)).toBe(true);
    // Readable by this user alone, whatever the file's mode.
    expect(statSync(copy!.path).mode & 0o7777).toBe(0o600);
    deferred.addCopy('db', 100, copy!);
    expect([deferred.copied, deferred.copiedBytes, deferred.bytes]).toEqual([1, data.length, data.length]);
    // The file written again once the container is back: the copy holds what the hold saw.
    writeFileSync(join(root, 'db'), randomBytes(data.length));
    const spooled = await spool.take(Readable.from([Buffer.alloc(100 + data.length)]));
    const patch = spool.patch(spooled);
    try {
      await readDeferred(root, deferred, patch);
    } finally {
      patch.close();
    }
    const parts: Buffer[] = [];
    for await (const part of spool.read(spooled)) parts.push(part as Buffer);
    expect(Buffer.concat(parts).subarray(100).equals(data)).toBe(true);
    expect(existsSync(copy!.path)).toBe(false);
    await spool.close();
  });

  it('makes no held copy without a held directory (an encrypting spool), nor one that would leave the disk short', async () => {
    const root = mkdtempSync(join(tmpdir(), 'csx-deferred-'));
    dirs.push(root);
    writeFileSync(join(root, 'db'), randomBytes(HELD_COPY_MIN));
    const st = lstatSync(join(root, 'db'), { bigint: true });
    expect(new DeferredReads(0n, rootOf(root)).copies(st)).toBe(false);
    // A size past the free space (the file's lstat said so): no copy, nothing left behind.
    const held = new DeferredReads(0n, rootOf(root), root);
    const fd = openSync(join(root, 'db'), 'r');
    expect(await held.copy(fd, { ...st, size: 1n << 60n } as typeof st)).toBeUndefined();
    closeSync(fd);
    expect(readdirSync(root)).toEqual(['db']);
  });

  /** A directory holding `db` (`bytes` long) opened as the walk would, its lstat, and DeferredReads that copy into that directory. */
  const heldFile = (bytes: number) => {
    const root = mkdtempSync(join(tmpdir(), 'csx-deferred-'));
    dirs.push(root);
    writeFileSync(join(root, 'db'), randomBytes(bytes));
    const st = lstatSync(join(root, 'db'), { bigint: true });
    return { root, st, held: new DeferredReads(0n, rootOf(root), root), fd: openSync(join(root, 'db'), 'r') };
  };

  it('a file shorter when copied than the walk saw it (truncated by a process not held): no copy, nothing left, read while held', async () => {
    const { root, st, held, fd } = heldFile(2 * HELD_COPY_MIN);
    writeFileSync(join(root, 'db'), randomBytes(HELD_COPY_MIN));
    expect(await held.copy(fd, st)).toBeUndefined();
    closeSync(fd);
    expect(readdirSync(root)).toEqual(['db']);
  });

  it('copies beside the walk: recorded once made, its descriptor closed; one not made is named by copiesDone, nothing left', async () => {
    const { root, st, held, fd } = heldFile(HELD_COPY_MIN + 5);
    writeFileSync(join(root, 'other'), randomBytes(2 * HELD_COPY_MIN));
    const other = lstatSync(join(root, 'other'), { bigint: true });
    const otherFd = openSync(join(root, 'other'), 'r');
    expect([held.roomForCopy(st), held.roomForCopy({ ...st, size: 1n << 60n } as typeof st)]).toEqual([true, false]);
    held.copyBeside('db', 512, fd, st);
    expect(held.reads).toEqual([]);
    // Made before the other fails (a copy not made stops those still under way: below).
    expect(await held.copiesDone()).toBeUndefined();
    // Truncated by a process not held, after its lstat: its copy is not made.
    writeFileSync(join(root, 'other'), randomBytes(HELD_COPY_MIN));
    held.copyBeside('other', 4096, otherFd, other);
    expect(await held.copiesDone()).toBe('other');
    expect(held.reads.map((r) => [r.rel, r.at, r.size, r.copy?.startsWith(`${root}/held-`)])).toEqual([['db', 512, st.size, true]]);
    // Both descriptors closed by the copies' end.
    for (const d of [fd, otherFd]) expect(() => fstatSync(d)).toThrow(/EBADF/);
    expect(readdirSync(root).filter((n) => n.startsWith('held-'))).toHaveLength(1);
    held.discard();
    expect(readdirSync(root).sort()).toEqual(['db', 'other']);
  });

  it('has at most COPIES_AT_ONCE copies under way: copySlot waits for one to end', async () => {
    const root = mkdtempSync(join(tmpdir(), 'csx-deferred-'));
    dirs.push(root);
    const held = new DeferredReads(0n, rootOf(root), root);
    for (let i = 0; i < COPIES_AT_ONCE; i++) {
      writeFileSync(join(root, `db${i}`), randomBytes(HELD_COPY_MIN));
      held.copyBeside(`db${i}`, i * HELD_COPY_MIN, openSync(join(root, `db${i}`), 'r'), lstatSync(join(root, `db${i}`), { bigint: true }));
    }
    let free = false;
    const slot = held.copySlot().then(() => (free = true));
    await Promise.resolve();
    expect(free).toBe(false);
    await slot;
    expect(await held.copiesDone()).toBeUndefined();
    expect(held.reads.map((r) => r.rel).sort()).toEqual(Array.from({ length: COPIES_AT_ONCE }, (_v, i) => `db${i}`));
    // Free at once when none is under way.
    await held.copySlot();
    held.discard();
  });

  it('a copy beside the walk that ends after its reads were discarded (the walk failed) removes itself', async () => {
    const { root, st, held, fd } = heldFile(HELD_COPY_MIN);
    held.copyBeside('db', 0, fd, st);
    held.discard();
    expect(await held.copiesDone()).toBeUndefined();
    expect(held.reads).toEqual([]);
    expect(readdirSync(root)).toEqual(['db']);
  });

  /**
   * Runs `fn` with a `cp` first on PATH that sleeps (its command line tagged, to be looked for),
   * having written a line to `started` first; every such sleep is killed after.
   */
  async function withStuckCp(fn: (started: () => number, tag: string) => Promise<void>): Promise<void> {
    const bin = mkdtempSync(join(tmpdir(), 'csx-stuck-cp-'));
    dirs.push(bin);
    const marker = join(bin, 'started');
    const tag = `600.${randomBytes(3).readUIntBE(0, 3)}`;
    writeFileSync(join(bin, 'cp'), `#!/bin/sh\necho "$*" >> '${marker}'\nexec sleep ${tag}\n`, { mode: 0o755 });
    const path = process.env.PATH;
    process.env.PATH = `${bin}:${path}`;
    try {
      await fn(() => (existsSync(marker) ? readFileSync(marker, 'utf8').split('\n').filter(Boolean).length : 0), tag);
    } finally {
      process.env.PATH = path;
      spawnSync('pkill', ['-f', `sleep ${tag}`]);
    }
  }

  const until = async (ok: () => boolean) => {
    while (!ok()) await new Promise((r) => setTimeout(r, 20));
  };

  it('a copy not made stops the copies still under way (their cp killed): copiesDone names it without waiting for them', async () => {
    const { root, st, held, fd } = heldFile(HELD_COPY_MIN);
    await withStuckCp(async (started, tag) => {
      held.copyBeside('db', 0, fd, st);
      await until(() => started() === 1);
      // Not made (no room for it, by its lstat): the volume is read again, so the copy under way is of no use.
      held.copyBeside('huge', 4096, openSync(join(root, 'db'), 'r'), { ...st, size: 1n << 60n } as typeof st);
      expect(await held.copiesDone()).toBe('huge');
      expect(spawnSync('pgrep', ['-f', `sleep ${tag}`]).status).toBe(1);
    });
    expect(held.reads).toEqual([]);
    expect(() => fstatSync(fd)).toThrow(/EBADF/);
    expect(readdirSync(root)).toEqual(['db']);
  });

  it('abandon (the walk failed) stops the copies under way and removes those made, without waiting for the rest', async () => {
    const { root, st, held, fd } = heldFile(HELD_COPY_MIN);
    held.copyBeside('db', 0, fd, st);
    expect(await held.copiesDone()).toBeUndefined();
    expect(readdirSync(root).filter((n) => n.startsWith('held-'))).toHaveLength(1);
    await withStuckCp(async (started, tag) => {
      held.copyBeside('again', HELD_COPY_MIN, openSync(join(root, 'db'), 'r'), st);
      await until(() => started() === 1);
      await held.abandon();
      expect(spawnSync('pgrep', ['-f', `sleep ${tag}`]).status).toBe(1);
    });
    expect(readdirSync(root)).toEqual(['db']);
  });

  it('a copy under way stops when the run is cancelled: the reason thrown, nothing left', async () => {
    const { root, st, held, fd } = heldFile(2 * HELD_COPY_MIN);
    const cancel = new AbortController();
    cancel.abort(new Error('cancelled'));
    await expect(held.copy(fd, st, cancel.signal)).rejects.toThrow('cancelled');
    closeSync(fd);
    expect(readdirSync(root)).toEqual(['db']);
  });
});
