import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { join } from 'node:path';
import { backup } from '../../src/commands.js';
import { parseBackupInputs } from '../../src/core/inputs.js';
import { markersInSnapshot } from '../support/restored.js';
import { Resources, docker, quietLog, runContainer, treeDigest, waitFor } from '../support/fixtures.js';

/** A container that writes a file when told to stop (as a database flushes), and logs each start. */
const FLUSHER = 'echo start >> /data/starts; trap "echo flushed > /data/flushed; exit 0" TERM; while true; do sleep 0.1; done';

describe('stop: the container is stopped for its snapshot and started again', () => {
  const res = new Resources(inject('runPrefix'), 'stop');
  let store: string;
  const env = { ...process.env, DOCKER_CONFIG: '/nonexistent' };
  const run = (inputs: Record<string, string>) =>
    backup(
      parseBackupInputs((n) => inputs[n] ?? ''),
      { log: quietLog, env },
    );

  async function flusher(suffix: string, labels: Record<string, string> = {}) {
    const name = res.name(suffix);
    const volume = res.volume(`${suffix}-data`);
    await runContainer(
      { name, Image: inject('fixtureImage'), Labels: labels, Cmd: ['sh', '-c', FLUSHER], HostConfig: { Binds: [`${volume}:/data`] } },
      'running',
    );
    await waitFor(() =>
      treeDigest(name, '/data/starts').then(
        () => true,
        () => false,
      ),
    );
    return { name, volume, suffix };
  }

  beforeAll(() => {
    store = join(res.tempDir(), 'store');
  });
  afterAll(() => res.cleanup());

  it('stop: true stops a running container (it flushes), takes it while stopped, and starts it again', async () => {
    const c = await flusher('db');
    const before = await docker.getContainer(c.name).inspect();
    const result = await run({ containers: c.name, destination: `dir:${store}`, tag: 'stopped', stop: 'true', 'stop-timeout': '5' });
    expect(result.failed, JSON.stringify(result.containers)).toBe(0);
    const [outcome] = result.containers;
    expect(outcome.stoppedMs).toBeGreaterThan(0);
    expect(outcome.pausedMs).toBe(0);
    const after = await docker.getContainer(c.name).inspect();
    expect(after.State.Running).toBe(true);
    expect(after.State.StartedAt).not.toBe(before.State.StartedAt);
    // The set is the state after the application flushed, and says the container was running.
    expect(await markersInSnapshot(res, store, 'stopped', c, ['flushed'])).toEqual({ flushed: true });
  });

  it('the label container-snapshot.stop=true stops its container only; the others are paused', async () => {
    const labelled = await flusher('labelled', { 'container-snapshot.stop': 'true' });
    const plain = await flusher('plain');
    const optedOut = await flusher('optout', { 'container-snapshot.stop': 'false' });
    const result = await run({
      containers: [labelled, plain, optedOut].map((c) => c.name).join(','),
      destination: `dir:${store}`,
      tag: 'labels',
      'stop-timeout': '5',
    });
    expect(result.failed, JSON.stringify(result.containers)).toBe(0);
    const by = (c: { name: string }) => result.containers.find((o) => o.name === c.name)!;
    expect(by(labelled).stoppedMs).toBeGreaterThan(0);
    expect([by(plain).stoppedMs, by(optedOut).stoppedMs]).toEqual([0, 0]);
    expect(by(plain).pausedMs).toBeGreaterThan(0);
    for (const c of [labelled, plain, optedOut]) expect((await docker.getContainer(c.name).inspect()).State.Running).toBe(true);
    expect(await markersInSnapshot(res, store, 'labels', labelled, ['flushed'])).toEqual({ flushed: true });
    expect(await markersInSnapshot(res, store, 'labels', plain, ['flushed'])).toEqual({ flushed: false });
  });

  it('stop: true takes a container that is not running as it is, and leaves it so', async () => {
    const name = res.name('exited');
    await runContainer({ name, Image: inject('fixtureImage'), Cmd: ['true'] }, 'exited');
    const result = await run({ containers: name, destination: `dir:${store}`, tag: 'exited', stop: 'true' });
    expect(result.failed).toBe(0);
    expect(result.containers[0]).toMatchObject({ state: 'exited', stoppedMs: 0, pausedMs: 0 });
    expect((await docker.getContainer(name).inspect()).State.Status).toBe('exited');
  });
});
