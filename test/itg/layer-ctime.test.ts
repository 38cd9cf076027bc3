import { afterAll, describe, expect, inject, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { gunzipSync, gzipSync, zstdCompressSync, zstdDecompressSync } from 'node:zlib';
import type { LayerIndex } from '../../src/snapshot/layer-index.js';
import type { SnapshotSet } from '../../src/snapshot/manifest.js';
import { join } from 'node:path';
import { backup, restore } from '../../src/commands.js';
import { parseBackupInputs, parseRestoreInputs } from '../../src/core/inputs.js';
import { Resources, docker, quietLog, runContainer, sh, treeDigest } from '../support/fixtures.js';
import { MmapWriter } from '../support/mmap-writer.js';
import { settle, settledEnv } from '../support/commands.js';

const env = { ...process.env, DOCKER_CONFIG: '/nonexistent' };
const inputs = (values: Record<string, string>) => (name: string) => values[name] ?? '';

describe('a delta of the writable layer', () => {
  const res = new Resources(inject('runPrefix'), 'lctime');
  afterAll(() => res.cleanup());

  it.each([
    ['paused', 'true'],
    ['taken running (pause: false)', 'false'],
  ])('takes again a file rewritten with the same size and its mtime put back (only its ctime changed), and the set restores it: %s', async (_how, pause) => {
    const name = res.name(`app-${pause}`);
    await runContainer({ name, Image: inject('fixtureImage'), Cmd: ['sh', '-c', 'exec sleep 100000'] }, 'running');
    await sh(name, 'mkdir -p /app && dd if=/dev/urandom of=/app/f bs=1024 count=256 2>/dev/null && echo steady > /app/g');
    await settle();
    const store = join(res.tempDir(), 'store');
    const take = async (tag: string) => {
      const log = { ...quietLog, lines: [] as string[] };
      const b = await backup(parseBackupInputs(inputs({ containers: name, destination: `dir:${store}`, tag, pause }), undefined, settledEnv), {
        log,
        env: settledEnv,
      });
      expect(b.failed, JSON.stringify(b.containers)).toBe(0);
      res.image(`container-snapshot/${name}:${tag}`);
      return log.lines;
    };
    await take('t1');
    // The same bytes count, other bytes, the mtime put back: written through the container's upper directory on this host.
    const upper = ((await docker.getContainer(name).inspect()) as unknown as { GraphDriver: { Data: { UpperDir: string } } }).GraphDriver.Data.UpperDir;
    const file = join(upper, 'app/f');
    const st = statSync(file, { bigint: true });
    writeFileSync(file, randomBytes(Number(st.size)));
    // GNU touch sets the mtime to the nanosecond (utimes from node goes through a double).
    const ns = (st.mtimeNs % 1_000_000_000n).toString().padStart(9, '0');
    execFileSync('touch', ['-m', '-d', `@${st.mtimeNs / 1_000_000_000n}.${ns}`, file]);
    const now = statSync(file, { bigint: true });
    expect([now.mtimeNs, now.size]).toEqual([st.mtimeNs, st.size]);
    expect(now.ctimeNs).not.toBe(st.ctimeNs);
    const lines = await take('t2');
    // /app/f; and on Engine 26.1 /etc once: the engine's first archive request after a start (t1's probes) copies it up to make its mount targets.
    expect(lines.filter((l) => /reading what changed in the writable layer since the last snapshot: [12] path\(s\), 0 removed/.test(l))).toHaveLength(1);
    const tree = await treeDigest(name, '/app');
    const copy = res.name(`copy-${pause}`);
    const r = await restore(parseRestoreInputs(inputs({ source: `dir:${store}`, snapshot: 't2', rename: `${name}=${copy}`, start: 'never' })), {
      log: quietLog,
      env,
    });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    expect(await treeDigest(copy, '/app')).toEqual(tree);
  });

  /**
   * A running container whose /db/data (8 KiB of A) a process on this host holds mapped shared
   * through the container's own overlay mount, as a database in it would; `take(tag)` backs it up
   * to a dir: store (`pause` as given), `restoredHead(tag)` restores that set under a new name and
   * reads the first 6 bytes of its /db/data. The mapping is closed after `body`.
   */
  async function withMappedFile(
    suffix: string,
    pause: string,
    body: (m: {
      name: string;
      file: string;
      store: string;
      writer: MmapWriter;
      take(tag: string): Promise<void>;
      restoredHead(tag: string): Promise<string>;
    }) => Promise<void>,
  ): Promise<void> {
    const name = res.name(suffix);
    await runContainer({ name, Image: inject('fixtureImage'), Cmd: ['sh', '-c', 'exec sleep 100000'] }, 'running');
    await sh(name, 'mkdir -p /db && head -c 8192 /dev/zero | tr "\\0" A > /db/data');
    const merged = ((await docker.getContainer(name).inspect()) as unknown as { GraphDriver: { Data: { MergedDir: string } } }).GraphDriver.Data.MergedDir;
    const file = join(merged, 'db/data');
    const writer = await MmapWriter.open(file);
    const store = join(res.tempDir(), 'store');
    const take = async (tag: string) => {
      const b = await backup(parseBackupInputs(inputs({ containers: name, destination: `dir:${store}`, tag, pause })), { log: quietLog, env });
      expect(b.failed, JSON.stringify(b.containers)).toBe(0);
      res.image(`container-snapshot/${name}:${tag}`);
    };
    const restoredHead = async (tag: string) => {
      const copy = res.name(`${suffix}-copy`);
      const r = await restore(parseRestoreInputs(inputs({ source: `dir:${store}`, snapshot: tag, rename: `${name}=${copy}`, start: 'always' })), {
        log: quietLog,
        env,
      });
      expect(r.failed, JSON.stringify(r.containers)).toBe(0);
      return execFileSync('docker', ['exec', copy, 'head', '-c', '6', '/db/data'], { encoding: 'utf8' });
    };
    try {
      await body({ name, file, store, writer, take, restoredHead });
    } finally {
      await writer.close();
    }
  }

  it.each([
    ['paused', 'true'],
    ['taken running (pause: false)', 'false'],
  ])('takes again a file written through a shared memory mapping just before the last set, whose times the next writes leave as they were: %s', (_how, pause) =>
    withMappedFile(`mmap-${pause}`, pause, async ({ name, file, writer, take, restoredHead }) => {
      await writer.write(Buffer.from('BBBB'));
      const first = statSync(file, { bigint: true });
      await take('t1');
      await writer.write(Buffer.from('CCCC'));
      // The page is still dirty: the kernel changed neither time, nor the size.
      const second = statSync(file, { bigint: true });
      expect([second.ctimeNs, second.mtimeNs, second.size, second.ino]).toEqual([first.ctimeNs, first.mtimeNs, first.size, first.ino]);
      expect(execFileSync('docker', ['exec', name, 'head', '-c', '6', '/db/data'], { encoding: 'utf8' })).toBe('CCCCAA');
      await take('t2');
      expect(await restoredHead('t2')).toBe('CCCCAA');
    }),
  );

  it('takes again every regular file of an index written before racy entries were (an upgrade): a file written through a mapping just before that set is taken again', () =>
    withMappedFile('mmap-old', 'true', async ({ store, writer, take, restoredHead }) => {
      await writer.write(Buffer.from('BBBB'));
      await take('t1');
      // t1's index as a version before racy entries wrote it: no racyMarked, no racy entry.
      const stripped = rewriteLayerIndex(store, 't1', (index) => {
        delete index.racyMarked;
        for (const e of Object.values(index.entries)) delete e.racy;
      });
      expect(stripped).toBeGreaterThan(0);
      await writer.write(Buffer.from('CCCC'));
      await take('t2');
      expect(await restoredHead('t2')).toBe('CCCCAA');
    }));

  it('backs up a layer holding symbolic links the engine cannot resolve (its stat of them fails): committed whole, and restored', async () => {
    const name = res.name('badlinks');
    await runContainer({ name, Image: inject('fixtureImage'), Cmd: ['sh', '-c', 'exec sleep 100000'] }, 'running');
    await sh(name, 'ln -s /etc/passwd/x /s && ln -s /l1 /l2 && ln -s /l2 /l1 && echo data > /kept');
    const store = join(res.tempDir(), 'store');
    for (const tag of ['t1', 't2']) {
      const b = await backup(parseBackupInputs(inputs({ containers: name, destination: `dir:${store}`, tag })), { log: quietLog, env });
      res.image(`container-snapshot/${name}:${tag}`);
      expect(b.failed, JSON.stringify(b.containers)).toBe(0);
    }
    const copy = res.name('badlinks-copy');
    const r = await restore(parseRestoreInputs(inputs({ source: `dir:${store}`, snapshot: 't2', rename: `${name}=${copy}`, start: 'always' })), {
      log: quietLog,
      env,
    });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    expect(execFileSync('docker', ['exec', copy, 'sh', '-c', 'readlink /s; readlink /l1; readlink /l2; cat /kept'], { encoding: 'utf8' })).toBe(
      '/etc/passwd/x\n/l2\n/l1\ndata\n',
    );
  });

  it('takes again the files of two directories swapped by renames, although each path keeps its size, mtime and ctime (only the inode differs)', async () => {
    const name = res.name('swap');
    await runContainer({ name, Image: inject('fixtureImage'), Cmd: ['sh', '-c', 'exec sleep 100000'] }, 'running');
    const upper = ((await docker.getContainer(name).inspect()) as unknown as { GraphDriver: { Data: { UpperDir: string } } }).GraphDriver.Data.UpperDir;
    // Both files written in one clock tick (the kernel's coarse clock, ~4 ms): then the two paths differ by their inode alone.
    const stats = () => ['a', 'b'].map((d) => statSync(join(upper, 'p', d, 'f'), { bigint: true }));
    let same = false;
    for (let i = 0; i < 20 && !same; i++) {
      await sh(name, 'rm -rf /p && mkdir -p /p/a /p/b && echo AAAA > /p/a/f && echo BBBB > /p/b/f');
      const [a, b] = stats();
      same = a.ctimeNs === b.ctimeNs && a.mtimeNs === b.mtimeNs;
    }
    expect(same, 'two files written in one clock tick').toBe(true);
    await settle();
    const store = join(res.tempDir(), 'store');
    const take = async (tag: string) => {
      const b = await backup(parseBackupInputs(inputs({ containers: name, destination: `dir:${store}`, tag }), undefined, settledEnv), {
        log: quietLog,
        env: settledEnv,
      });
      expect(b.failed, JSON.stringify(b.containers)).toBe(0);
      res.image(`container-snapshot/${name}:${tag}`);
    };
    await take('t1');
    const [a1, b1] = stats();
    await sh(name, 'cd /p && mv a t && mv b a && mv t b');
    const [a2, b2] = stats();
    // Each path: the same size, mtime and ctime as in t1, another inode.
    expect([a2.size, a2.mtimeNs, a2.ctimeNs, b2.size, b2.mtimeNs, b2.ctimeNs]).toEqual([a1.size, a1.mtimeNs, a1.ctimeNs, b1.size, b1.mtimeNs, b1.ctimeNs]);
    expect([a2.ino, b2.ino]).toEqual([b1.ino, a1.ino]);
    await take('t2');
    const copy = res.name('swap-copy');
    const r = await restore(parseRestoreInputs(inputs({ source: `dir:${store}`, snapshot: 't2', rename: `${name}=${copy}`, start: 'always' })), {
      log: quietLog,
      env,
    });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    const cat = (c: string) => execFileSync('docker', ['exec', c, 'cat', '/p/a/f', '/p/b/f'], { encoding: 'utf8' });
    expect(cat(name)).toBe('BBBB\nAAAA\n');
    expect(cat(copy)).toBe('BBBB\nAAAA\n');
  });
});

/**
 * Rewrites the writable-layer index of `tag`'s one container in the dir: store at `root` with
 * `edit`, as another version could have written it: the index blob (compressed as stored), the set
 * document naming it, and the tag's descriptor. Returns how many racy entries the index had.
 */
function rewriteLayerIndex(root: string, tag: string, edit: (index: LayerIndex) => void): number {
  const blobPath = (digest: string) => join(root, 'blobs', 'sha256', digest.replace('sha256:', ''));
  const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
  const tagPath = join(root, 'sets', `${tag}.json`);
  const descriptor = JSON.parse(readFileSync(tagPath, 'utf8')) as { digest: string; size: number };
  const set = JSON.parse(readFileSync(blobPath(descriptor.digest), 'utf8')) as SnapshotSet;
  const blob = set.containers[0].image.layerIndex!;
  const zstd = blob.mediaType.endsWith('+zstd');
  const stored = readFileSync(blobPath(blob.digest));
  const index = JSON.parse((zstd ? zstdDecompressSync(stored) : gunzipSync(stored)).toString('utf8')) as LayerIndex;
  const racy = Object.values(index.entries).filter((e) => e.racy).length;
  edit(index);
  const content = Buffer.from(JSON.stringify(index));
  const body = zstd ? zstdCompressSync(content) : gzipSync(content);
  writeFileSync(blobPath(sha(body)), body);
  set.containers[0].image.layerIndex = { ...blob, digest: sha(body), size: body.length, contentDigest: sha(content), contentSize: content.length };
  const doc = Buffer.from(JSON.stringify(set, null, 2));
  writeFileSync(blobPath(sha(doc)), doc);
  writeFileSync(tagPath, JSON.stringify({ ...descriptor, digest: sha(doc), size: doc.length }));
  return racy;
}
