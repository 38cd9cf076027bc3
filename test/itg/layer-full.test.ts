import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { backup, restore } from '../../src/commands.js';
import { parseBackupInputs, parseRestoreInputs } from '../../src/core/inputs.js';
import type { Logger } from '../../src/core/log.js';
import { Engine } from '../../src/engine/engine.js';
import { upperDirOf } from '../../src/snapshot/layer-upper.js';
import { upperLayerTar } from '../../src/snapshot/layer-upper-tar.js';
import type { SnapshotSet } from '../../src/snapshot/manifest.js';
import { Resources, docker, runContainer, sh, treeDigest } from '../support/fixtures.js';
import { layerEntries as entries } from '../support/layers.js';

const env = { ...process.env, DOCKER_CONFIG: '/nonexistent' };
const inputs = (values: Record<string, string>) => (name: string) => values[name] ?? '';

/** A log that keeps its lines. */
function keptLog(): Logger & { lines: string[] } {
  const lines: string[] = [];
  return { lines, info: (m) => lines.push(m), warning: (m) => lines.push(`warning: ${m}`), error: (m) => lines.push(`error: ${m}`), group: (_t, fn) => fn() };
}

/** Paths compared after a restore: the layer's own, and base-image paths it changed, deleted or replaced. */
const PATHS = ['/app', '/www', '/etc/passwd', '/bin', '/root', '/data'];

async function digests(container: string, paths = PATHS): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const p of paths) out[p] = (await treeDigest(container, p)).digest;
  return out;
}

/** The last layer of image `ref` as `docker save` gives it. */
async function lastLayer(ref: string): Promise<Buffer> {
  const extract = tar.extract();
  ((await docker.getImage(ref).get()) as unknown as Readable).pipe(extract);
  const files = new Map<string, Buffer>();
  for await (const entry of extract) {
    const chunks: Buffer[] = [];
    for await (const c of entry) chunks.push(c as Buffer);
    if (entry.header.type === 'file') files.set(entry.header.name, Buffer.concat(chunks));
  }
  const [manifest] = JSON.parse(files.get('manifest.json')!.toString()) as Array<{ Layers: string[] }>;
  return files.get(manifest.Layers.at(-1)!)!;
}

/** Changes to the fixture image (bin/, etc/passwd, etc/group, www/index.html, data/, root/, tmp/) a full layer must carry. */
const CHANGES =
  'mkdir -p /app/d/sub && echo a > /app/a && echo h > /app/h1 && ln /app/h1 /app/h2 && ln -s ../etc/passwd /app/link && ' +
  'dd if=/dev/urandom of=/app/big bs=64k count=8 2>/dev/null && mkfifo /app/fifo && chown 1000:1000 /app/a && chmod 4750 /app/a && ' +
  'chmod 1777 /app/d/sub && touch -d "2001-02-03 04:05:06" /app/a && ' +
  // Mode 000 (as /etc/shadow on RHEL-family images): a file, a directory and a hard link to the file.
  'echo s > /app/shadow && ln /app/shadow /app/shadow-link && chmod 000 /app/shadow && mkdir /app/closed && echo c > /app/closed/c && chmod 000 /app/closed && ' +
  // Whiteouts of base files, a base directory replaced by a file, a base file by a directory, an opaque directory.
  'rm /bin/sort /bin/seq && rm -r /root && echo file > /root && rm /bin/xargs && mkdir /bin/xargs && echo g > /bin/xargs/x && ' +
  'rm -r /www && mkdir /www && echo other > /www/other && echo x >> /etc/passwd';

describe('the whole writable layer made on this host from its upper directory', () => {
  const res = new Resources(inject('runPrefix'), 'full');
  const app = res.name('app');
  const engine = new Engine();
  let store: string;
  let hostReads = false;

  beforeAll(async () => {
    store = join(res.tempDir(), 'store');
    await runContainer({ name: app, Image: inject('fixtureImage'), Cmd: ['sleep', '100000'] }, 'running');
    await sh(app, CHANGES);
    hostReads = process.getuid?.() === 0 && (await docker.info()).Driver === 'overlay2';
    // The tests run as root on an overlay2 engine (scripts/testbed.sh, CI): anything else is a bed that cannot show this path.
    expect(hostReads, 'these tests run as root against an overlay2 engine on this host').toBe(true);
  });

  afterAll(() => res.cleanup());

  it("is the tar the engine's commit makes: every entry, whiteout and opaque marker alike", async () => {
    const upper = await upperDirOf(await engine.inspectContainer(app));
    // A file capability (CAP_NET_BIND_SERVICE), which the engine's archive keeps as a PAX record.
    execFileSync('setfattr', ['-n', 'security.capability', '-v', '0sAQAAAgAEAAAAAAAAAAAAAAAAAAA=', join(upper!.root, 'app', 'big')]);
    await docker.getContainer(app).pause();
    try {
      const ours = await upperLayerTar(upper!);
      if (typeof ours === 'string') throw new Error(ours);
      const commit = await docker.getContainer(app).commit({ repo: res.name('commit'), tag: 'x', pause: false });
      res.image(commit.Id as string);
      const theirs = await entries(Readable.from([await lastLayer(commit.Id as string)]));
      const mine = await entries(ours);
      expect(mine).toEqual(theirs);
      expect(mine.some((e) => e.startsWith('bin/.wh.sort '))).toBe(true);
      expect(mine.some((e) => e.startsWith('www/.wh..wh..opq '))).toBe(true);
      expect(mine.find((e) => e.startsWith('app/big '))?.endsWith(' ')).toBe(false);
    } finally {
      await docker.getContainer(app).unpause();
    }
  });

  it('backs up without a commit, restores the same files, and the next backup is a delta on it', async () => {
    const expected = await digests(app);
    const log = keptLog();
    const r = await backup(parseBackupInputs(inputs({ containers: app, destination: `dir:${store}`, tag: 't0' })), { log, env });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    expect(log.lines.filter((l) => l.includes('committing the writable layer'))).toEqual([]);
    expect(log.lines.some((l) => l.includes('reading the writable layer from its upper directory'))).toBe(true);
    const copy = res.name('r0');
    const restored = await restore(parseRestoreInputs(inputs({ source: `dir:${store}`, snapshot: 't0', rename: `${app}=${copy}`, start: 'never' })), {
      log: keptLog(),
      env,
    });
    expect(restored.failed, JSON.stringify(restored.containers)).toBe(0);
    res.image((await docker.getContainer(copy).inspect()).Config.Image);
    expect(await digests(copy)).toEqual(expected);
    await docker.getContainer(copy).remove({ force: true, v: true });

    await sh(app, 'echo more >> /app/a && rm /app/h2 /www/other /bin/head');
    const next = await digests(app);
    const r1 = await backup(parseBackupInputs(inputs({ containers: app, destination: `dir:${store}`, tag: 't1' })), { log: keptLog(), env });
    expect(r1.failed).toBe(0);
    const { digest } = JSON.parse(readFileSync(join(store, 'sets', 't1.json'), 'utf8')) as { digest: string };
    const set = JSON.parse(readFileSync(join(store, 'blobs', 'sha256', digest.replace('sha256:', '')), 'utf8')) as SnapshotSet;
    expect(set.containers[0].image.deltas).toBe(1);
    for (const [tag, want] of [
      ['t1', next],
      ['t0', expected],
    ] as const) {
      const again = res.name(`a${tag}`);
      const back = await restore(parseRestoreInputs(inputs({ source: `dir:${store}`, snapshot: tag, rename: `${app}=${again}`, start: 'never' })), {
        log: keptLog(),
        env,
      });
      expect(back.failed, JSON.stringify(back.containers)).toBe(0);
      res.image((await docker.getContainer(again).inspect()).Config.Image);
      expect(await digests(again), tag).toEqual(want);
      await docker.getContainer(again).remove({ force: true, v: true });
    }
  });

  it('falls back to a commit, saying why in one line, when the upper directory has a redirect', async () => {
    const other = res.name('redir');
    await runContainer({ name: other, Image: inject('fixtureImage'), Cmd: ['sleep', '100000'] }, 'running');
    await sh(other, 'mkdir -p /moved && echo m > /moved/f');
    const upper = await upperDirOf(await engine.inspectContainer(other));
    // What a kernel with redirect_dir on leaves on a renamed directory.
    execFileSync('setfattr', ['-n', 'trusted.overlay.redirect', '-v', '/www', join(upper!.root, 'moved')]);
    const expected = await digests(other, ['/moved', '/www']);
    const log = keptLog();
    const r = await backup(parseBackupInputs(inputs({ containers: other, destination: `dir:${store}`, tag: 'fb' })), { log, env });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    const why = log.lines.filter((l) => l.includes('the writable layer is committed by the engine'));
    expect(why).toEqual([`${other}: the writable layer is committed by the engine: /moved has trusted.overlay.redirect`]);
    expect(log.lines.some((l) => l.includes('committing the writable layer'))).toBe(true);
    const copy = res.name('rfb');
    const restored = await restore(parseRestoreInputs(inputs({ source: `dir:${store}`, snapshot: 'fb', rename: `${other}=${copy}`, start: 'never' })), {
      log: keptLog(),
      env,
    });
    expect(restored.failed).toBe(0);
    res.image((await docker.getContainer(copy).inspect()).Config.Image);
    expect(await digests(copy, ['/moved', '/www'])).toEqual(expected);
  });
});
