import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { backup, restore } from '../../src/commands.js';
import { parseBackupInputs, parseRestoreInputs } from '../../src/core/inputs.js';
import type { SnapshotSet } from '../../src/snapshot/manifest.js';
import { Resources, docker, quietLog, runContainer, sh, treeDigest } from '../support/fixtures.js';
import { settle, settledEnv } from '../support/commands.js';

const env = { ...process.env, DOCKER_CONFIG: '/nonexistent' };
const inputs = (values: Record<string, string>) => (name: string) => values[name] ?? '';

/** The paths compared after a restore: a directory of the image made again, and one the layer added. */
const PATHS = ['/opt', '/app'];

async function digests(container: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const p of PATHS) out[p] = (await treeDigest(container, p)).digest;
  return out;
}

describe('the writable layer indexed from its upper directory', () => {
  const res = new Resources(inject('runPrefix'), 'lwalk');
  const app = res.name('app');
  let store: string;
  const points = new Map<string, Record<string, string>>();

  /** One backup of the app into the store; its log lines and its image record. */
  const take = async (tag: string, extra: Record<string, string> = {}) => {
    const log = { ...quietLog, lines: [] as string[] };
    // Each change settled before its set (else taken again as racy by the next: LayerEntry.racy).
    await settle();
    const r = await backup(parseBackupInputs(inputs({ containers: app, destination: `dir:${store}`, tag, ...extra }), undefined, settledEnv), {
      log,
      env: settledEnv,
    });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    res.image(`container-snapshot/${app}:${tag}`);
    points.set(tag, await digests(app));
    const { digest } = JSON.parse(readFileSync(join(store, 'sets', `${tag}.json`), 'utf8')) as { digest: string };
    const set = JSON.parse(readFileSync(join(store, 'blobs', 'sha256', digest.replace('sha256:', '')), 'utf8')) as SnapshotSet;
    return { lines: log.lines, image: set.containers[0].image };
  };

  /** Restores each set under a new name: every one equal to its own point in time. */
  const restoresEach = async (tags: string[]) => {
    for (const tag of tags) {
      const copy = res.name(`r${tag}`);
      const r = await restore(parseRestoreInputs(inputs({ source: `dir:${store}`, snapshot: tag, rename: `${app}=${copy}`, start: 'never' })), {
        log: quietLog,
        env,
      });
      expect(r.failed, JSON.stringify(r.containers)).toBe(0);
      expect(await digests(copy), tag).toEqual(points.get(tag));
      await docker.getContainer(copy).remove({ force: true, v: true });
    }
  };

  beforeAll(async () => {
    store = join(res.tempDir(), 'store');
    // An image whose /opt/d holds two files: the container's layer then removes and makes the directory again (opaque).
    const maker = res.name('maker');
    await runContainer({ name: maker, Image: inject('fixtureImage'), Cmd: ['sleep', '100000'] }, 'running');
    await sh(maker, 'mkdir -p /opt/d/sub && echo 1 > /opt/d/f1 && echo 2 > /opt/d/sub/f2');
    const base = res.image(`${res.name('base')}:x`);
    await docker.getContainer(maker).commit({ repo: base.split(':')[0], tag: 'x', pause: false });
    await runContainer({ name: app, Image: base, Cmd: ['sleep', '100000'] }, 'running');
    await sh(app, 'mkdir -p /app && echo a > /app/a');
  });

  afterAll(() => res.cleanup());

  it('takes a directory removed and made again as opaque in the next delta; each set restores its own point in time', async () => {
    const first = await take('t1');
    expect(first.lines.some((l) => l.includes('reading the writable layer from its upper directory'))).toBe(true);
    // The image's /opt/d is gone, a new one holds one file: nothing of the image's may come back.
    await sh(app, 'rm -rf /opt/d && mkdir /opt/d && echo g > /opt/d/g');
    const second = await take('t2');
    expect(second.image.deltas).toBe(1);
    expect(second.lines.filter((l) => /1 directory made again \(opaque\)/.test(l))).toHaveLength(1);
    // Opaque already: the next delta reads what changed only.
    await sh(app, 'echo h > /opt/d/h');
    const third = await take('t3');
    expect(third.image.deltas).toBe(2);
    expect(third.lines.filter((l) => /since the last snapshot: 2 path\(s\), 0 removed$/.test(l))).toHaveLength(1);
    await restoresEach(['t1', 't2', 't3']);
    // And the image's files really are gone from the last point in time (not only equal digests of two empty trees).
    expect((await treeDigest(app, '/opt/d')).entries).toBe(3);
  });

  it("takes the whole layer again, saying so in one line, when the engine's list follows an index of the upper directory", async () => {
    // Not held (pause: false): the host may not read the upper directory of a running container, so the engine lists the paths.
    await sh(app, 'echo b > /app/b');
    const unheld = await take('t4', { pause: 'false' });
    expect(unheld.image.deltas ?? 0).toBe(0);
    expect(
      unheld.lines.filter((l) =>
        l.includes("the last snapshot's index was made from the upper directory on this host, this one by the engine: the whole layer is taken again"),
      ),
    ).toHaveLength(1);
    // The engine's index before, the upper directory's now: a delta on it.
    await sh(app, 'echo c > /app/c && rm -rf /opt/d && mkdir /opt/d');
    const held = await take('t5');
    expect(held.image.deltas).toBe(1);
    await restoresEach(['t4', 't5']);
  });
});
