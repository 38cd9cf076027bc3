import { afterAll, describe, expect, inject, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { backup, restore } from '../../src/commands.js';
import { parseBackupInputs, parseRestoreInputs } from '../../src/core/inputs.js';
import { Engine } from '../../src/engine/engine.js';
import { scanLayerOn } from '../../src/snapshot/layer-index.js';
import type { SnapshotSet } from '../../src/snapshot/manifest.js';
import { Resources, docker, quietLog, runContainer, sh, treeDigest } from '../support/fixtures.js';

const env = { ...process.env, DOCKER_CONFIG: '/nonexistent' };
const inputs = (values: Record<string, string>) => (name: string) => values[name] ?? '';

/**
 * What the engine does at each archive request on a running container (moby SwitchRoot:
 * `os.MkdirTemp(root, ".pivot_root")`, then removed), done here without pause in the container's
 * root from this host: a directory `/.pivot_rootN` there about half of the time, each for a moment.
 */
const CHURN = `const fs = require('node:fs');
for (;;) { const p = process.argv[1] + '/.pivot_root' + Math.floor(Math.random() * 4e9); fs.mkdirSync(p); fs.rmdirSync(p); }`;

describe("the engine's own directories of a moment in a container's root", () => {
  const res = new Resources(inject('runPrefix'), 'scratch');
  let churn: ChildProcess | undefined;
  afterAll(async () => {
    churn?.kill('SIGKILL');
    await res.cleanup();
  });

  it('/.pivot_rootN made and removed while the layer is listed and read: every backup (full, then deltas) succeeds, none stores it, each restores its point in time', async () => {
    const name = res.name('c');
    const volume = res.volume('v');
    const store = join(res.tempDir(), 'store');
    await runContainer({ name, Image: inject('fixtureImage'), Cmd: ['sleep', '100000'], HostConfig: { Binds: [`${volume}:/v`] } }, 'running');
    const info = (await docker.getContainer(name).inspect()) as unknown as { Id: string; GraphDriver: { Data: { MergedDir: string } } };
    churn = spawn(process.execPath, ['-e', CHURN, info.GraphDriver.Data.MergedDir], { stdio: 'ignore' });

    const engine = new Engine();
    await sh(name, 'mkdir -p /app && echo 0 > /app/zero');
    // The engine's own list names them, or fails on one gone while it was listed (Engine 20.10 and 26.1): the race is on.
    let met = 0;
    for (let i = 0; i < 2000 && met < 1; i++) {
      const listed = await engine.containerChanges(info.Id).then(
        (list) => list.map((c) => c.Path).join(' '),
        (err: Error) => err.message,
      );
      if (listed.includes('/.pivot_root')) met++;
    }
    expect(met).toBe(1);
    // The index, made again and again while they come and go: never names one, and never fails on one.
    for (let i = 0; i < 300; i++) {
      const { index } = await scanLayerOn(engine, info.Id, 1000);
      expect(Object.keys(index!.entries).filter((p) => p.includes('pivot_root'))).toEqual([]);
      expect(index!.entries['/app/zero']).toBeDefined();
    }

    const changes = ['echo alpha > /app/a && echo one > /v/one', 'echo beta >> /app/a && rm /app/zero', 'mkdir /app/d && echo y > /app/d/y'];
    const states: string[] = [];
    for (const [i, change] of changes.entries()) {
      await sh(name, change);
      const tag = `s${i + 1}`;
      const log = { ...quietLog, lines: [] as string[] };
      const r = await backup(parseBackupInputs(inputs({ containers: name, destination: `dir:${store}`, tag })), { log, env });
      expect(r.failed, JSON.stringify(r.containers)).toBe(0);
      res.image(`container-snapshot/${name}:${tag}`);
      states.push((await treeDigest(name, '/app')).digest);
      // Each a delta on the one before: the walk of the upper directory on this host was not given up for one.
      const { digest } = JSON.parse(readFileSync(join(store, 'sets', `${tag}.json`), 'utf8')) as { digest: string };
      const set = JSON.parse(readFileSync(join(store, 'blobs', 'sha256', digest.replace('sha256:', '')), 'utf8')) as SnapshotSet;
      const layerLines = log.lines.filter((l) => /layer/.test(l)).join('\n');
      expect(set.containers[0].image.deltas ?? 0, layerLines).toBe(i);
      // Read on this host each time: neither the engine's commit nor its archive stood in for a walk given up.
      expect(layerLines).not.toMatch(/through the engine|taken again|committing the writable layer/);
    }
    // The loop ran all along (it stops only when killed).
    expect(churn.exitCode).toBeNull();
    churn.kill('SIGKILL');

    for (const [i, tag] of ['s1', 's2', 's3'].entries()) {
      const copy = res.name(`r${tag}`);
      const r = await restore(
        parseRestoreInputs(inputs({ source: `dir:${store}`, snapshot: tag, rename: `${name}=${copy},${volume}=${res.volume(`v${tag}`)}` })),
        { log: quietLog, env },
      );
      expect(r.failed, JSON.stringify(r.containers)).toBe(0);
      res.image(`container-snapshot/${name}:${tag}`);
      expect((await treeDigest(copy, '/app')).digest, tag).toBe(states[i]);
      // Not one of the engine's directories came back with the set.
      await sh(copy, '! ls -a / | grep -q pivot_root');
    }
  });
});
