import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createServer, type Server } from 'node:net';
import { execFileSync } from 'node:child_process';
import { readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { backup, restore } from '../../src/commands.js';
import { parseBackupInputs, parseRestoreInputs } from '../../src/core/inputs.js';
import { Engine } from '../../src/engine/engine.js';
import { deltaTar, planDelta, upperDeltaTar } from '../../src/snapshot/layer-delta.js';
import { scanLayerOn } from '../../src/snapshot/layer-index.js';
import { upperDirOf } from '../../src/snapshot/layer-upper.js';
import type { SnapshotSet } from '../../src/snapshot/manifest.js';
import { Resources, docker, quietLog, runContainer, sh, treeDigest } from '../support/fixtures.js';
import { layerEntries } from '../support/layers.js';

const env = { ...process.env, DOCKER_CONFIG: '/nonexistent' };
const inputs = (values: Record<string, string>) => (name: string) => values[name] ?? '';

/** A long name (over the 100 bytes a ustar header holds: the engine's archive gives it in a PAX record). */
const LONG = `long-${'l'.repeat(120)}`;

/** Each path's type, mode, owner, size and content digest, as `find` in the container sees it (mtimes left out: a restore's own directories are made now). */
const LISTING = `cd / && busybox find /u /tmp /priv -xdev | busybox sort | while read -r p; do s=$(busybox stat -c '%F %a %u:%g %s' "$p"); c=$( [ -f "$p" ] && busybox md5sum < "$p" | busybox cut -c1-8 ); echo "$p $s $c"; done`;

/** What `LISTING` prints in a container (running or not: a stopped one is started for it, then stopped again). */
async function listing(container: string): Promise<string> {
  const c = docker.getContainer(container);
  const running = (await c.inspect()).State.Running;
  if (!running) await c.start();
  try {
    const exec = await c.exec({ Cmd: ['sh', '-c', LISTING], AttachStdout: true, AttachStderr: true });
    const stream = await exec.start({});
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    // The multiplexed stream's 8-byte frame headers, dropped.
    const all = Buffer.concat(chunks);
    const out: Buffer[] = [];
    for (let at = 0; at + 8 <= all.length;) {
      const n = all.readUInt32BE(at + 4);
      out.push(all.subarray(at + 8, at + 8 + n));
      at += 8 + n;
    }
    return Buffer.concat(out).toString('utf8');
  } finally {
    if (!running) await c.stop({ t: 1 });
  }
}

describe('delta layers of paths the engine archives unusually', () => {
  const res = new Resources(inject('runPrefix'), 'ldedge');
  const app = res.name('app');
  let store: string;
  let server: Server | undefined;
  const points = new Map<string, string>();

  const take = async (tag: string) => {
    const log = { ...quietLog, lines: [] as string[] };
    const r = await backup(parseBackupInputs(inputs({ containers: app, destination: `dir:${store}`, tag })), { log, env });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    res.image(`container-snapshot/${app}:${tag}`);
    points.set(tag, await listing(app));
    const { digest } = JSON.parse(readFileSync(join(store, 'sets', `${tag}.json`), 'utf8')) as { digest: string };
    return (JSON.parse(readFileSync(join(store, 'blobs', 'sha256', digest.replace('sha256:', '')), 'utf8')) as SnapshotSet).containers[0].image;
  };

  beforeAll(async () => {
    store = join(res.tempDir(), 'store');
    await runContainer({ name: app, Image: inject('fixtureImage'), Cmd: ['sleep', '100000'] }, 'running');
    await sh(
      app,
      `mkdir -p /u /priv/in && echo 1 > /u/é.txt && echo 1 > /u/${LONG} && echo 1 > /tmp/x && echo 1 > /priv/in/f && chmod 1777 /tmp && chown -R 1000:1000 /priv && chmod 700 /priv`,
    );
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await res.cleanup();
  });

  it('restores non-ASCII and long names where they are, the directories above a change with their own mode and owner, and takes no socket', async () => {
    const first = await take('t1');
    expect(first.deltas ?? 0).toBe(0);
    // Changed again: their directories' stats stay as they were.
    await sh(app, `echo 2 >> /u/é.txt && echo 2 >> /u/${LONG} && echo 2 >> /tmp/x && echo 2 >> /priv/in/f`);
    // A unix socket made in the layer (a service's /run/*.sock): the engine's archive leaves it out, as its commit does.
    const upper = ((await docker.getContainer(app).inspect()) as unknown as { GraphDriver: { Data: { UpperDir: string } } }).GraphDriver.Data.UpperDir;
    // Through a short symlink: the upper directory's path can be longer than a socket address holds (108 bytes).
    const short = join(res.tempDir(), 'u');
    symlinkSync(join(upper, 'u'), short);
    server = createServer();
    await new Promise<void>((resolve) => server!.listen(join(short, 'app.sock'), resolve));
    const second = await take('t2');
    expect(second.deltas).toBe(1);
    expect(points.get('t2')).toContain('/u/app.sock socket');
    for (const tag of ['t1', 't2']) {
      const copy = res.name(`r${tag}`);
      const r = await restore(parseRestoreInputs(inputs({ source: `dir:${store}`, snapshot: tag, rename: `${app}=${copy}`, start: 'never' })), {
        log: quietLog,
        env,
      });
      expect(r.failed, JSON.stringify(r.containers)).toBe(0);
      // The socket is not in the set (the commit leaves sockets out too).
      expect(await listing(copy), tag).toBe(points.get(tag)!.replace(/^\/u\/app\.sock .*\n/m, ''));
      // Nothing landed at / under a name's last component.
      expect((await treeDigest(copy, '/')).entries).toBeGreaterThan(0);
      await expect(treeDigest(copy, `/${LONG}`)).rejects.toThrow();
      await docker.getContainer(copy).remove({ force: true, v: true });
    }
    expect(points.get('t2')).toMatch(/^\/tmp directory 1777 0:0/m);
    expect(points.get('t2')).toMatch(/^\/priv directory 700 1000:1000/m);
  });
});

describe('a delta layer made on this host from the upper directory', () => {
  const res = new Resources(inject('runPrefix'), 'ldhost');
  const app = res.name('app');
  const engine = new Engine();
  let id: string;

  beforeAll(async () => {
    id = (await runContainer({ name: app, Image: inject('fixtureImage'), Cmd: ['sleep', '100000'] }, 'running')).id;
    await sh(
      app,
      `mkdir -p /app/d/sub /u && echo a > /app/a && chmod 4750 /app/a && chown 1000:1000 /app/a && echo s > /app/shadow && chmod 000 /app/shadow && ` +
        `ln -s ../etc/passwd /app/link && busybox mkfifo /app/fifo && busybox mknod /app/null c 1 3 && chmod 1777 /app/d/sub && ` +
        `echo x > /u/é.txt && echo y > /u/${LONG} && busybox dd if=/dev/urandom of=/app/big bs=64k count=4 2>/dev/null && rm /bin/sort && echo p >> /etc/passwd`,
    );
    // A file capability (CAP_NET_BIND_SERVICE), which the engine's archive keeps as a PAX record.
    const upper = (await upperDirOf(await engine.inspectContainer(id)))!;
    execFileSync('setfattr', ['-n', 'security.capability', '-v', '0sAQAAAgAEAAAAAAAAAAAAAAAAAAA=', join(upper.root, 'app', 'big')]);
  });

  afterAll(() => res.cleanup());

  it("holds, entry for entry, what the engine's archive of each path gives", async () => {
    await docker.getContainer(app).pause();
    try {
      const { index, upper } = await scanLayerOn(engine, id, 4000, undefined, { hostReads: true });
      expect(index?.source).toBe('upper');
      // Against an empty index: every path of the layer is read, whiteouts and parents included.
      const plan = planDelta({ entries: {} }, index!);
      expect(plan.reads).toEqual(expect.arrayContaining(['/app/a', '/app/big', '/app/null', `/u/${LONG}`, '/u/é.txt', '/etc/passwd']));
      const host = await upperDeltaTar(upper!, plan);
      if (typeof host === 'string') throw new Error(host);
      const mine = await layerEntries(host);
      const theirs = await layerEntries(deltaTar(engine, id, plan, new Set()));
      expect(mine).toEqual(theirs);
      expect(mine.find((e) => e.startsWith('app/big '))?.endsWith(' ')).toBe(false);
    } finally {
      await docker.getContainer(app).unpause();
    }
  });
});
