import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { join } from 'node:path';
import { backup } from '../../src/commands.js';
import { parseBackupInputs } from '../../src/core/inputs.js';
import { markersInSnapshot } from '../support/restored.js';
import { Resources, commitsOf, docker, quietLog, runContainer, treeDigest, waitFor } from '../support/fixtures.js';

describe('pre-command and post-command run inside each container around its snapshot', () => {
  const res = new Resources(inject('runPrefix'), 'hook');
  let store: string;
  const env = { ...process.env, DOCKER_CONFIG: '/nonexistent' };
  const run = (inputs: Record<string, string>) =>
    backup(
      parseBackupInputs((n) => inputs[n] ?? ''),
      { log: quietLog, env },
    );
  const has = (container: string, path: string) =>
    treeDigest(container, path).then(
      () => true,
      () => false,
    );

  async function app(suffix: string, labels: Record<string, string> = {}) {
    const name = res.name(suffix);
    const volume = res.volume(`${suffix}-data`);
    await runContainer(
      {
        name,
        Image: inject('fixtureImage'),
        Labels: labels,
        Cmd: ['sh', '-c', 'touch /data/ready; exec sleep 100000'],
        HostConfig: { Binds: [`${volume}:/data`] },
      },
      'running',
    );
    await waitFor(() => has(name, '/data/ready'));
    return { name, volume, suffix };
  }

  beforeAll(() => {
    store = join(res.tempDir(), 'store');
  });
  afterAll(() => res.cleanup());

  it('runs the pre-command before the snapshot and the post-command after, with their output in the log', async () => {
    const c = await app('both');
    quietLog.lines.length = 0;
    const result = await run({
      containers: c.name,
      destination: `dir:${store}`,
      tag: 'both',
      'pre-command': 'echo flushing; echo pre > /data/pre',
      'post-command': 'echo post > /data/post',
    });
    expect(result.failed, JSON.stringify(result.containers)).toBe(0);
    expect(quietLog.lines.join('\n')).toContain(`${c.name} pre-command> flushing`);
    expect({ pre: await has(c.name, '/data/pre'), post: await has(c.name, '/data/post') }).toEqual({ pre: true, post: true });
    expect(await markersInSnapshot(res, store, 'both', c, ['pre', 'post'])).toEqual({ pre: true, post: false });
  });

  it('labels give a container its own commands; an empty label turns the input off', async () => {
    const own = await app('own', { 'container-snapshot.pre': 'echo own > /data/own' });
    const none = await app('none', { 'container-snapshot.pre': '' });
    const result = await run({ containers: `${own.name},${none.name}`, destination: `dir:${store}`, tag: 'labels', 'pre-command': 'echo input > /data/input' });
    expect(result.failed, JSON.stringify(result.containers)).toBe(0);
    expect(await markersInSnapshot(res, store, 'labels', own, ['own', 'input'])).toEqual({ own: true, input: false });
    expect(await markersInSnapshot(res, store, 'labels', none, ['own', 'input'])).toEqual({ own: false, input: false });
  });

  it('a failing pre-command fails that container only; its post-command still runs; nothing is left paused or committed', async () => {
    const bad = await app('bad', { 'container-snapshot.pre': 'echo cannot flush >&2; exit 3' });
    const good = await app('good');
    const result = await run({ containers: `${bad.name},${good.name}`, destination: `dir:${store}`, tag: 'failing', 'post-command': 'echo post > /data/post' });
    expect(result.failed).toBe(1);
    const failed = result.containers.find((o) => o.name === bad.name);
    expect(failed?.error).toMatch(/^pre-command exited with 3 after \d+ ms: echo cannot flush >&2; exit 3$/);
    expect(result.containers.find((o) => o.name === good.name)?.status).toBe('ok');
    expect(await has(bad.name, '/data/post')).toBe(true);
    const info = await docker.getContainer(bad.name).inspect();
    expect({ running: info.State.Running, paused: info.State.Paused }).toEqual({ running: true, paused: false });
    expect(await commitsOf([info.Id])).toEqual([]);
  });

  it('a pre-command that outlives hook-timeout fails its container, clearly', async () => {
    const slow = await app('slow');
    const started = Date.now();
    const result = await run({ containers: slow.name, destination: `dir:${store}`, tag: 'slow', 'pre-command': 'sleep 30', 'hook-timeout': '1' });
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(result.containers[0].error).toBe('pre-command did not finish within hook-timeout 1 s (it may still run in the container): sleep 30');
    expect((await docker.getContainer(slow.name).inspect()).State.Paused).toBe(false);
  });

  it('a dry run names the pre- and post-command the run would run, and runs neither', async () => {
    const c = await app('dry', { 'container-snapshot.post': 'echo own-post > /data/post' });
    quietLog.lines.length = 0;
    const result = await run({
      containers: c.name,
      destination: `dir:${join(res.tempDir(), 'dry')}`,
      tag: 'dry',
      'dry-run': 'true',
      'pre-command': 'echo pre > /data/pre',
    });
    expect(result.containers.map((o) => o.status)).toEqual(['planned']);
    const line = quietLog.lines.find((l) => l.startsWith(`[dry-run] ${c.name} (`));
    expect(line).toMatch(/\(running, would be paused, image .*; would run pre-command: echo pre > \/data\/pre; post-command: echo own-post > \/data\/post$/);
    expect({ pre: await has(c.name, '/data/pre'), post: await has(c.name, '/data/post') }).toEqual({ pre: false, post: false });
  });
});
