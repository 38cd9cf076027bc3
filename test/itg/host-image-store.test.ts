import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BackupOptions } from '../../src/core/options.js';
import { backup } from '../../src/commands.js';
import { parseBackupInputs } from '../../src/core/inputs.js';
import { DirDestination } from '../../src/destinations/dir/destination.js';
import { Engine } from '../../src/engine/engine.js';
import type { History } from '../../src/snapshot/backup-history.js';
import { chainIds, hostLayerTar, hostLayers, imageStoreRoot } from '../../src/snapshot/host-image-store.js';
import { LayerStore } from '../../src/snapshot/layer-store.js';
import type { Spool } from '../../src/snapshot/spool.js';
import { recordingLog } from '../support/log.js';
import { Resources, docker, runContainer, sh } from '../support/fixtures.js';

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** sha256 and length of a stream. */
async function digestOf(stream: NodeJS.ReadableStream): Promise<string> {
  const h = createHash('sha256');
  for await (const c of stream) h.update(c as Buffer);
  return `sha256:${h.digest('hex')}`;
}

describe("images read from the engine's own store on this host, in place of docker save", () => {
  const res = new Resources(inject('runPrefix'), 'hoststore');
  const app = res.name('app');
  const engine = new Engine();
  let imageId: string;
  let diffIds: string[];
  let root: string;

  beforeAll(async () => {
    await runContainer({ name: app, Image: inject('fixtureImage'), Cmd: ['sleep', '100000'] }, 'running');
    await sh(app, 'mkdir -p /app && head -c 300000 /dev/urandom > /app/r && echo hi > /app/t && ln -s t /app/l && rm -f /bin/sort');
    const repo = `${res.prefix}-img`;
    // Tracked by its tag: a reference without one would name :latest, which the commit does not make.
    res.image(`${repo}:one`);
    imageId = await engine.commit(app, { pause: true, repo, tag: 'one' });
    const image = await docker.getImage(imageId).inspect();
    diffIds = image.RootFS.Layers ?? [];
    // The tests run as root against an overlay2 engine on this host (scripts/testbed.sh, CI).
    const found = imageStoreRoot(image.GraphDriver as never);
    expect(found, 'an overlay2 engine whose store this host reads').toBeDefined();
    root = found!;
  });

  afterAll(() => res.cleanup());

  /** A LayerStore of a run to `dir:` (nothing but the commit path used). */
  function layerStore(dest: DirDestination) {
    const log = recordingLog();
    const ctx = { engine, destinations: [dest], log };
    const history = { layers: new Map(), volumes: new Map(), images: new Map(), chunks: undefined } as unknown as History;
    const store = new LayerStore(ctx, { excludeEnv: [] } as unknown as BackupOptions, history, 'zstd', undefined as unknown as Spool);
    return { store, log };
  }

  async function newDir(): Promise<DirDestination> {
    const dest = new DirDestination('dir:t', join(res.tempDir(), 'store'));
    await dest.check('write');
    return dest;
  }

  it("puts each layer together to its diff ID (the engine's chain IDs name its layer directories)", async () => {
    const layers = await hostLayers(root, diffIds);
    const chains = chainIds(diffIds);
    for (const [i, layer] of layers.entries()) {
      expect(layer.tarSplit).toContain(chains[i].slice(7));
      expect(await digestOf(hostLayerTar(layer))).toBe(diffIds[i]);
    }
  });

  it('stores a committed image from the store: every layer its diff ID, the config the image ID, as docker save does', async () => {
    const viaStore = layerStore(await newDir());
    const fromStore = await viaStore.store.store(app, { kind: 'commit', imageId, base: inject('fixtureImage') }, root);
    expect(viaStore.log.lines.join('\n')).toMatch(/from the engine's image store on this host/);
    expect(fromStore.image.layers.map((l) => l.contentDigest)).toEqual(diffIds);
    expect(fromStore.image.config.contentDigest).toBe(imageId);
    expect(fromStore.stats).toEqual({ written: diffIds.length, reused: 0 });
    // The commit added one layer to the image the container was made from.
    expect(fromStore.image.baseLayers).toBe(diffIds.length - 1);

    const viaSave = layerStore(await newDir());
    const fromSave = await viaSave.store.store(app, { kind: 'commit', imageId, base: inject('fixtureImage') });
    expect(viaSave.log.lines.join('\n')).not.toMatch(/image store on this host/);
    expect(fromSave.image.layers.map((l) => l.contentDigest)).toEqual(fromStore.image.layers.map((l) => l.contentDigest));
    expect(fromSave.image.config.digest).toBe(fromStore.image.config.digest);
  });

  it('a full backup reads the base image under the layer it made on this host from the store, not with docker save', async () => {
    const log = recordingLog();
    const env = { ...process.env, DOCKER_CONFIG: '/nonexistent' };
    const inputs = (values: Record<string, string>) => (name: string) => values[name] ?? '';
    const result = await backup(parseBackupInputs(inputs({ containers: app, destination: `dir:${join(res.tempDir(), 'store')}`, tag: 'full' })), { log, env });
    expect(result.failed).toBe(0);
    const lines = log.lines.join('\n');
    expect(lines).toMatch(/reading the writable layer from its upper directory on this host/);
    expect(lines).toMatch(/reading the base image \(\d+ layer\(s\)\) from the engine's image store on this host/);
    expect(lines).not.toMatch(/docker save instead/);
  });

  it('falls back to docker save, in one line, where the store is not there or a layer in it is not what its diff ID says', async () => {
    const missing = layerStore(await newDir());
    const result = await missing.store.store(app, { kind: 'commit', imageId, base: inject('fixtureImage') }, join(res.tempDir(), 'nothing'));
    expect(missing.log.lines.filter((l) => /read with docker save instead/.test(l))).toHaveLength(1);
    expect(result.image.layers.map((l) => l.contentDigest)).toEqual(diffIds);

    // A store whose last layer's files differ from what was recorded, at the same sizes: links to the
    // engine's own store but for that layer's diff directory, a copy with one file changed.
    const fake = res.tempDir();
    const [layer] = (await hostLayers(root, diffIds)).slice(-1);
    const chain = chainIds(diffIds).at(-1)!.slice(7);
    mkdirSync(join(fake, 'image', 'overlay2', 'layerdb', 'sha256', chain), { recursive: true });
    symlinkSync(join(root, 'image', 'overlay2', 'imagedb'), join(fake, 'image', 'overlay2', 'imagedb'));
    for (const c of chainIds(diffIds).slice(0, -1)) {
      symlinkSync(join(root, 'image', 'overlay2', 'layerdb', 'sha256', c.slice(7)), join(fake, 'image', 'overlay2', 'layerdb', 'sha256', c.slice(7)));
    }
    writeFileSync(join(fake, 'image', 'overlay2', 'layerdb', 'sha256', chain, 'cache-id'), 'copied');
    symlinkSync(layer.tarSplit, join(fake, 'image', 'overlay2', 'layerdb', 'sha256', chain, 'tar-split.json.gz'));
    mkdirSync(join(fake, 'overlay2', 'copied'), { recursive: true });
    execFileSync('cp', ['-a', layer.diff, join(fake, 'overlay2', 'copied', 'diff')]);
    const t = join(fake, 'overlay2', 'copied', 'diff', 'app', 't');
    writeFileSync(t, Buffer.from(readFileSync(t).toString().toUpperCase()));
    for (const c of chainIds(diffIds).slice(0, -1)) {
      const cacheId = readFileSync(join(root, 'image', 'overlay2', 'layerdb', 'sha256', c.slice(7), 'cache-id'), 'utf8');
      symlinkSync(join(root, 'overlay2', cacheId), join(fake, 'overlay2', cacheId));
    }
    const dest = await newDir();
    const spoiled = layerStore(dest);
    const again = await spoiled.store.store(app, { kind: 'commit', imageId, base: inject('fixtureImage') }, fake);
    expect(spoiled.log.lines.filter((l) => /read with docker save instead: .*content is sha256:/.test(l))).toHaveLength(1);
    expect(again.image.layers.map((l) => l.contentDigest)).toEqual(diffIds);
    // Nothing of the spoiled layer was kept: once every accepted blob is in place (the group commit a
    // set document waits for), each blob in the directory is one the image names, and nothing is left in .tmp/.
    await (dest as unknown as { blobs: { flush(): Promise<void> } }).blobs.flush();
    expect(readdirSync(join(dest.root, '.tmp'))).toEqual([]);
    const named = new Set([again.image.config, ...again.image.layers].map((b) => b.digest.slice(7)));
    const blobs = readdirSync(join(dest.root, 'blobs', 'sha256'));
    expect(blobs.filter((b) => !named.has(b))).toEqual([]);
    expect(sha256(readFileSync(join(dest.root, 'blobs', 'sha256', again.image.config.digest.slice(7))))).toBe(again.image.config.digest);
  });
});
