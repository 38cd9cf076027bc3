import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import tar from 'tar-stream';
import { backup, ls, restore } from '../../src/commands.js';
import type { PathListing } from '../../src/browse/ls.js';
import { parseDestination } from '../../src/core/destination-input.js';
import { parseBackupInputs, parseRestoreInputs } from '../../src/core/inputs.js';
import { HISTORY_DEPTH } from '../../src/snapshot/backup-history.js';
import { SET_SCHEMA_VERSION, type SnapshotSet } from '../../src/snapshot/manifest.js';
import { Resources, docker, quietLog, runContainer, treeDigest, sh } from '../support/fixtures.js';
import { settle, settledEnv } from '../support/commands.js';

const env = { ...process.env, DOCKER_CONFIG: '/nonexistent' };
const inputs = (values: Record<string, string>) => (name: string) => values[name] ?? '';

/** Paths compared after each restore: the writable layer's own, and base-image paths it changed or deleted. */
const PATHS = ['/app', '/www', '/etc/passwd', '/bin'];

async function digests(container: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const p of PATHS) out[p] = (await treeDigest(container, p)).digest;
  return out;
}

/** The entries under `path` of a container as its archive shows them: path, type, mode, owner, size, link, mtime (s). */
async function listing(container: string, path: string): Promise<string[]> {
  const stream = (await docker.getContainer(container).getArchive({ path })) as unknown as NodeJS.ReadableStream;
  const extract = tar.extract();
  stream.pipe(extract);
  const out: string[] = [];
  for await (const entry of extract) {
    const h = entry.header;
    entry.resume();
    out.push(
      line(
        `/${h.name.replace(/\/$/, '')}`,
        h.type ?? '',
        h.mode ?? 0,
        h.uid ?? 0,
        h.gid ?? 0,
        h.type === 'file' ? (h.size ?? 0) : 0,
        h.linkname ?? '',
        h.mtime,
      ),
    );
  }
  return out.sort();
}

const line = (path: string, type: string, mode: number, uid: number, gid: number, size: number, link: string, mtime: Date | number | undefined) =>
  [
    path,
    type,
    (mode & 0o7777).toString(8),
    uid,
    gid,
    size,
    link,
    type === 'directory' ? '' : typeof mtime === 'number' ? mtime : Math.floor((mtime?.getTime() ?? 0) / 1000),
  ].join(' ');

/** Each backup's change, made just before it (the first: the state of the full layer). */
const STEPS: Array<{ what: string; script: string }> = [
  {
    what: 'first state',
    script:
      'mkdir -p /app/dir/sub && echo alpha > /app/a.txt && echo x > /app/dir/x && echo y > /app/dir/sub/y && ' +
      'dd if=/dev/urandom of=/app/big.bin bs=64k count=32 2>/dev/null && echo payload > /app/data && ln -s a.txt /app/link && ' +
      'echo "#!/bin/sh" > /app/mode.sh && chmod 644 /app/mode.sh && rm /www/index.html',
  },
  { what: 'a file appended to', script: 'echo beta >> /app/a.txt' },
  { what: 'a file deleted, a mode changed', script: 'rm /app/dir/sub/y && chmod 750 /app/mode.sh' },
  { what: 'a directory renamed', script: 'mv /app/dir /app/moved' },
  { what: 'a file replaced by a directory', script: 'rm /app/data && mkdir /app/data && echo inner > /app/data/inner' },
  { what: 'a symlink retargeted, an owner changed', script: 'ln -sfn moved /app/link && chown 1000:1000 /app/a.txt && touch /app/a.txt' },
  { what: 'a directory deleted, a file of the base image deleted', script: 'rm -r /app/moved && rm /bin/sort' },
  { what: 'a base-image file changed', script: 'echo extra:x:2000:2000::/:/bin/sh >> /etc/passwd' },
  { what: 'nothing', script: 'true' },
  {
    what: 'a directory replaced by a file, a file of the layer replaced',
    script: 'rm -r /app/data && echo file > /app/data && echo gamma > /app/a.tmp && mv /app/a.tmp /app/a.txt',
  },
];

describe('incremental writable layers (dir:)', () => {
  const res = new Resources(inject('runPrefix'), 'delta');
  let store: string;
  const app = res.name('app');
  const expected: Array<Record<string, string>> = [];
  const listed: string[][] = [];

  beforeAll(async () => {
    store = join(res.tempDir(), 'store');
    await runContainer({ name: app, Image: inject('fixtureImage'), Cmd: ['sleep', '100000'] }, 'running');
  });

  afterAll(() => res.cleanup());

  const setOf = (tag: string) => {
    const { digest } = JSON.parse(readFileSync(join(store, 'sets', `${tag}.json`), 'utf8')) as { digest: string };
    return JSON.parse(readFileSync(join(store, 'blobs', 'sha256', digest.replace('sha256:', '')), 'utf8')) as SnapshotSet;
  };

  it('takes ten backups, each after a change; deltas hold only the change, compacted after layer-compaction', async () => {
    const images: SnapshotSet['containers'][number]['image'][] = [];
    for (const [i, step] of STEPS.entries()) {
      await sh(app, step.script);
      expected.push(await digests(app));
      listed.push(await listing(app, '/app'));
      // Each change settled before its set, as a schedule finds it (else taken again as racy by the next).
      await settle();
      const r = await backup(
        parseBackupInputs(inputs({ containers: app, destination: `dir:${store}`, tag: `t${i}`, 'layer-compaction': '4' }), undefined, settledEnv),
        { log: quietLog, env: settledEnv },
      );
      expect(r.failed, `${step.what}: ${JSON.stringify(r.containers)}`).toBe(0);
      const set = setOf(`t${i}`);
      images.push(set.containers[0].image);
      expect(set.schemaVersion, step.what).toBe(SET_SCHEMA_VERSION);
    }
    // Full, four deltas, full again (compaction), deltas; the backup after no change keeps the image it had.
    expect(images.map((m) => m.deltas ?? 0)).toEqual([0, 1, 2, 3, 4, 0, 1, 2, 2, 3]);
    expect(images[8].id).toBe(images[7].id);
    for (const [i, image] of images.entries()) {
      expect(image.layerIndex, `t${i}`).toBeDefined();
      const deltas = image.deltas ?? 0;
      if (deltas === 0) continue;
      const base = images[i - 1];
      // A delta image is the one before and one layer more: the base layers are the same blobs, not stored again.
      if (image.id !== base.id) expect(image.layers.slice(0, -1).map((l) => l.digest)).toEqual(base.layers.map((l) => l.digest));
    }
    // The full writable layer holds the 2 MiB of random data; no delta holds it again.
    const full = images[0].layers.at(-1)!;
    expect(full.contentSize).toBeGreaterThan(2 * 1024 * 1024);
    const deltaSizes = images.filter((m) => (m.deltas ?? 0) > 0).map((m) => m.layers.at(-1)!.contentSize);
    for (const size of deltaSizes) expect(size).toBeLessThan(64 * 1024);
  });

  it('restores every set to its own point in time, older sets after newer deltas and after compaction', async () => {
    for (const i of STEPS.keys()) {
      const copy = res.name(`r${i}`);
      const r = await restore(parseRestoreInputs(inputs({ source: `dir:${store}`, snapshot: `t${i}`, rename: `${app}=${copy}`, start: 'never' })), {
        log: quietLog,
        env,
      });
      expect(r.failed, `t${i}: ${JSON.stringify(r.containers.filter((c) => c.error))}`).toBe(0);
      res.image((await docker.getContainer(copy).inspect()).Config.Image);
      expect(await digests(copy), `t${i} (${STEPS[i].what})`).toEqual(expected[i]);
      await docker.getContainer(copy).remove({ force: true });
    }
  });

  it("ls shows each set's writable layer as its stack of layers gives it", async () => {
    const from = { spec: parseDestination(`dir:${store}`), credentials: {} };
    for (const i of STEPS.keys()) {
      const l = (await ls(from, `t${i}`, { container: app, path: '/app' }, { log: quietLog, env })) as PathListing;
      const shown = l.entries
        .filter((e) => e.type !== 'deleted' && e.type !== 'opaque')
        .map((e) => line(e.path, e.type, e.mode, e.uid, e.gid, e.size, e.linkname ?? '', e.mtime));
      expect(shown.sort(), `t${i} (${STEPS[i].what})`).toEqual(listed[i]);
    }
  });
});

describe('incremental writable layers (registry:)', () => {
  const res = new Resources(inject('runPrefix'), 'dreg');
  const reg = inject('registry');
  const app = res.name('app');
  const creds = { 'registry-username': reg.username, 'registry-password': reg.password };
  const auth = { authconfig: { username: reg.username, password: reg.password, serveraddress: reg.host } };

  beforeAll(async () => {
    await runContainer({ name: app, Image: inject('fixtureImage'), Cmd: ['sleep', '100000'] }, 'running');
  });

  afterAll(() => res.cleanup());

  async function pulled(ref: string, suffix: string): Promise<Record<string, string>> {
    const stream = await docker.pull(ref, auth);
    const events = await new Promise<Array<{ error?: string }>>((resolve, reject) =>
      docker.modem.followProgress(stream, (err, out) => (err ? reject(err) : resolve(out))),
    );
    res.image(ref);
    expect(events.filter((e) => e.error)).toEqual([]);
    const name = res.name(suffix);
    await runContainer({ name, Image: ref, Cmd: ['sleep', '100000'] }, 'created');
    return digests(name);
  }

  it('pushes a pullable image per set: base layers and a stack of deltas, each pulled with the files of its point in time', async () => {
    const location = `registry:${reg.host}/${res.prefix}`;
    const steps = [
      'mkdir -p /app/keep && dd if=/dev/urandom of=/app/big.bin bs=64k count=16 2>/dev/null && echo one > /app/keep/f && echo gone > /app/gone',
      'rm /app/gone /www/index.html && echo two >> /app/keep/f && ln -s keep /app/link',
      'mv /app/keep /app/kept && chmod 700 /app/big.bin',
    ];
    const expected: Array<Record<string, string>> = [];
    for (const [i, script] of steps.entries()) {
      await sh(app, script);
      expected.push(await digests(app));
      const r = await backup(parseBackupInputs(inputs({ containers: app, destination: location, tag: `r${i}`, ...creds })), { log: quietLog, env });
      expect(r.failed, JSON.stringify(r.containers)).toBe(0);
      // A delta stores its layer, its config and the index; the layers below are the earlier set's, not sent again.
      if (i > 0) expect(r.containers[0].blobs).toEqual({ written: 3, reused: 2 + i - 1 });
    }
    for (const [i, want] of expected.entries()) expect(await pulled(`${reg.host}/${res.prefix}/${app}:r${i}`, `pulled${i}`), `r${i}`).toEqual(want);
  });
});

describe("a container's base set, however many sets of other containers came since", () => {
  const res = new Resources(inject('runPrefix'), 'delta-base');
  const a = res.name('a');
  const b = res.name('b');
  afterAll(() => res.cleanup());

  it('is found beyond the HISTORY_DEPTH newest sets: the next backup of the container is a delta on it', async () => {
    const store = join(res.tempDir(), 'store');
    for (const n of [a, b]) await runContainer({ name: n, Image: inject('fixtureImage'), Cmd: ['sleep', '100000'] }, 'running');
    await sh(a, 'mkdir -p /app && echo one > /app/f');
    const take = async (container: string, tag: string) => {
      const r = await backup(parseBackupInputs(inputs({ containers: container, destination: `dir:${store}`, tag })), { log: quietLog, env });
      expect(r.failed, JSON.stringify(r.containers)).toBe(0);
      res.image(`container-snapshot/${container}:${tag}`);
      const { digest } = JSON.parse(readFileSync(join(store, 'sets', `${tag}.json`), 'utf8')) as { digest: string };
      return (JSON.parse(readFileSync(join(store, 'blobs', 'sha256', digest.replace('sha256:', '')), 'utf8')) as SnapshotSet).containers[0].image;
    };
    await take(a, 'a1');
    for (let i = 0; i <= HISTORY_DEPTH; i++) await take(b, `b${i}`);
    await sh(a, 'echo two > /app/g');
    const second = await take(a, 'a2');
    expect(second.deltas).toBe(1);
    const copy = res.name('a-copy');
    const r = await restore(parseRestoreInputs(inputs({ source: `dir:${store}`, snapshot: 'a2', rename: `${a}=${copy}`, start: 'always' })), {
      log: quietLog,
      env,
    });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    expect(await treeDigest(copy, '/app')).toEqual(await treeDigest(a, '/app'));
  });
});
