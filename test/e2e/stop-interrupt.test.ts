import { afterAll, describe, expect, inject, it } from 'vitest';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type Docker from 'dockerode';
import {
  Resources,
  afterItsPause,
  afterItsStop,
  commitsOf,
  docker,
  hasFile,
  runBigVolumeContainer,
  runContainer,
  waitFor,
  whenContainer,
} from '../support/fixtures.js';
import { runCli, runStep } from '../support/runner.js';

/**
 * A service that takes 2 s to stop (it flushes on SIGTERM), with a 64 MB writable layer (its
 * image upload runs after it is started again) and a volume; /s is a host directory where it
 * says that it was told to stop.
 */
const SERVICE =
  'test -f /big || dd if=/dev/urandom of=/big bs=1M count=64 2>/dev/null; echo run >> /v/starts; touch /v/ready; ' +
  'trap "touch /s/term; sleep 2; exit 0" TERM; while true; do sleep 0.1; done';

type Phase = 'stopping' | 'stopped' | 'started again';
type Kill = 'CLI SIGTERM' | 'CLI SIGKILL' | 'action SIGKILL, then post' | 'action SIGTERM, then post';

const entries = (dir: string) => (existsSync(dir) ? readdirSync(dir) : []);

describe('a --stop backup interrupted at each phase ends with its container running, and a re-run leaves nothing', () => {
  const res = new Resources(inject('runPrefix'), 'stopint');
  afterAll(() => res.cleanup());

  async function service(suffix: string) {
    const name = res.name(suffix);
    const signals = res.tempDir();
    await runContainer(
      { name, Image: inject('fixtureImage'), Cmd: ['sh', '-c', SERVICE], HostConfig: { Binds: [`${res.volume(suffix)}:/v`, `${signals}:/s`] } },
      'running',
    );
    await waitFor(() => hasFile(name, '/v/ready'), 60_000);
    const info = await docker.getContainer(name).inspect();
    return { name, id: info.Id, startedAt: info.State.StartedAt, signals };
  }

  /** When to act: told to stop (its marker is there) and still running; exited; running again. */
  function at(phase: Phase, signals: string): (info: Docker.ContainerInspectInfo) => boolean {
    if (phase === 'stopping') return (info) => info.State.Running && existsSync(join(signals, 'term'));
    if (phase === 'stopped') return (info) => !info.State.Running && info.State.Status === 'exited';
    return afterItsStop();
  }

  const phases: Phase[] = ['stopping', 'stopped', 'started again'];
  const kills: Kill[] = ['CLI SIGTERM', 'CLI SIGKILL', 'action SIGKILL, then post', 'action SIGTERM, then post'];

  it.each(phases.flatMap((p) => kills.map((k) => [p, k] as const)))('%s, %s', async (phase, kill) => {
    const c = await service(`${phase.replace(' ', '-')}-${kill.split(/[ ,]+/).join('-').toLowerCase()}`);
    const store = join(res.tempDir(), 'store');
    const state = res.tempDir();
    const env = { CONTAINER_SNAPSHOT_STATE_DIR: state, DOCKER_CONFIG: '/nonexistent' };
    const signal: NodeJS.Signals = kill.includes('SIGTERM') ? 'SIGTERM' : 'SIGKILL';
    let sent = false;
    const onSpawn = whenContainer(c.id, at(phase, c.signals), (child: ChildProcess) => {
      sent = true;
      child.kill(signal);
    });
    let log: string;
    if (kill.startsWith('CLI')) {
      const r = await runCli(['backup', '--containers', c.name, '--destination', `dir:${store}`, '--tag', 'cut', '--stop', '--stop-timeout', '10'], {
        env,
        onSpawn,
      });
      log = r.stderr;
      expect(sent, r.stderr).toBe(true);
      expect(r.code, r.stderr).toBe(signal === 'SIGTERM' ? 143 : 128);
    } else {
      const inputs = { containers: c.name, destination: `dir:${store}`, tag: 'cut', stop: 'true', 'stop-timeout': '10' };
      const main = await runStep('.', inputs, { env, onSpawn });
      expect(sent, main.stdout).toBe(true);
      expect(main.code, main.stdout).toBe(signal === 'SIGTERM' ? 143 : 128);
      // The runner then runs the post step, at once: the container may still be stopping.
      const post = await runStep('.', {}, { phase: 'post', state: main.state, env });
      expect(post.code, post.stdout).toBe(0);
      log = main.stdout + post.stdout;
    }
    expect(log).not.toMatch(/is not paused|Could not undo/);
    // Killed outright, only the CLI has no one to put it back until the next run.
    if (kill !== 'CLI SIGKILL') {
      const info = await docker.getContainer(c.id).inspect();
      expect(info.State.Running, log).toBe(true);
      expect(info.State.StartedAt).not.toBe(c.startedAt);
    }
    expect(entries(join(store, 'sets'))).toEqual([]);
    if (signal === 'SIGTERM') {
      // One owner of the undo: once the process has exited, nothing is left and nothing lands after.
      await new Promise((r) => setTimeout(r, 500));
      expect({ journals: entries(join(state, 'journal')), locks: entries(join(state, 'locks')), images: await commitsOf([c.id]) }).toEqual({
        journals: [],
        locks: [],
        images: [],
      });
    }

    // A plain re-run: it backs up, and nothing of the interrupted run is left.
    const again = await runCli(['backup', '--containers', c.name, '--destination', `dir:${store}`, '--tag', 'again'], { env });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).not.toMatch(/^error:/m);
    const info = await docker.getContainer(c.id).inspect();
    expect({ running: info.State.Running, paused: info.State.Paused }).toEqual({ running: true, paused: false });
    expect({
      journals: entries(join(state, 'journal')),
      locks: entries(join(state, 'locks')),
      tmp: entries(join(store, '.tmp')),
      sets: entries(join(store, 'sets')),
    }).toEqual({
      journals: [],
      locks: [],
      tmp: [],
      sets: ['again.json'],
    });
    expect(await commitsOf([c.id])).toEqual([]);
  });
});

describe("a SIGTERM'd backup stops its pipeline, then undoes once", () => {
  const res = new Resources(inject('runPrefix'), 'once');
  afterAll(() => res.cleanup());

  it.each([
    ['while the container is paused', (): ((info: Docker.ContainerInspectInfo) => boolean) => (info) => info.State.Paused],
    ['while it uploads, after the pause', afterItsPause],
  ] as const)('%s: no "is not paused", no lock, no journal, no temporary image, nothing more after the undo', async (_when, when) => {
    const { name, id } = await runBigVolumeContainer(res, `once-${_when.split(' ').at(-1)}`, inject('fixtureImage'), 120);
    const store = join(res.tempDir(), 'store');
    const state = res.tempDir();
    let sent = false;
    const r = await runCli(['backup', '--containers', name, '--destination', `dir:${store}`, '--tag', 'cut'], {
      env: { CONTAINER_SNAPSHOT_STATE_DIR: state },
      onSpawn: whenContainer(id, when(), (child) => {
        sent = true;
        child.kill('SIGTERM');
      }),
    });
    expect(sent, r.stderr).toBe(true);
    expect(r.code, r.stderr).toBe(143);
    const errors = r.stderr.split('\n').filter((l) => l.startsWith('error: '));
    expect(errors).toEqual(['error: Received SIGTERM: stopping the backup, then undoing what it changed']);
    // Nothing the pipeline did after the signal outlives the process.
    const after = r.stderr.slice(r.stderr.indexOf('Received SIGTERM'));
    expect(after).not.toMatch(/layer\(s\) and .* volume\(s\)|blob\(s\) stored/);
    await new Promise((res) => setTimeout(res, 500));
    const info = await docker.getContainer(id).inspect();
    expect({ running: info.State.Running, paused: info.State.Paused }).toEqual({ running: true, paused: false });
    expect({
      journals: entries(join(state, 'journal')),
      locks: entries(join(state, 'locks')),
      tmp: entries(join(store, '.tmp')),
      sets: entries(join(store, 'sets')),
    }).toEqual({
      journals: [],
      locks: [],
      tmp: [],
      sets: [],
    });
    expect(await commitsOf([id])).toEqual([]);
  });
});

describe('a SIGTERM during a pre-command', () => {
  const res = new Resources(inject('runPrefix'), 'prehook');
  afterAll(() => res.cleanup());

  it('stops waiting for it, runs the post-command, pauses nothing and exits 143', async () => {
    const name = res.name('hooked');
    const signals = res.tempDir();
    await runContainer({ name, Image: inject('fixtureImage'), Cmd: ['sleep', '100000'], HostConfig: { Binds: [`${signals}:/s`] } }, 'running');
    const id = (await docker.getContainer(name).inspect()).Id;
    const state = res.tempDir();
    let sent = false;
    const started = Date.now();
    const r = await runCli(
      [
        'backup',
        '--containers',
        name,
        '--destination',
        `dir:${join(res.tempDir(), 'store')}`,
        '--pre-command',
        'touch /s/pre; sleep 30',
        '--post-command',
        'touch /s/post',
      ],
      {
        env: { CONTAINER_SNAPSHOT_STATE_DIR: state },
        onSpawn: whenContainer(
          id,
          () => existsSync(join(signals, 'pre')),
          (child) => {
            sent = true;
            child.kill('SIGTERM');
          },
        ),
      },
    );
    expect(sent, r.stderr).toBe(true);
    expect(r.code, r.stderr).toBe(143);
    // Not the 30 s of the pre-command: the run stopped waiting for it.
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(existsSync(join(signals, 'post')), r.stderr).toBe(true);
    const info = await docker.getContainer(id).inspect();
    expect({ running: info.State.Running, paused: info.State.Paused }).toEqual({ running: true, paused: false });
    expect({ journals: entries(join(state, 'journal')), locks: entries(join(state, 'locks')), images: await commitsOf([id]) }).toEqual({
      journals: [],
      locks: [],
      images: [],
    });
  });
});
