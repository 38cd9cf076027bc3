import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { backup } from '../../src/commands.js';
import { parseBackupInputs } from '../../src/core/inputs.js';
import { Engine } from '../../src/engine/engine.js';
import type { SnapshotSet } from '../../src/snapshot/manifest.js';
import { MAX_DELTA_READS, MAX_INDEXED_PATHS } from '../../src/snapshot/writable-layer.js';
import { entryOf, scanLayer, type LayerEntry, type LayerIndex } from '../../src/snapshot/layer-index.js';
import { trustedUpperDir } from '../../src/snapshot/layer-upper.js';
import { Resources, docker, quietLog, runContainer, sh } from '../support/fixtures.js';
import { settle, settledEnv } from '../support/commands.js';

/** The index as the engine alone gives it: a stat per path (HEAD /containers/{id}/archive). */
async function engineIndex(engine: Engine, id: string): Promise<LayerIndex> {
  const entries: LayerIndex['entries'] = {};
  for (const c of await engine.containerChanges(id)) {
    if (c.Kind === 2) entries[c.Path] = { mode: 0, size: 0, mtime: '', whiteout: true };
    else {
      const stat = await engine.statPath(id, c.Path);
      if (stat) entries[c.Path] = entryOf(stat);
    }
  }
  return { entries: Object.fromEntries(Object.entries(entries).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) };
}

describe("the writable layer's index read on this host", () => {
  const res = new Resources(inject('runPrefix'), 'upper');
  const app = res.name('app');
  const engine = new Engine();
  let id: string;

  beforeAll(async () => {
    const c = await runContainer(
      {
        name: app,
        Image: inject('fixtureImage'),
        Cmd: ['sleep', '100000'],
        HostConfig: { Binds: [`${res.volume('data')}:/data`, `${res.volume('inner')}:/app/vol`] },
      },
      'running',
    );
    id = c.id;
    await sh(
      app,
      'mkdir -p /app/d/sub /app/sticky /app/sg && echo a > /app/a && dd if=/dev/urandom of=/app/big bs=64k count=3 2>/dev/null && ' +
        'ln -s a /app/link && mkfifo /app/fifo && chmod 4755 /app/a && chmod 1777 /app/sticky && chmod 2750 /app/sg && ' +
        'touch -d "2001-02-03 04:05:06" /app/big && echo v > /data/in-volume && echo w > /app/vol/in-volume && mkdir -p /data/sub && rm /bin/sort && echo x >> /etc/passwd && chmod 755 /bin/busybox',
    );
  });

  afterAll(() => res.cleanup());

  it("gives, paused, what the engine gives for every path the engine lists, and the upper directory's other paths as the engine stats them", async () => {
    await docker.getContainer(app).pause();
    try {
      const ours = await scanLayer(engine, id, 4000, undefined, { hostReads: true });
      const theirs = await engineIndex(engine, id);
      // The tests run as root against an overlay2 engine on this host (scripts/testbed.sh, CI): the index is the upper directory's.
      expect(process.getuid?.() === 0 && (await docker.info()).Driver === 'overlay2', 'root and overlay2 on this host').toBe(true);
      expect(ours!.source).toBe('upper');
      // The host's stat adds the ctime and the inode, which the engine's does not give (compared by the next backup where both sides have them), and the racy mark (files just written).
      const plain = (e: LayerEntry | undefined) => {
        if (!e) return e;
        const { ctimeNs: _ctime, ino: _ino, opaque: _opaque, racy: _racy, ...rest } = e;
        return rest;
      };
      for (const [path, e] of Object.entries(theirs.entries)) expect(plain(ours!.entries[path]), path).toEqual(e);
      // More than the engine may list: whatever the upper directory holds (here the copy-up of a file whose stat did not change), as the engine stats it.
      expect(ours!.entries['/bin/busybox']).toBeDefined();
      for (const path of Object.keys(ours!.entries).filter((p) => !(p in theirs.entries)))
        expect(plain(ours!.entries[path]), path).toEqual(entryOf((await engine.statPath(id, path))!));
      // /app/vol: a mount point the engine made in the layer, stat'ed by the engine (what is mounted there).
      expect(Object.keys(theirs.entries)).toEqual(expect.arrayContaining(['/app/a', '/app/fifo', '/app/link', '/app/sticky', '/bin/sort', '/app/vol']));
      expect(ours!.entries['/bin/sort'].whiteout).toBe(true);
      expect(ours!.entries['/app/vol'].ctimeNs).toBeUndefined();
      expect(ours!.entries['/app/vol'].ino).toBeUndefined();
      expect(ours!.entries['/app/a'].ctimeNs).toBeDefined();
      const upperRoot = ((await docker.getContainer(id).inspect()) as unknown as { GraphDriver: { Data: { UpperDir: string } } }).GraphDriver.Data.UpperDir;
      expect(ours!.entries['/app/a'].ino).toBe(String(statSync(join(upperRoot, 'app/a'), { bigint: true }).ino));
      // The engine's list is still read through the upper directory where the walk is not used.
      const changes = await engine.containerChanges(id);
      expect(
        await trustedUpperDir(
          engine,
          id,
          changes.filter((c) => c.Kind !== 2).map((c) => c.Path),
        ),
      ).toBeDefined();
    } finally {
      await docker.getContainer(app).unpause();
    }
  });
});

/** Where this host reads the engine's upper directories (the test bed: root, same host, overlay2). */
async function hostReadsLayers(): Promise<boolean> {
  return process.getuid?.() === 0 && (await docker.info()).Driver === 'overlay2';
}

describe('a writable layer of more paths than the engine is asked to stat', () => {
  const res = new Resources(inject('runPrefix'), 'upperbig');
  const app = res.name('app');
  const engine = new Engine();
  const inputs = (values: Record<string, string>) => (name: string) => values[name] ?? '';
  let id: string;
  let store: string;
  const files = MAX_INDEXED_PATHS + 500;

  beforeAll(async () => {
    store = join(res.tempDir(), 'store');
    id = (await runContainer({ name: app, Image: inject('fixtureImage'), Cmd: ['sleep', '100000'] }, 'running')).id;
    // 45 directories of 100 files: more paths than MAX_INDEXED_PATHS.
    await sh(app, `for d in $(seq 1 ${files / 100}); do mkdir -p /many/d$d && (cd /many/d$d && for f in $(seq 1 100); do echo $d.$f > f$f; done); done`);
  });

  afterAll(() => res.cleanup());

  it("is indexed on the host: every path, none stat'ed by the engine but the probes", async () => {
    await docker.getContainer(app).pause();
    try {
      expect(await scanLayer(engine, id, MAX_INDEXED_PATHS, undefined, { hostReads: false })).toBeUndefined();
      const ours = await scanLayer(engine, id, MAX_INDEXED_PATHS, undefined, { hostReads: true });
      if (!(await hostReadsLayers())) return expect(ours).toBeUndefined();
      expect(Object.keys(ours!.entries).filter((p) => p.startsWith('/many/')).length).toBe(files + files / 100);
      // The cap on all paths still holds.
      expect(await scanLayer(engine, id, MAX_INDEXED_PATHS, undefined, { hostReads: true, maxTotal: files })).toBeUndefined();
    } finally {
      await docker.getContainer(app).unpause();
    }
  });

  it('gets a delta layer at the next backup, and the whole layer again when more than MAX_DELTA_READS paths changed', async () => {
    const run = async (tag: string) => {
      const r = await backup(parseBackupInputs(inputs({ containers: app, destination: `dir:${store}`, tag }), undefined, settledEnv), {
        log: quietLog,
        env: settledEnv,
      });
      expect(r.failed, JSON.stringify(r.containers)).toBe(0);
      const { digest } = JSON.parse(readFileSync(join(store, 'sets', `${tag}.json`), 'utf8')) as { digest: string };
      return (JSON.parse(readFileSync(join(store, 'blobs', 'sha256', digest.replace('sha256:', '')), 'utf8')) as SnapshotSet).containers[0].image;
    };
    // The files made before settled: else taken again as racy by the next backup (LayerEntry.racy).
    await settle();
    const first = await run('t0');
    if (!(await hostReadsLayers())) return expect(first.layerIndex).toBeUndefined();
    expect(first.layerIndex).toBeDefined();
    await sh(app, 'echo changed > /many/d1/f1 && echo new > /many/new');
    const second = await run('t1');
    expect(second.deltas).toBe(1);
    expect(second.layers.at(-1)!.contentSize).toBeLessThan(64 * 1024);
    // Touch more files than a delta reads one by one: the layer is committed whole.
    await sh(app, `touch -d '2002-01-01' $(find /many -type f | head -n ${MAX_DELTA_READS + 1})`);
    const third = await run('t2');
    expect(third.deltas ?? 0).toBe(0);
    expect(third.layerIndex).toBeDefined();
  });
});
