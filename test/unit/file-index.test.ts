import { describe, expect, it } from 'vitest';
import type { BigIntStats } from 'node:fs';
import { buildFileIndex, FileWalk, racyMarginNs, untrustedFs, type FileIndex } from '../../src/snapshot/file-index.js';
import { settleBelowWriteback } from '../../src/snapshot/backup.js';
import { parseSettleSeconds } from '../../src/core/backup-input.js';

const st = (o: { ino: bigint; size: bigint; mtimeNs: bigint; ctimeNs: bigint }) => o as unknown as BigIntStats;
const S = 1_000_000_000n;

describe('file index', () => {
  const earlier: FileIndex = { files: { a: { ino: '7', size: 100, mtimeNs: String(10n * S), ctimeNs: String(11n * S), first: 2, count: 1 } } };

  it('leaves a file unread only when its inode, size, mtime and ctime are those indexed', () => {
    const walk = new FileWalk(64, 100n * S, earlier);
    const same = { ino: 7n, size: 100n, mtimeNs: 10n * S, ctimeNs: 11n * S };
    expect(walk.file(1, 'a', st(same))).toBe(true);
    expect(walk.file(2, 'a', st({ ...same, ctimeNs: 11n * S + 1n }))).toBe(false);
    expect(walk.file(3, 'a', st({ ...same, mtimeNs: 10n * S + 1n }))).toBe(false);
    expect(walk.file(4, 'a', st({ ...same, ino: 8n }))).toBe(false);
    expect(walk.file(5, 'a', st({ ...same, size: 101n }))).toBe(false);
    expect(walk.file(6, 'b', st(same))).toBe(false);
    expect([...walk.unread.keys()]).toEqual([1]);
    expect(walk.unreadBytes).toBe(100);
    // The changed ones at the same path have the earlier entry as the chunker's hint.
    expect([...walk.changed.keys()]).toEqual([2, 3, 4, 5]);
  });

  it('never leaves unread a file whose ctime is not before the cutoff: it is indexed for its chunks alone (racy, no inode), which no later walk takes as unchanged', () => {
    const walk = new FileWalk(64, 11n * S, earlier);
    const same = { ino: 7n, size: 100n, mtimeNs: 10n * S, ctimeNs: 11n * S };
    expect(walk.file(1, 'a', st(same))).toBe(false);
    expect(walk.unread.size).toBe(0);
    // Its earlier entry is the chunker's hint for it.
    expect(walk.changed.get(1)).toEqual(earlier.files.a);
    const index = buildFileIndex(walk, new Map([[1, { first: 0, count: 1 }]]));
    expect(index.files).toEqual({ a: { ino: '', size: 100, mtimeNs: String(10n * S), ctimeNs: String(11n * S), first: 0, count: 1, racy: true } });
    // The next walk, the file settled and its times the same: still read (what the racy entry's times say is not trusted).
    const next = new FileWalk(64, 100n * S, index);
    expect(next.file(1, 'a', st(same))).toBe(false);
    expect(next.unread.size).toBe(0);
    expect(next.changed.get(1)).toEqual(index.files.a);
  });

  it('indexes each file seen with the run of chunks its data got; none without a run', () => {
    const walk = new FileWalk(64, 100n * S);
    walk.file(1, 'x', st({ ino: 1n, size: 5000n, mtimeNs: 2n, ctimeNs: 3n }));
    walk.file(2, 'y', st({ ino: 2n, size: 5000n, mtimeNs: 2n, ctimeNs: 3n }));
    const index = buildFileIndex(walk, new Map([[1, { first: 4, count: 2 }]]));
    expect(index.files).toEqual({ x: { ino: '1', size: 5000, mtimeNs: '2', ctimeNs: '3', first: 4, count: 2 } });
  });

  it("waits the kernel's dirty expiry and writeback interval and 5 s more before a change counts as settled", () => {
    const proc: Record<string, string> = { '/proc/sys/vm/dirty_expire_centisecs': '3000\n', '/proc/sys/vm/dirty_writeback_centisecs': '500\n' };
    expect(racyMarginNs((p) => proc[p])).toBe(40n * S);
    expect(racyMarginNs(() => 'x')).toBe(40n * S);
    expect(racyMarginNs((p) => (p.endsWith('expire_centisecs') ? '6000' : '1000'))).toBe(75n * S);
    // Periodic writeback off: no wait is enough, and the walk leaves nothing unread.
    expect(racyMarginNs((p) => (p.endsWith('expire_centisecs') ? '3000' : '0'))).toBeUndefined();
    const off = new FileWalk(64, undefined, earlier);
    expect(off.file(1, 'a', st({ ino: 7n, size: 100n, mtimeNs: 10n * S, ctimeNs: 11n * S }))).toBe(false);
    expect(off.off).toMatch(/dirty_writeback_centisecs is 0/);
  });

  it("warns when CONTAINER_SNAPSHOT_SETTLE_SECONDS is below the kernel's writeback timing, not at or above it", () => {
    expect(settleBelowWriteback(2, () => 40n * S)).toMatch(
      /^CONTAINER_SNAPSHOT_SETTLE_SECONDS=2 is below this kernel's writeback timing \(40 s: .*\): a file a program writes through a shared memory mapping may be taken from the set before although it changed$/,
    );
    expect(settleBelowWriteback(40, () => 40n * S)).toBeUndefined();
    expect(settleBelowWriteback(90, () => 40n * S)).toBeUndefined();
    expect(settleBelowWriteback(undefined, () => 40n * S)).toBeUndefined();
    // Periodic writeback off: no margin is enough, and nothing is left unread anyway (FileWalk.off).
    expect(settleBelowWriteback(2, () => undefined)).toBeUndefined();
  });

  it('trusts the ctime of ext4, XFS and Btrfs only (not tmpfs, NFS, CIFS, FUSE, overlay)', () => {
    for (const t of [0xef53, 0x58465342, 0x9123683e]) expect(untrustedFs(t)).toBeUndefined();
    for (const t of [0x01021994, 0x6969, 0xff534d42, 0x65735546, 0x794c7630]) expect(untrustedFs(t)).toMatch(/is not ext4, XFS or Btrfs/);
  });

  it('keeps an own entry named like an Object.prototype property, and finds no inherited one', () => {
    const walk = new FileWalk(64, 100n * S, { files: {} });
    expect(walk.file(1, 'constructor', st({ ino: 1n, size: 100n, mtimeNs: 1n, ctimeNs: 1n }))).toBe(false);
    walk.file(2, '__proto__', st({ ino: 2n, size: 100n, mtimeNs: 1n, ctimeNs: 1n }));
    const index = buildFileIndex(walk, new Map([[2, { first: 0, count: 1 }]]));
    const again = JSON.parse(JSON.stringify(index)) as FileIndex;
    expect(Object.hasOwn(again.files, '__proto__')).toBe(true);
    expect(new FileWalk(64, 100n * S, again).file(3, '__proto__', st({ ino: 2n, size: 100n, mtimeNs: 1n, ctimeNs: 1n }))).toBe(true);
  });

  it('reads CONTAINER_SNAPSHOT_SETTLE_SECONDS as whole seconds, in one line otherwise', () => {
    expect(parseSettleSeconds(undefined)).toBeUndefined();
    expect(parseSettleSeconds(' 2 ')).toBe(2);
    expect(parseSettleSeconds('120')).toBe(120);
    for (const bad of ['0', '1', '-1', '1.5', 'ten', '90000']) {
      expect(() => parseSettleSeconds(bad)).toThrow(
        `Invalid CONTAINER_SNAPSHOT_SETTLE_SECONDS '${bad}'. Expected a whole number of seconds from 2 to 86400, like 40.`,
      );
    }
  });
});
