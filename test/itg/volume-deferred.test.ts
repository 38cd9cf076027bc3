import { afterAll, describe, expect, inject, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import {
  appendFileSync,
  chmodSync,
  chownSync,
  closeSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { backup, restore, verify } from '../../src/commands.js';
import { parseBackupInputs, parseRestoreInputs } from '../../src/core/inputs.js';
import { parseDestination } from '../../src/core/destination-input.js';
import { Engine } from '../../src/engine/engine.js';
import { CHUNK_SIZES } from '../../src/snapshot/chunker.js';
import { formatBytes } from '../../src/util/format.js';
import { inputs, testEnv } from '../support/commands.js';
import { Resources, docker, mountpointOf, quietLog, runContainer, treeDigest } from '../support/fixtures.js';
import { recordingLog } from '../support/log.js';

const MiB = 1 << 20;
/** The least settle margin allowed: files whose ctime is older count as settled. Each backup waits a little longer than this after the last change. */
const SETTLE = 2;

/** The regular files with data a fill made (one per inode, none sparse): what the deferred-read line counts. */
interface Tally {
  files: number;
  bytes: number;
  /** The size of each by its path below the volume's top. */
  sizes: Map<string, number>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Fills a volume's directory on this host: `small` files of random sizes (1 B to 20 kB, random bytes)
 * in nested directories d0…d9/s0…s2 (file i in d{i%10}/s{i%3}/f{i}); three large files (1 MiB, 3 MiB,
 * 2 MiB + 333 B); an empty file; a hard-linked pair; a symlink; a fifo; a sparse file (4 KiB of data
 * in 8 MiB); files with odd modes and owners (setuid 1234:5678, 0600 1000:1000, 0000 65534:65534),
 * a directory 0750 owned 1000:1000, a non-ASCII name and a file dated in 2001.
 */
function fill(m: string, small = 300): Tally {
  const tally: Tally = { files: 0, bytes: 0, sizes: new Map() };
  const put = (rel: string, body: Buffer, mode?: number, owner?: [number, number]) => {
    writeFileSync(join(m, rel), body);
    if (owner) chownSync(join(m, rel), ...owner);
    if (mode !== undefined) chmodSync(join(m, rel), mode);
    if (body.length > 0) {
      tally.files++;
      tally.bytes += body.length;
      tally.sizes.set(rel, body.length);
    }
  };
  for (let i = 0; i < small; i++) {
    mkdirSync(join(m, `d${i % 10}`, `s${i % 3}`), { recursive: true });
    put(`d${i % 10}/s${i % 3}/f${i}`, randomBytes(randomInt(1, 20_000)));
  }
  mkdirSync(join(m, 'big'));
  put('big/one', randomBytes(MiB));
  put('big/three', randomBytes(3 * MiB));
  put('big/odd', randomBytes(2 * MiB + 333));
  put('empty', Buffer.alloc(0));
  put('linked', randomBytes(5000));
  linkSync(join(m, 'linked'), join(m, 'd0/hard'));
  symlinkSync('big/odd', join(m, 'link'));
  execFileSync('mkfifo', [join(m, 'fifo')]);
  const fd = openSync(join(m, 'sparse'), 'w');
  writeSync(fd, randomBytes(4096), 0, 4096, 3 * MiB);
  closeSync(fd);
  truncateSync(join(m, 'sparse'), 8 * MiB);
  put('suid', randomBytes(3000), 0o4755, [1234, 5678]);
  put('private', randomBytes(700), 0o600, [1000, 1000]);
  put('locked', randomBytes(10), 0o000, [65534, 65534]);
  mkdirSync(join(m, 'owned'));
  put('owned/inner', randomBytes(12_345), 0o640, [1000, 1000]);
  chownSync(join(m, 'owned'), 1000, 1000);
  chmodSync(join(m, 'owned'), 0o750);
  put('naïve ünïcode', randomBytes(999));
  put('old', randomBytes(4321));
  utimesSync(join(m, 'old'), new Date('2001-02-03T04:05:06Z'), new Date('2001-02-03T04:05:06Z'));
  return tally;
}

/** The info line a backup logs for a volume read with `n` files read once the container was back (`bytes` of them). */
const deferredLine = (name: string, volume: string, n: number, bytes: number) =>
  `${name}: reading ${volume}: ${n} file(s) read once the container was back (${formatBytes(bytes)}), each checked unchanged since the hold`;

const deferredLines = (lines: string[]) => lines.filter((l) => l.includes('read once the container was back'));

/** An engine that, the first time it unpauses a container, runs `change` right after (the container is back, its deferred files not read yet). */
class ChangesWhenBack extends Engine {
  unpauses = 0;
  constructor(private readonly change: () => void) {
    super();
  }
  override async unpause(id: string): Promise<void> {
    await super.unpause(id);
    if (++this.unpauses === 1) this.change();
  }
}

describe('volume files read once the container is back (deferred reads)', () => {
  const res = new Resources(inject('runPrefix'), 'defer');
  const image = inject('fixtureImage');
  afterAll(() => res.cleanup());

  /** A running container with a new named volume at /data, filled on this host by `fill` before it starts. */
  async function container(suffix: string, labels: Record<string, string> = {}, small = 300) {
    const name = res.name(suffix);
    const volume = res.volume(`${suffix}-data`);
    const m = await mountpointOf(volume);
    const tally = fill(m, small);
    await runContainer({ name, Image: image, Labels: labels, Cmd: ['sleep', '100000'], HostConfig: { Binds: [`${volume}:/data`] } }, 'running');
    return { name, volume, m, tally };
  }

  /** A backup of `containers` into `store` that must succeed for each, with the settle margin given (seconds); its log lines. */
  async function take(containers: string, store: string, tag: string, extra: Record<string, string> = {}, engine?: Engine, settle = SETTLE) {
    const env = { ...testEnv, CONTAINER_SNAPSHOT_SETTLE_SECONDS: String(settle) };
    const log = recordingLog();
    const b = await backup(parseBackupInputs(inputs({ containers, destination: `dir:${store}`, tag, ...extra }), undefined, env), {
      log,
      env,
      ...(engine ? { engine } : {}),
    });
    expect(b.failed, JSON.stringify(b.containers)).toBe(0);
    for (const c of containers.split(',')) res.image(`container-snapshot/${c}:${tag}`);
    return { result: b, lines: log.lines };
  }

  /** The /data tree of `tag` restored beside the original (new container and volume names, not started). */
  async function restoredTree(store: string, tag: string, c: { name: string; volume: string }, extra: Record<string, string> = {}) {
    const copy = res.name(`${c.name.slice(res.prefix.length + 1)}-r-${tag}`);
    const rename = `${c.name}=${copy},${c.volume}=${res.volume(`${copy.slice(res.prefix.length + 1)}-data`)}`;
    const r = await restore(parseRestoreInputs(inputs({ source: `dir:${store}`, snapshot: tag, containers: c.name, rename, start: 'never', ...extra })), {
      log: quietLog,
      env: testEnv,
    });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    res.image((await docker.getContainer(copy).inspect()).Config.Image);
    return treeDigest(copy, '/data');
  }

  const settled = () => sleep(SETTLE * 1000 + 500);

  it('paused: every settled file with data is read once the container is back, and the set restores to the same tree', async () => {
    const c = await container('many');
    const store = join(res.tempDir(), 'store');
    await settled();
    const before = await treeDigest(c.name, '/data');
    const { lines, result } = await take(c.name, store, 'd1');
    expect(result.containers[0].pausedMs).toBeGreaterThan(0);
    expect(lines).toContain(`${c.name}: reading ${c.volume}: read on this host from ${c.m}`);
    expect(deferredLines(lines)).toEqual([deferredLine(c.name, c.volume, c.tally.files, c.tally.bytes)]);
    await verify(parseDestination(`dir:${store}`), 'd1', {}, { log: quietLog, env: testEnv });
    // Data left as zeros in the spool and never filled would restore as zeros: another tree.
    expect(await restoredTree(store, 'd1', c)).toEqual(before);
    expect(await treeDigest(c.name, '/data')).toEqual(before);

    // The next set: the large files its file index says are unchanged stay unread, and are not counted as read later.
    const large = [...c.tally.sizes].filter(([, size]) => size >= CHUNK_SIZES.min);
    expect(large.map(([rel]) => rel).sort()).toEqual(['big/odd', 'big/one', 'big/three']);
    await settled();
    const next = await take(c.name, store, 'd2');
    const largeBytes = large.reduce((n, [, size]) => n + size, 0);
    // The sparse file is unchanged and large too: unread, and never read later.
    expect(next.lines).toContain(
      `${c.name}: reading ${c.volume}: ${large.length + 1} file(s) unchanged since the set before, not read (${formatBytes(largeBytes + 8 * MiB)})`,
    );
    // Most small files are in runs (64 KiB or more of them in a row, file-runs.ts) taken unread too; the rest are read later.
    const runs = next.lines.map((l) => /: (\d+) small file\(s\) in \d+ run\(s\) unchanged since the set before, not read/.exec(l)?.[1]).find(Boolean);
    expect(Number(runs)).toBeGreaterThan(150);
    const later = deferredLines(next.lines).map((l) => /: (\d+) file\(s\) read once the container was back/.exec(l)?.[1]);
    expect(later).toEqual([String(c.tally.files - large.length - Number(runs))]);
    expect(await restoredTree(store, 'd2', c)).toEqual(before);
  });

  it('encrypting (age recipient): the files read once the container is back are in the set, and it restores with the identity', async () => {
    const keyFile = join(res.tempDir(), 'key.txt');
    execFileSync('age-keygen', ['-o', keyFile], { stdio: 'ignore' });
    const recipient = execFileSync('age-keygen', ['-y', keyFile], { encoding: 'utf8' }).trim();
    const c = await container('sealed');
    const store = join(res.tempDir(), 'store');
    await settled();
    const before = await treeDigest(c.name, '/data');
    const { lines } = await take(c.name, store, 'e1', { 'encryption-recipients': recipient });
    expect(deferredLines(lines)).toEqual([deferredLine(c.name, c.volume, c.tally.files, c.tally.bytes)]);
    // Stored sealed: every blob is an age file.
    const blobs = readdirSync(join(store, 'blobs', 'sha256'));
    expect(blobs.length).toBeGreaterThan(0);
    for (const b of blobs)
      expect(
        readFileSync(join(store, 'blobs', 'sha256', b))
          .subarray(0, 22)
          .toString('latin1'),
        b,
      ).toBe('age-encryption.org/v1\n');
    expect(await restoredTree(store, 'e1', c, { 'decryption-identity': keyFile })).toEqual(before);
  });

  const appended = (p: string) => appendFileSync(p, randomBytes(777));
  const removed = (p: string) => rmSync(p);
  const replaced = (p: string) => {
    // Another file of the same size, mode, owner and mtime, renamed over it: only its inode, ctime and bytes differ.
    const st = statSync(p);
    const tmp = `${p}.new`;
    writeFileSync(tmp, randomBytes(st.size));
    chownSync(tmp, st.uid, st.gid);
    chmodSync(tmp, st.mode & 0o7777);
    utimesSync(tmp, st.atime, st.mtime);
    renameSync(tmp, p);
  };

  it.each([
    ['appended to', appended, 'its size'],
    ['removed', removed, 'not found: ENOENT'],
    ['replaced by another file of the same size and mtime (a new inode)', replaced, 'another file'],
  ] as const)(
    'a file %s after the container is back, before its read: the container is taken again, and the set holds the second hold',
    async (how, change, why) => {
      const suffix = `chg-${how.split(' ')[0]}`;
      const c = await container(suffix, {}, 60);
      const rel = 'd3/s0/f3';
      expect(c.tally.sizes.has(rel)).toBe(true);
      const store = join(res.tempDir(), 'store');
      const engine = new ChangesWhenBack(() => change(join(c.m, rel)));
      await settled();
      const before = await treeDigest(c.name, '/data');
      const { lines, result } = await take(c.name, store, 'c1', {}, engine);
      expect(engine.unpauses).toBe(2);
      // Held twice: the time reported is both pauses'.
      const pauses = lines
        .map((l) => /: paused for (\d+) ms/.exec(l)?.[1])
        .filter(Boolean)
        .map(Number);
      expect(pauses).toHaveLength(2);
      expect(result.containers[0].pausedMs).toBe(pauses[0] + pauses[1]);
      expect((await docker.getContainer(c.name).inspect()).State).toMatchObject({ Running: true, Paused: false });
      expect(lines.filter((l) => l.includes('changed after the container was back'))).toEqual([
        `${c.name}: ${c.volume}: ${rel} changed after the container was back, before it was read (${why}): taken again, every file read while it is held`,
      ]);
      const after = await treeDigest(c.name, '/data');
      expect(after).not.toEqual(before);
      expect(await restoredTree(store, 'c1', c)).toEqual(after);
    },
  );

  it('a file changed just before the backup (younger than the settle margin) is read while the container is held, not counted', async () => {
    // A wider margin here, so that the change is still younger than it when the volume is read on a busy host.
    const settle = 5;
    const c = await container('young', {}, 100);
    const store = join(res.tempDir(), 'store');
    await sleep(settle * 1000 + 500);
    const rel = 'd5/s2/f5';
    appendFileSync(join(c.m, rel), randomBytes(100));
    writeFileSync(join(c.m, 'fresh'), randomBytes(2000));
    const { lines } = await take(c.name, store, 'y1', {}, undefined, settle);
    const tree = await treeDigest(c.name, '/data');
    expect(deferredLines(lines)).toEqual([deferredLine(c.name, c.volume, c.tally.files - 1, c.tally.bytes - c.tally.sizes.get(rel)!)]);
    expect(await restoredTree(store, 'y1', c)).toEqual(tree);
  });

  const HELD_SETTLE = 5;

  /** A container whose volume's files have settled, then a 20 MiB `db` just written (not settled): the container, `db`'s bytes and the tree as the hold will see it. */
  async function withFreshDb(suffix: string) {
    const c = await container(suffix, {}, 40);
    await sleep(HELD_SETTLE * 1000 + 500);
    // A database's file, just written: younger than the margin, so taken as the hold sees it.
    const db = randomBytes(20 * MiB + 5);
    writeFileSync(join(c.m, 'db'), db);
    return { c, db, held: await treeDigest(c.name, '/data') };
  }

  /** take() with `script` as the `cp` first in PATH for that backup alone (the held copy's is the only cp a backup runs). */
  async function takeWithCp(script: string, ...args: Parameters<typeof take>) {
    const bin = res.tempDir();
    writeFileSync(join(bin, 'cp'), `#!/bin/sh\n${script}\n`, { mode: 0o755 });
    const path = process.env.PATH;
    process.env.PATH = `${bin}:${path}`;
    try {
      return await take(...args);
    } finally {
      process.env.PATH = path;
    }
  }

  it('a large file written just before the backup (not settled) is copied while held and read from its copy once back: written again right after, the set still holds what the hold saw', async () => {
    const { c, db, held } = await withFreshDb('held-copy');
    const store = join(res.tempDir(), 'store');
    // Written again the moment the container is back, before anything reads it there.
    const engine = new ChangesWhenBack(() => writeFileSync(join(c.m, 'db'), randomBytes(db.length)));
    const { lines } = await take(c.name, store, 'h1', {}, engine, HELD_SETTLE);
    expect(engine.unpauses).toBe(1);
    expect(deferredLines(lines)).toEqual([
      `${deferredLine(c.name, c.volume, c.tally.files + 1, c.tally.bytes + db.length)}; 1 of them (${formatBytes(db.length)}) not settled, copied while held`,
    ]);
    expect(await treeDigest(c.name, '/data')).not.toEqual(held);
    expect(await restoredTree(store, 'h1', c)).toEqual(held);
  });

  it('a held copy that is not made (cp failing) leaves the volume walked again while held, that file read then: the set restores to the held tree', async () => {
    const { c, held } = await withFreshDb('copy-fails');
    const store = join(res.tempDir(), 'store');
    const { lines } = await takeWithCp('echo "cp: no room" >&2; exit 1', c.name, store, 'cf', {}, undefined, HELD_SETTLE);
    // Without the second walk, db would be in the set as zeros.
    expect(await restoredTree(store, 'cf', c)).toEqual(held);
    expect(lines.filter((l) => l.includes('while held was not made'))).toEqual([
      `${c.name}: reading ${c.volume}: the copy of db while held was not made: read again, its large files not settled read while held`,
    ]);
    // The second walk read db while held; the settled files are still read once the container is back.
    expect(deferredLines(lines)).toEqual([deferredLine(c.name, c.volume, c.tally.files, c.tally.bytes)]);
    expect(lines.filter((l) => /reading .*: read on this host from /.test(l))).toHaveLength(1);
  });

  it('a held copy that outlasts the walk is waited for before the container is back: the set holds what the hold saw', async () => {
    const { c, db, held } = await withFreshDb('copy-slow');
    const store = join(res.tempDir(), 'store');
    // A cp that takes a second more than the walk; db is written again the moment the container is back.
    const real = execFileSync('sh', ['-c', 'command -v cp'], { encoding: 'utf8' }).trim();
    const engine = new ChangesWhenBack(() => writeFileSync(join(c.m, 'db'), randomBytes(db.length)));
    const taken = await takeWithCp(`sleep 1; exec ${real} "$@"`, c.name, store, 'cs', {}, engine, HELD_SETTLE);
    expect(await restoredTree(store, 'cs', c)).toEqual(held);
    expect(taken.result.containers[0].pausedMs).toBeGreaterThanOrEqual(1000);
    expect(deferredLines(taken.lines)).toEqual([
      `${deferredLine(c.name, c.volume, c.tally.files + 1, c.tally.bytes + db.length)}; 1 of them (${formatBytes(db.length)}) not settled, copied while held`,
    ]);
  });

  it('the containers of a consistency group get no deferred reads, and restore to their trees', async () => {
    const group = `${res.prefix}-grp`;
    const members = [await container('grp-a', { 'container-snapshot.group': group }, 80), await container('grp-b', { 'container-snapshot.group': group }, 80)];
    const store = join(res.tempDir(), 'store');
    await settled();
    const trees = await Promise.all(members.map((c) => treeDigest(c.name, '/data')));
    const { lines, result } = await take(members.map((c) => c.name).join(','), store, 'g1');
    expect(result.groups?.map((g) => [g.name, g.status])).toEqual([[group, 'ok']]);
    // Read on this host (where files could have been left for later), yet every file read while held.
    for (const c of members) expect(lines).toContain(`${c.name}: reading ${c.volume}: read on this host from ${c.m}`);
    expect(deferredLines(lines)).toEqual([]);
    for (const [i, c] of members.entries()) expect(await restoredTree(store, 'g1', c)).toEqual(trees[i]);
  });

  it('stopped (stop: true): the settled files are read once the container is started again, and the set restores to the same tree', async () => {
    const c = await container('stopped', {}, 120);
    const store = join(res.tempDir(), 'store');
    await settled();
    const before = await treeDigest(c.name, '/data');
    const { lines, result } = await take(c.name, store, 's1', { stop: 'true', 'stop-timeout': '1' });
    expect(result.containers[0].stoppedMs).toBeGreaterThan(0);
    expect((await docker.getContainer(c.name).inspect()).State.Running).toBe(true);
    expect(deferredLines(lines)).toEqual([deferredLine(c.name, c.volume, c.tally.files, c.tally.bytes)]);
    expect(await restoredTree(store, 's1', c)).toEqual(before);
  });
});
