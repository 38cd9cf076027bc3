import Docker from 'dockerode';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { list, restore } from '../../src/commands.js';
import { parseDestination } from '../../src/core/destination-input.js';
import { HISTORY_DEPTH } from '../../src/snapshot/backup-history.js';
import type { SnapshotSet } from '../../src/snapshot/manifest.js';
import { parseRestoreInputs } from '../../src/core/inputs.js';
import { Resources, docker, quietLog, runContainer, sh } from '../support/fixtures.js';
import { backUp, inputs, testEnv } from '../support/commands.js';
import { recordingLog } from '../support/log.js';
import { apiAtLeast, buildFixtureImage, engineLabel } from '../support/engine.js';

/**
 * A set restored onto the other engine of the test bed: on the current engine's tier, a set made
 * there goes onto Engine 20.10 (API 1.41), which drops fields it does not know at create; on
 * 20.10's tier, a set made there goes onto the current engine, which keeps everything.
 */
const engine = inject('engine');
const label = engineLabel(engine);
const newer = apiAtLeast(engine, '1.45');
const OLD_HOST = 'unix:///var/run/docker.sock';
const other = newer ? OLD_HOST : (process.env.ENGINE_CURRENT_HOST ?? 'unix:///run/docker-current.sock');
const onOther = new Docker({ socketPath: other.replace(/^unix:\/\//, '') });

/** What a test made on the other engine, by name, and its removal there (the tier's Resources see only the tier's engine). */
function madeOnOther() {
  const made = { containers: [] as string[], volumes: [] as string[], images: [] as string[] };
  const remove = async () => {
    for (const c of made.containers)
      await onOther
        .getContainer(c)
        .remove({ force: true, v: true })
        .catch(() => undefined);
    for (const v of made.volumes)
      await onOther
        .getVolume(v)
        .remove({ force: true })
        .catch(() => undefined);
    for (const i of made.images)
      await onOther
        .getImage(i)
        .remove({ force: true })
        .catch(() => undefined);
  };
  return { ...made, remove };
}

/** The set document of `tag` in a dir: store (`dir:PATH`). */
async function setDocument(store: string, tag: string): Promise<SnapshotSet> {
  const root = store.slice('dir:'.length);
  const { digest } = JSON.parse(readFileSync(join(root, 'sets', `${tag}.json`), 'utf8')) as { digest: string };
  return JSON.parse(readFileSync(join(root, 'blobs', 'sha256', digest.slice('sha256:'.length)), 'utf8')) as SnapshotSet;
}

describe(`${label}: a set restored onto ${newer ? 'Engine 20.10' : 'the current engine'}`, () => {
  const res = new Resources(inject('runPrefix'), 'xver');
  const made = madeOnOther();
  afterAll(async () => {
    await made.remove();
    await res.cleanup();
  });

  /** A running container with `volume` (holding sub/f) mounted at /data at its subpath `sub`, and an annotation. */
  async function withSubpath(suffix: string, subpath: boolean): Promise<{ name: string; volume: string }> {
    const name = res.name(suffix);
    const volume = res.volume(`${suffix}-v`);
    await docker.createVolume({ Name: volume });
    const filler = res.name(`${suffix}-fill`);
    const f = await runContainer(
      {
        name: filler,
        Image: inject('fixtureImage'),
        Cmd: ['sh', '-c', 'mkdir -p /v/sub && echo in-sub > /v/sub/f && echo at-top > /v/top'],
        HostConfig: { Binds: [`${volume}:/v`] },
      },
      'exited',
    );
    await f.remove();
    await runContainer(
      {
        name,
        Image: inject('fixtureImage'),
        Cmd: ['sleep', '100000'],
        HostConfig: {
          Mounts: [{ Type: 'volume', Source: volume, Target: '/data', ...(subpath ? { VolumeOptions: { Subpath: 'sub' } } : {}) }],
          Annotations: { 'org.example.note': 'kept' },
        } as Docker.HostConfig,
      },
      'running',
    );
    return { name, volume };
  }

  const restoreOnOther = (name: string, volume: string, tag: string, log = recordingLog()) => {
    const copy = `${name}-copy`;
    const copyVolume = `${volume}-copy`;
    made.containers.push(copy);
    made.volumes.push(copyVolume);
    made.images.push(`container-snapshot/${name}:${tag}`);
    const result = restore(
      parseRestoreInputs(
        inputs({ source: `dir:${store}`, snapshot: tag, rename: `${name}=${copy},${volume}=${copyVolume}`, 'docker-host': other }),
        undefined,
        {},
      ),
      { log, env: testEnv },
    );
    return { copy, copyVolume, log, result };
  };
  let store = '';

  if (newer)
    it('refuses, before any change, a container that mounts a volume at a subpath (20.10 would mount the whole volume); warns of annotations it drops', async () => {
      store = res.tempDir();
      const a = await withSubpath('sub', true);
      await backUp({ containers: a.name, destination: `dir:${store}`, tag: 'x1' });
      res.image(`container-snapshot/${a.name}:x1`);
      const refused = restoreOnOther(a.name, a.volume, 'x1');
      await expect(refused.result).rejects.toThrow(
        new RegExp(
          `nothing was changed: ${a.name}: Engine 20\\.10\\.\\S+ \\(API 1\\.41\\) drops Mounts\\[/data\\]\\.VolumeOptions\\.Subpath \\(API 1\\.45, Engine 26\\.0 and later keep it\\): the container would see the whole volume ${a.volume} at /data, not its subpath sub`,
        ),
      );
      await expect(onOther.getContainer(refused.copy).inspect()).rejects.toThrow(/no such container/i);
      await expect(onOther.getVolume(refused.copyVolume).inspect()).rejects.toThrow(/no such volume|not found/i);

      // Annotations alone: restored, with a warning naming what Engine 20.10 dropped.
      const b = await withSubpath('ann', false);
      await backUp({ containers: b.name, destination: `dir:${store}`, tag: 'x2' });
      res.image(`container-snapshot/${b.name}:x2`);
      const warned = restoreOnOther(b.name, b.volume, 'x2');
      const r = await warned.result;
      expect(r.failed, JSON.stringify(r.containers)).toBe(0);
      expect(warned.log.lines.filter((l) => l.includes('drops'))).toEqual([
        `warning: ${b.name}: Engine ${(await onOther.version()).Version} (API 1.41) drops HostConfig.Annotations (API 1.43, Engine 24.0 and later keep it): the restored container has no annotations`,
      ]);
      expect((await onOther.getContainer(warned.copy).inspect()).Mounts.find((m) => m.Destination === '/data')?.Name).toBe(warned.copyVolume);
    });
  else
    it('restores with no warning of dropped configuration: the set holds what 20.10 kept (no subpath, no annotations), which the current engine keeps', async () => {
      store = res.tempDir();
      const a = await withSubpath('sub', true);
      await backUp({ containers: a.name, destination: `dir:${store}`, tag: 'x1' });
      res.image(`container-snapshot/${a.name}:x1`);
      const done = restoreOnOther(a.name, a.volume, 'x1');
      const r = await done.result;
      expect(r.failed, JSON.stringify(r.containers)).toBe(0);
      expect(done.log.lines.filter((l) => l.includes('drops'))).toEqual([]);
      // 20.10 mounted the whole volume: so does the restored container.
      const mount = (await onOther.getContainer(done.copy).inspect()).HostConfig.Mounts?.find((m) => m.Target === '/data') as
        { VolumeOptions?: { Subpath?: string } } | undefined;
      expect(mount?.VolumeOptions?.Subpath).toBeUndefined();
    });
});

describe(`${label}: one container name on two engines, backed up to one store`, () => {
  const res = new Resources(inject('runPrefix'), 'xhost');
  const name = res.name('db');
  const made = madeOnOther();
  made.containers.push(name);
  afterAll(async () => {
    await made.remove();
    await res.cleanup();
  });

  it("keep counts each engine's sets on their own, and a backup finds its own engine's last set as the base of its delta", async () => {
    const store = `dir:${res.tempDir()}`;
    const image = `${res.prefix}-fixture:busybox`;
    made.images.push(image);
    await buildFixtureImage(image, '', onOther);
    await runContainer({ name, Image: inject('fixtureImage'), Cmd: ['sh', '-c', 'mkdir -p /app && echo here > /app/f && exec sleep 100000'] }, 'running');
    await runContainer({ name, Image: image, Cmd: ['sh', '-c', 'mkdir -p /app && echo there > /app/f && exec sleep 100000'] }, 'running', onOther);
    const take = async (tag: string, extra: Record<string, string> = {}) => {
      const r = await backUp({ containers: name, destination: store, tag, ...extra });
      if (extra['docker-host']) made.images.push(`container-snapshot/${name}:${tag}`);
      else res.image(`container-snapshot/${name}:${tag}`);
      return r;
    };
    await take('here-1');
    // The other engine's container of the same name, backed up more often than HISTORY_DEPTH sets, with keep last=1.
    let last;
    for (let i = 0; i <= HISTORY_DEPTH; i++) last = await take(`there-${i}`, { 'docker-host': other, keep: 'last=1' });
    expect(last!.pruned?.[0].kept.map((k) => k.tag)).toEqual([`there-${HISTORY_DEPTH}`, 'here-1']);
    await sh(name, 'echo more > /app/g');
    await take('here-2');
    const sets = await list(parseDestination(store), {}, { log: quietLog, env: testEnv });
    expect(sets.map((s) => s.tag).sort()).toEqual(['here-1', 'here-2', `there-${HISTORY_DEPTH}`]);
    const here2 = await setDocument(store, 'here-2');
    expect(here2.containers[0].image.deltas).toBe(1);
  });
});
