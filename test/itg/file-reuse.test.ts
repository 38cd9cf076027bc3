import { afterAll, describe, expect, inject, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  truncateSync,
  utimesSync,
  writeFileSync,
  writeSync,
  appendFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { backup, restore, verify } from '../../src/commands.js';
import { parseBackupInputs, parseRestoreInputs } from '../../src/core/inputs.js';
import { parseDestination } from '../../src/core/destination-input.js';
import { runEndsAfter, RUN_MIN } from '../../src/snapshot/file-runs.js';
import { paddedSize } from '../../src/util/tar-header.js';
import { CHUNK_LIST_VOLUME_MEDIA_TYPE, isChunked, type SnapshotSet } from '../../src/snapshot/manifest.js';
import { Resources, docker, mountpointOf, quietLog, runContainer, treeDigest } from '../support/fixtures.js';
import { MmapWriter } from '../support/mmap-writer.js';

const inputs = (values: Record<string, string>) => (name: string) => values[name] ?? '';
const MiB = 1 << 20;

/** Rewrites `path` in place with other bytes of the same size, its mtime put back: only its ctime (and inode data) tell it changed. */
function rewriteKeepingTimes(path: string): void {
  const st = statSync(path);
  writeFileSync(path, randomBytes(st.size));
  utimesSync(path, st.atime, st.mtime);
}

describe("unchanged files of a volume left unread (the set before's file index)", () => {
  const res = new Resources(inject('runPrefix'), 'reuse');
  const fixture = inject('fixtureImage');
  afterAll(() => res.cleanup());

  it('takes unchanged large files from the set before, reads every changed one, and each set restores to its own point in time', async () => {
    const name = res.name('app');
    const volume = res.volume('data');
    const m = await mountpointOf(volume);
    writeFileSync(join(m, 'big1'), randomBytes(MiB));
    writeFileSync(join(m, 'big2'), randomBytes(300 << 10));
    writeFileSync(join(m, 'still'), randomBytes(2 * MiB + 7));
    writeFileSync(join(m, 'small.txt'), 'small\n');
    mkdirSync(join(m, 'dir'));
    writeFileSync(join(m, 'dir/keep'), randomBytes(600 << 10));
    const fd = openSync(join(m, 'sparse'), 'w');
    writeSync(fd, randomBytes(4096), 0, 4096, 3 * MiB);
    closeSync(fd);
    truncateSync(join(m, 'sparse'), 8 * MiB);
    const c = await runContainer({ name, Image: fixture, Cmd: ['sleep', '100000'], HostConfig: { Binds: [`${volume}:/data`] } }, 'running');
    const store = join(res.tempDir(), 'store');
    // Files count as settled 2 s after their last change (the least allowed): each backup waits that long after the changes before it.
    const env = { ...process.env, DOCKER_CONFIG: '/nonexistent', CONTAINER_SNAPSHOT_SETTLE_SECONDS: '2' };
    const take = async (tag: string) => {
      await new Promise((resolve) => setTimeout(resolve, 2500));
      const log = { ...quietLog, lines: [] as string[] };
      const b = await backup(parseBackupInputs(inputs({ containers: name, destination: `dir:${store}`, tag }), undefined, env), { log, env });
      expect(b.failed, JSON.stringify(b.containers)).toBe(0);
      res.image(`container-snapshot/${name}:${tag}`);
      const unread = log.lines.map((l) => /: (\d+) file\(s\) unchanged since the set before, not read/.exec(l)?.[1]).find(Boolean);
      return { unread: Number(unread ?? 0), tree: await treeDigest(c.id, '/data'), lines: log.lines };
    };

    const s1 = await take('s1');
    expect(s1.lines.filter((l) => /read on this host from/.test(l))).toHaveLength(1);
    expect(s1.unread).toBe(0);

    // Same size and mtime, other bytes; a file deleted; a directory renamed; a new file.
    rewriteKeepingTimes(join(m, 'big1'));
    rmSync(join(m, 'big2'));
    renameSync(join(m, 'dir'), join(m, 'moved'));
    writeFileSync(join(m, 'big4'), randomBytes(MiB + 1));
    const s2 = await take('s2');
    // still and sparse: unchanged; big1 changed, moved/keep has a new path, big4 is new.
    expect(s2.unread).toBe(2);
    expect(s2.tree).not.toEqual(s1.tree);

    // Grown; touched with the same bytes; replaced by a new file of the same name, size and mtime.
    appendFileSync(join(m, 'still'), 'more\n');
    const t = statSync(join(m, 'sparse'));
    utimesSync(join(m, 'sparse'), t.atime, new Date(t.mtimeMs + 5000));
    const keep = readFileSync(join(m, 'moved/keep'));
    const k = statSync(join(m, 'moved/keep'));
    rmSync(join(m, 'moved/keep'));
    writeFileSync(join(m, 'moved/keep'), Buffer.concat([randomBytes(100), keep.subarray(100)]));
    utimesSync(join(m, 'moved/keep'), k.atime, k.mtime);
    const s3 = await take('s3');
    // big1 and big4 only.
    expect(s3.unread).toBe(2);

    const s4 = await take('s4');
    expect(s4.unread).toBe(5);
    expect(s4.tree).toEqual(s3.tree);

    const set = (tag: string) => {
      const { digest } = JSON.parse(readFileSync(join(store, 'sets', `${tag}.json`), 'utf8')) as { digest: string };
      return JSON.parse(readFileSync(join(store, 'blobs', 'sha256', digest.slice(7)), 'utf8')) as SnapshotSet;
    };
    for (const tag of ['s1', 's2', 's3', 's4']) {
      const blob = set(tag).containers[0].volumes[0].blob;
      expect(blob.mediaType).toBe(CHUNK_LIST_VOLUME_MEDIA_TYPE);
      expect(isChunked(blob) && blob.files).toBeTruthy();
    }
    // s4 stored no chunk of its volume again: its chunk list is s3's.
    const chunks = (tag: string) => {
      const blob = set(tag).containers[0].volumes[0].blob;
      return isChunked(blob) ? blob.chunks.map((x) => x.digest) : [];
    };
    expect(chunks('s4')).toEqual(chunks('s3'));

    for (const [tag, taken] of [
      ['s1', s1],
      ['s2', s2],
      ['s3', s3],
      ['s4', s4],
    ] as const) {
      await verify(parseDestination(`dir:${store}`), tag, {}, { log: quietLog, env });
      const copy = res.name(`copy-${tag}`);
      const rename = `${name}=${copy},${volume}=${res.volume(`copyvol-${tag}`)}`;
      const r = await restore(parseRestoreInputs(inputs({ source: `dir:${store}`, snapshot: tag, rename, start: 'never' })), { log: quietLog, env });
      expect(r.failed, JSON.stringify(r.containers)).toBe(0);
      expect(await treeDigest(copy, '/data'), tag).toEqual(taken.tree);
      await docker.getContainer(copy).remove({ force: true });
    }
  });

  it('takes unchanged runs of small files from the set before, reads again each run a file of which changed, and each set restores to its own point in time', async () => {
    const name = res.name('runs');
    const volume = res.volume('runsvol');
    const m = await mountpointOf(volume);
    // a/ and b/ hold runs (64 KiB or more of small files in a row), c/ too few bytes for one; d/
    // files of 700 bytes, 32 or so of which are far less than 64 KiB: its runs end at a picked name
    // only once they hold 64 KiB (file-runs.ts runEndsAfter), else none would be indexed.
    const sizeOf = (dir: string, i: number) => (dir === 'd' ? 700 : 3000 + ((i * 7919) % 5000));
    for (const [dir, n] of [
      ['a', 300],
      ['b', 40],
      ['c', 3],
      ['d', 400],
    ] as const) {
      mkdirSync(join(m, dir));
      for (let i = 0; i < n; i++) {
        const f = join(m, dir, `f${String(i).padStart(3, '0')}`);
        writeFileSync(f, randomBytes(sizeOf(dir, i)));
        // Whole seconds: a rewrite that puts the mtime back keeps it to the nanosecond (only the ctime then tells).
        utimesSync(f, 1_700_000_000 + i, 1_700_000_000 + i);
      }
    }
    writeFileSync(join(m, 'a', 'large'), randomBytes(MiB));
    // The runs the walk cuts of a directory's files f000… (file-runs.ts runEndsAfter), and the files in runs long enough to be indexed.
    const runsOf = (dir: string, n: number): { files: string[]; bytes: number }[] => {
      const runs = [{ files: [] as string[], bytes: 0 }];
      for (let i = 0; i < n; i++) {
        const f = `f${String(i).padStart(3, '0')}`;
        const run = runs[runs.length - 1];
        run.files.push(f);
        run.bytes += paddedSize(sizeOf(dir, i));
        if (runEndsAfter(Buffer.from(f), run.files.length, run.bytes)) runs.push({ files: [], bytes: 0 });
      }
      return runs.filter((r) => r.files.length > 0);
    };
    const indexed = (
      [
        ['a', 300],
        ['b', 40],
        ['c', 3],
        ['d', 400],
      ] as const
    ).reduce((sum, [dir, n]) => sum + runsOf(dir, n).reduce((k, r) => k + (r.bytes >= RUN_MIN ? r.files.length : 0), 0), 0);
    const runsOfA = runsOf('a', 300).map((r) => r.files);
    // A file in the middle of a/'s longest run: the one rewritten below.
    const longest = runsOfA.reduce((x, y) => (y.length > x.length ? y : x));
    expect(longest.length).toBeGreaterThan(20);
    const target = longest[Math.floor(longest.length / 2)];
    // And one of another run, renamed below.
    const other = runsOfA.find((r) => r !== longest && r.length > 5)!;
    const renamed = other[Math.floor(other.length / 2)];
    const c = await runContainer({ name, Image: fixture, Cmd: ['sleep', '100000'], HostConfig: { Binds: [`${volume}:/data`] } }, 'running');
    const store = join(res.tempDir(), 'store');
    const take = async (tag: string, settle = '2') => {
      const env = { ...process.env, DOCKER_CONFIG: '/nonexistent', CONTAINER_SNAPSHOT_SETTLE_SECONDS: settle };
      await new Promise((resolve) => setTimeout(resolve, 2500));
      const log = { ...quietLog, lines: [] as string[] };
      const b = await backup(parseBackupInputs(inputs({ containers: name, destination: `dir:${store}`, tag }), undefined, env), { log, env });
      expect(b.failed, JSON.stringify(b.containers)).toBe(0);
      res.image(`container-snapshot/${name}:${tag}`);
      const runs = log.lines.map((l) => /: (\d+) small file\(s\) in (\d+) run\(s\) unchanged since the set before, not read/.exec(l)).find(Boolean);
      return {
        files: Number(runs?.[1] ?? 0),
        runs: Number(runs?.[2] ?? 0),
        tree: await treeDigest(c.id, '/data'),
        lines: log.lines,
        written: b.containers[0].blobs.written,
      };
    };
    // First with no file settled yet (a settle time of an hour): runs are cut all the same, so that
    // the next backup, once they are settled, cuts the same chunks and stores nothing again.
    const s0 = await take('s0', '3600');
    expect(s0.files).toBe(0);
    const s1 = await take('s1');
    expect(s1.files).toBe(0);
    expect(s1.written, s1.lines.join('\n')).toBe(0);
    expect(s1.tree).toEqual(s0.tree);

    // Nothing changed: every run is taken unread, and nothing of the volume is stored again.
    const s2 = await take('s2');
    // Of 743 small files, those in runs of 64 KiB or more: nearly all of a/, b/ and d/ (each
    // directory's last run may be short), none of c/.
    expect(indexed).toBeGreaterThan(500);
    expect(s2.files).toBe(indexed);
    expect(s2.tree).toEqual(s1.tree);
    expect(s2.written, s2.lines.join('\n')).toBe(0);

    // One file of a/ rewritten (same size and mtime to the nanosecond: only its ctime tells), one of b/ removed, one renamed within a/, one added to c/: their runs are read again.
    rewriteKeepingTimes(join(m, 'a', target));
    rmSync(join(m, 'b', 'f020'));
    renameSync(join(m, 'a', renamed), join(m, 'a', `${renamed}-renamed`));
    writeFileSync(join(m, 'c', 'f100'), randomBytes(5000));
    const s3 = await take('s3');
    expect(s3.files).toBeGreaterThan(0);
    expect(s3.files).toBeLessThan(s2.files);
    expect(s3.tree).not.toEqual(s2.tree);

    // A mode changed: only its ctime tells; its run is read again.
    chmodSync(join(m, 'b', 'f005'), 0o600);
    const s4 = await take('s4');
    expect(s4.files).toBeGreaterThan(0);
    expect(s4.files).toBeLessThan(s2.files);
    expect(s4.tree).not.toEqual(s3.tree);

    const s5 = await take('s5');
    expect(s5.files).toBeGreaterThan(s4.files);
    expect(s5.tree).toEqual(s4.tree);

    const env = { ...process.env, DOCKER_CONFIG: '/nonexistent' };
    for (const [tag, taken] of [
      ['s0', s0],
      ['s1', s1],
      ['s2', s2],
      ['s3', s3],
      ['s4', s4],
      ['s5', s5],
    ] as const) {
      await verify(parseDestination(`dir:${store}`), tag, {}, { log: quietLog, env });
      const copy = res.name(`runs-copy-${tag}`);
      const rename = `${name}=${copy},${volume}=${res.volume(`runs-copyvol-${tag}`)}`;
      const r = await restore(parseRestoreInputs(inputs({ source: `dir:${store}`, snapshot: tag, rename, start: 'never' })), { log: quietLog, env });
      expect(r.failed, JSON.stringify(r.containers)).toBe(0);
      expect(await treeDigest(copy, '/data'), tag).toEqual(taken.tree);
      await docker.getContainer(copy).remove({ force: true });
    }
  });

  it('registry: the next set pushes the changed file only, names the earlier chunks of the others, verifies and restores', async () => {
    const reg = inject('registry');
    const creds = { 'registry-username': reg.username, 'registry-password': reg.password };
    const name = res.name('reg');
    const volume = res.volume('regvol');
    const m = await mountpointOf(volume);
    writeFileSync(join(m, 'one'), randomBytes(3 * MiB));
    writeFileSync(join(m, 'two'), randomBytes(2 * MiB));
    const c = await runContainer({ name, Image: fixture, Cmd: ['sleep', '100000'], HostConfig: { Binds: [`${volume}:/data`] } }, 'running');
    const location = `registry:${reg.host}/${res.prefix}-reg`;
    const env = { ...process.env, DOCKER_CONFIG: '/nonexistent', CONTAINER_SNAPSHOT_SETTLE_SECONDS: '2' };
    const take = async (tag: string) => {
      await new Promise((resolve) => setTimeout(resolve, 2500));
      const log = { ...quietLog, lines: [] as string[] };
      const b = await backup(parseBackupInputs(inputs({ containers: name, destination: location, tag, ...creds }), undefined, env), { log, env });
      expect(b.failed, JSON.stringify(b.containers)).toBe(0);
      res.image(`container-snapshot/${name}:${tag}`);
      return log.lines;
    };
    await take('r1');
    rewriteKeepingTimes(join(m, 'two'));
    const lines = await take('r2');
    expect(lines.filter((l) => /: 1 file\(s\) unchanged since the set before, not read \(3\.0 MiB\)$/.test(l))).toHaveLength(1);
    const tree = await treeDigest(c.id, '/data');
    await verify(parseDestination(location), 'r2', { username: reg.username, password: reg.password }, { log: quietLog, env });
    const copy = res.name('reg-copy');
    const rename = `${name}=${copy},${volume}=${res.volume('reg-copyvol')}`;
    const r = await restore(parseRestoreInputs(inputs({ source: location, snapshot: 'r2', rename, start: 'never', ...creds })), { log: quietLog, env });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    expect(await treeDigest(copy, '/data')).toEqual(tree);
  });

  it('a large file not settled at a backup is read again by the next one even when its times say it settled since (written through a mapping), and left unread once settled at a backup', async () => {
    const name = res.name('racy');
    const volume = res.volume('racyvol');
    const m = await mountpointOf(volume);
    writeFileSync(join(m, 'db'), Buffer.alloc(MiB, 'A'));
    const c = await runContainer({ name, Image: fixture, Cmd: ['sleep', '100000'], HostConfig: { Binds: [`${volume}:/data`] } }, 'running');
    const writer = await MmapWriter.open(join(m, 'db'));
    try {
      const store = join(res.tempDir(), 'store');
      const env = { ...process.env, DOCKER_CONFIG: '/nonexistent', CONTAINER_SNAPSHOT_SETTLE_SECONDS: '2' };
      const take = async (tag: string) => {
        const log = { ...quietLog, lines: [] as string[] };
        const b = await backup(parseBackupInputs(inputs({ containers: name, destination: `dir:${store}`, tag }), undefined, env), { log, env });
        expect(b.failed, JSON.stringify(b.containers)).toBe(0);
        res.image(`container-snapshot/${name}:${tag}`);
        const unread = log.lines.map((l) => /: (\d+) file\(s\) unchanged since the set before, not read/.exec(l)?.[1]).find(Boolean);
        return { unread: Number(unread ?? 0), tree: await treeDigest(c.id, '/data') };
      };
      // t1 right after a write: db is not settled (its index entry is for its chunks alone).
      await writer.write(Buffer.from('BBBB'));
      const t1 = await take('t1');
      // Through the same mapping, its page still dirty: neither ctime nor mtime moves. 2.5 s later it looks settled (margin 2 s).
      const before = statSync(join(m, 'db'), { bigint: true });
      await writer.write(Buffer.from('CCCC'));
      await new Promise((resolve) => setTimeout(resolve, 2500));
      const t2 = await take('t2');
      expect(t2.unread).toBe(0);
      // t3: settled at t2's read, unchanged since: left unread.
      await new Promise((resolve) => setTimeout(resolve, 2500));
      const t3 = await take('t3');
      expect(t3.unread).toBe(1);
      const head = async (tag: string) => {
        const copy = res.name(`racy-copy-${tag}`);
        const rename = `${name}=${copy},${volume}=${res.volume(`racy-copyvol-${tag}`)}`;
        const r = await restore(parseRestoreInputs(inputs({ source: `dir:${store}`, snapshot: tag, rename, start: 'never' })), { log: quietLog, env });
        expect(r.failed, JSON.stringify(r.containers)).toBe(0);
        const m2 = await mountpointOf(res.volume(`racy-copyvol-${tag}`));
        await docker.getContainer(copy).remove({ force: true });
        return readFileSync(join(m2, 'db')).subarray(0, 6).toString();
      };
      expect(await head('t1')).toBe('BBBBAA');
      // The times did not move: only t1's entry being racy kept t2 from taking t1's chunks ('BBBBAA').
      const after = statSync(join(m, 'db'), { bigint: true });
      expect([after.ctimeNs, after.mtimeNs]).toEqual([before.ctimeNs, before.mtimeNs]);
      expect(await head('t2')).toBe('CCCCAA');
      expect(await head('t3')).toBe('CCCCAA');
      expect(t3.tree).toEqual(t2.tree);
      expect(t2.tree).not.toEqual(t1.tree);
    } finally {
      await writer.close();
    }
  });

  it('reads every file of a tmpfs volume at every backup (a write through a mapping never changes its times there)', async () => {
    const name = res.name('tmpfs');
    const volume = res.volume('tmpfsvol');
    await docker.createVolume({ Name: volume, DriverOpts: { type: 'tmpfs', device: 'tmpfs' } });
    await runContainer({ name, Image: fixture, Cmd: ['sleep', '100000'], HostConfig: { Binds: [`${volume}:/data`] } }, 'running');
    const m = ((await docker.getVolume(volume).inspect()) as { Mountpoint: string }).Mountpoint;
    writeFileSync(join(m, 'db'), randomBytes(MiB));
    const store = join(res.tempDir(), 'store');
    const env = { ...process.env, DOCKER_CONFIG: '/nonexistent', CONTAINER_SNAPSHOT_SETTLE_SECONDS: '2' };
    const lines: string[][] = [];
    for (const tag of ['t1', 't2']) {
      await new Promise((resolve) => setTimeout(resolve, 2500));
      const log = { ...quietLog, lines: [] as string[] };
      const b = await backup(parseBackupInputs(inputs({ containers: name, destination: `dir:${store}`, tag }), undefined, env), { log, env });
      expect(b.failed, JSON.stringify(b.containers)).toBe(0);
      res.image(`container-snapshot/${name}:${tag}`);
      lines.push(log.lines);
    }
    expect(lines[1].filter((l) => /read on this host from/.test(l))).toHaveLength(1);
    expect(lines[1].some((l) => /not read \(/.test(l))).toBe(false);
    expect(lines[1].filter((l) => /: every file read, none left unread: its file system \(type 0x1021994\) is not ext4, XFS or Btrfs$/.test(l))).toHaveLength(
      1,
    );
  });
});
