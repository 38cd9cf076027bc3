import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { entryOf, scanLayer, type LayerIndex } from '../../src/snapshot/layer-index.js';
import { trustedUpperDir } from '../../src/snapshot/layer-upper.js';
import { Resources, docker, runContainer, sh } from '../support/fixtures.js';

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
        'touch -d "2001-02-03 04:05:06" /app/big && echo v > /data/in-volume && echo w > /app/vol/in-volume && mkdir -p /data/sub && rm /bin/sort && echo x >> /etc/passwd',
    );
  });

  afterAll(() => res.cleanup());

  it('gives, paused, the index the engine gives: every path, mode, size and mtime', async () => {
    await docker.getContainer(app).pause();
    try {
      const ours = await scanLayer(engine, id, 4000, undefined, { hostReads: true });
      const theirs = await engineIndex(engine, id);
      expect(ours).toEqual(theirs);
      // /app/vol: a mount point the engine made in the layer, stat'ed by the engine (what is mounted there).
      expect(Object.keys(theirs.entries)).toEqual(expect.arrayContaining(['/app/a', '/app/fifo', '/app/link', '/app/sticky', '/bin/sort', '/app/vol']));
      // Where this host reads the engine's upper directory (the test bed: root, same host), it is the one used.
      if (process.getuid?.() === 0 && (await docker.info()).Driver === 'overlay2') {
        const changes = await engine.containerChanges(id);
        expect(
          await trustedUpperDir(
            engine,
            id,
            changes.filter((c) => c.Kind !== 2).map((c) => c.Path),
          ),
        ).toBeDefined();
      }
    } finally {
      await docker.getContainer(app).unpause();
    }
  });
});
