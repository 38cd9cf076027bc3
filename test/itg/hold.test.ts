import { afterAll, describe, expect, inject, it } from 'vitest';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { backup, restore } from '../../src/commands.js';
import { parseBackupInputs, parseRestoreInputs } from '../../src/core/inputs.js';
import { fileJournal } from '../../src/core/recovery.js';
import { processStart } from '../../src/core/process-liveness.js';
import { guarded } from '../../src/core/guard.js';
import type { ContainerInspect } from '../../src/engine/containers.js';
import { Engine } from '../../src/engine/engine.js';
import { watchOf } from '../../src/engine/events.js';
import type { Logger } from '../../src/core/log.js';
import { Resources, commitsOf, docker, runContainer, treeDigest, waitFor } from '../support/fixtures.js';

/** A logger that keeps every line, prefixed by its level. */
function recordingLog(): Logger & { lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    info: (m) => lines.push(`info: ${m}`),
    warning: (m) => lines.push(`warning: ${m}`),
    error: (m) => lines.push(`error: ${m}`),
    group: (_t, fn) => fn(),
  };
}

describe('a backup never makes a state it cannot undo', () => {
  const res = new Resources(inject('runPrefix'), 'hold');
  afterAll(() => res.cleanup());

  /** Runs a backup with a journal in its own state directory, as the CLI does. */
  async function journalled(inputs: Record<string, string>, state: string, engine = new Engine(), onInfo?: (line: string) => void) {
    const env = { ...process.env, DOCKER_CONFIG: '/nonexistent', CONTAINER_SNAPSHOT_STATE_DIR: state };
    const log = recordingLog();
    // Whatever `onInfo` does runs synchronously as the line is logged, before the backup goes on.
    const seen: Logger = { ...log, info: (m) => (log.info(m), onInfo?.(m)) };
    const handle = fileJournal(env);
    const result = await guarded(handle, engine, seen, (signal) =>
      backup(
        parseBackupInputs((n) => inputs[n] ?? ''),
        { log: seen, env, engine, journal: handle.journal, signal },
      ),
    );
    return { result, log, journals: readdirIfAny(join(state, 'journal')), locks: readdirIfAny(join(state, 'locks')) };
  }

  const readdirIfAny = (dir: string) => (existsSync(dir) ? readdirSync(dir) : []);

  it.each([
    ['true', 'paused', /auto-remove \(--rm\): paused, not stopped/],
    ['false', 'taken running', /auto-remove \(--rm\): taken running, not stopped/],
  ] as const)(
    'a --rm container with an anonymous volume, backed up with stop (pause %s), is %s instead, and its data is in the set',
    async (pause, _how, note) => {
      const name = res.name(`rm-${pause}`);
      await runContainer(
        {
          name,
          Image: inject('fixtureImage'),
          Volumes: { '/data': {} },
          HostConfig: { AutoRemove: true },
          Cmd: ['sh', '-c', 'echo kept > /data/marker; exec sleep 100000'],
        },
        'running',
      );
      await waitFor(() =>
        treeDigest(name, '/data/marker').then(
          () => true,
          () => false,
        ),
      );
      const before = await docker.getContainer(name).inspect();
      const store = join(res.tempDir(), 'store');
      const { result, log, journals } = await journalled({ containers: name, destination: `dir:${store}`, tag: 'rm', stop: 'true', pause }, res.tempDir());
      expect(result.failed, JSON.stringify(result.containers)).toBe(0);
      const [outcome] = result.containers;
      expect(outcome).toMatchObject({ state: 'running', stoppedMs: 0, note: expect.stringMatching(note) });
      if (pause === 'true') expect(outcome.pausedMs).toBeGreaterThan(0);
      expect(log.lines).toContainEqual(expect.stringMatching(/^warning: .*started with --rm \(auto-remove\), so it is not stopped/));
      // Never stopped: the same container, the same run, still there.
      const after = await docker.getContainer(name).inspect();
      expect({ running: after.State.Running, paused: after.State.Paused, startedAt: after.State.StartedAt }).toEqual({
        running: true,
        paused: false,
        startedAt: before.State.StartedAt,
      });
      expect(journals).toEqual([]);
      // The anonymous volume's content is in the set: restored beside it, it is there.
      const copy = res.name(`rm-${pause}-copy`);
      const r = await restore(
        parseRestoreInputs((n) => ({ source: `dir:${store}`, snapshot: 'rm', rename: `${name}=${copy}`, start: 'never' })[n] ?? ''),
        { log: recordingLog(), env: { ...process.env } },
      );
      expect(r.failed, JSON.stringify(r.containers)).toBe(0);
      res.image((await docker.getContainer(copy).inspect()).Config.Image);
      expect((await treeDigest(copy, '/data/marker')).entries).toBe(1);
    },
  );

  /** A restart: always container that exits at once, caught between two runs with a back-off of seconds. */
  async function crashLooping(suffix: string): Promise<ContainerInspect> {
    const name = res.name(suffix);
    await docker
      .createContainer({
        name,
        Image: inject('fixtureImage'),
        Cmd: ['sh', '-c', 'echo crashed >> /crashes; exit 1'],
        HostConfig: { RestartPolicy: { Name: 'always' } },
      })
      .then((c) => c.start());
    let info: ContainerInspect | undefined;
    await waitFor(async () => {
      info = (await docker.getContainer(name).inspect()) as ContainerInspect;
      // Caught between two runs late in its loop: the next start is 6.4 s or more away (the engine doubles the delay from 100 ms), past the read.
      return info.State.Restarting && info.RestartCount >= 6;
    }, 30_000);
    return info!;
  }

  it('a restart: always container caught restarting is taken as it is, state recorded, and leaves no journal', async () => {
    const info = await crashLooping('loop');
    const name = info.Name.slice(1);
    const state = res.tempDir();
    const store = join(res.tempDir(), 'store');
    const { result, log, journals, locks } = await journalled({ containers: name, destination: `dir:${store}`, tag: 'loop' }, state);
    expect(result.failed, JSON.stringify(result.containers)).toBe(0);
    expect(result.containers[0]).toMatchObject({ state: 'restarting', pausedMs: 0, stoppedMs: 0, note: 'restarting: taken as it is, between two runs' });
    expect(log.lines.filter((l) => l.startsWith('error:'))).toEqual([]);
    expect({ journals, locks }).toEqual({ journals: [], locks: [] });
    expect(await commitsOf([info.Id])).toEqual([]);
    // The next run on the host reports no interrupted backup.
    const next = await journalled({ containers: name, destination: `dir:${store}`, tag: 'loop-next' }, state);
    expect(next.log.lines.filter((l) => /interrupted|without cleaning up/.test(l))).toEqual([]);
  });

  it('a pause refused because the container began restarting leaves no journal entry, and takes it as it is', async () => {
    const info = await crashLooping('race');
    // The engine as it answered an instant earlier: running, so the backup tries to pause it.
    class EarlierEngine extends Engine {
      override async inspectContainer(idOrName: string, signal?: AbortSignal) {
        const now = await super.inspectContainer(idOrName, signal);
        if (now.Id !== info.Id || this.seen++ > 0) return now;
        return { ...now, State: { ...now.State, Status: 'running', Running: true, Restarting: false } };
      }
      seen = 0;
    }
    const state = res.tempDir();
    const { result, log, journals } = await journalled(
      { containers: info.Name.slice(1), destination: `dir:${join(res.tempDir(), 'store')}`, tag: 'race' },
      state,
      new EarlierEngine(),
    );
    expect(result.failed, JSON.stringify(result.containers)).toBe(0);
    expect(log.lines).toContainEqual(
      expect.stringMatching(/could not be paused \(.*(restarting|not running).*\); it is restarting or not running any more, so it is taken as it is/),
    );
    expect(journals).toEqual([]);
    expect(log.lines.filter((l) => l.startsWith('error:'))).toEqual([]);
    expect(result.containers[0]).toMatchObject({ pausedMs: 0, note: 'restarting: not paused, taken as it is, between two runs' });
  });

  it('an exited container started while it is read is not stored (its layer and volumes would mix two points in time); the same container left still is', async () => {
    const name = res.name('started');
    const volume = res.volume('started-data');
    const c = await docker.createContainer({
      name,
      Image: inject('fixtureImage'),
      Cmd: ['sh', '-c', 'date >> /data/runs; echo run >> /runs'],
      HostConfig: { Binds: [`${volume}:/data`] },
    });
    await c.start();
    await waitFor(async () => !(await c.inspect()).State.Running, 30_000);
    const store = join(res.tempDir(), 'store');
    // Started (synchronously, before the read goes on) the moment the backup says it reads the volume.
    const log = recordingLog();
    const starting: Logger = {
      ...log,
      info: (m) => {
        log.info(m);
        if (m === `${name}: reading volume ${volume}`) expect(spawnSync('docker', ['start', name], { encoding: 'utf8' }).status).toBe(0);
      },
    };
    const env = { ...process.env, DOCKER_CONFIG: '/nonexistent' };
    const inputs: Record<string, string> = { containers: name, destination: `dir:${store}`, tag: 'started' };
    const result = await backup(
      parseBackupInputs((n) => inputs[n] ?? ''),
      { log: starting, env },
    );
    expect(log.lines).toContain(`info: ${name}: reading volume ${volume}`);
    expect(result.failed).toBe(1);
    expect(result.containers[0].error).toMatch(
      /it was started during its backup, so its writable layer and volumes would mix two points in time: nothing of it is stored/,
    );
    expect(existsSync(join(store, 'sets', 'started.json'))).toBe(false);
    // Left still, the same container is taken as it is.
    await waitFor(async () => !(await c.inspect()).State.Running, 30_000);
    const again = await backup(
      parseBackupInputs((n) => ({ ...inputs, tag: 'still' })[n] ?? ''),
      { log: recordingLog(), env },
    );
    expect(again.failed, JSON.stringify(again.containers)).toBe(0);
    expect(again.containers[0]).toMatchObject({ state: 'exited', pausedMs: 0 });
  });

  it('an exited container started after the backup first looked at it, before its read, is not stored either', async () => {
    const name = res.name('started-early');
    const c = await docker.createContainer({ name, Image: inject('fixtureImage'), Cmd: ['sh', '-c', 'echo run >> /runs; sleep 30'] });
    await c.start();
    await c.kill();
    await waitFor(async () => !(await c.inspect()).State.Running, 30_000);
    const id = c.id;
    // The engine as another client leaves it: started right after its first inspect answered.
    class StartingEngine extends Engine {
      started = false;
      override async inspectContainer(idOrName: string, signal?: AbortSignal) {
        const info = await super.inspectContainer(idOrName, signal);
        if (info.Id === id && !this.started) {
          this.started = true;
          expect(spawnSync('docker', ['start', name], { encoding: 'utf8' }).status).toBe(0);
        }
        return info;
      }
    }
    const inputs: Record<string, string> = { containers: name, destination: `dir:${join(res.tempDir(), 'store')}`, tag: 'early' };
    const result = await backup(
      parseBackupInputs((n) => inputs[n] ?? ''),
      { log: recordingLog(), env: { ...process.env, DOCKER_CONFIG: '/nonexistent' }, engine: new StartingEngine() },
    );
    expect(result.failed).toBe(1);
    expect(result.containers[0].error).toMatch(/it was started during its backup, so its writable layer and volumes would mix two points in time/);
    await c.kill().catch(() => undefined);
  });

  /** The docker CLI, as another client would run it; fails the test when it fails. */
  const cli = (...args: string[]) => expect(spawnSync('docker', args, { encoding: 'utf8' }).stderr).toBe('');

  /** A running container writing to a named volume, which stops at once on SIGTERM. */
  async function writer(suffix: string): Promise<{ name: string; volume: string; startedAt: string }> {
    const name = res.name(suffix);
    const volume = res.volume(`${suffix}-data`);
    const Cmd = ['sh', '-c', 'trap "exit 0" TERM; while true; do date >> /data/log; sleep 0.1; done'];
    await runContainer({ name, Image: inject('fixtureImage'), Cmd, HostConfig: { Binds: [`${volume}:/data`] } }, 'running');
    return { name, volume, startedAt: (await docker.getContainer(name).inspect()).State.StartedAt };
  }

  const torn = /during its backup, so its writable layer and volumes would mix two points in time: nothing of it is stored; back it up again/;

  it.each([
    ['paused', 'unpaused by another client', 'pause', ['unpause'], 'it was unpaused'],
    ['stopped', 'started by another client', 'stop', ['start'], 'it was started'],
    ['paused', 'unpaused and paused again by another client (only its events show it)', 'pause', ['unpause', 'pause'], 'it was unpaused'],
  ] as const)('a container %s for its snapshot and %s while its volume is read is not stored, and is left running', async (_held, _how, hold, acts, moved) => {
    const { name, volume, startedAt } = await writer(`moved-${hold}-${acts.length}`);
    const store = join(res.tempDir(), 'store');
    let startedByOther: string | undefined;
    const inputs = { containers: name, destination: `dir:${store}`, tag: 'moved', stop: String(hold === 'stop') };
    const { result, log, journals } = await journalled(inputs, res.tempDir(), undefined, (m) => {
      if (m !== `${name}: reading volume ${volume}`) return;
      for (const act of acts) cli(act, name);
      if (hold === 'stop') startedByOther = spawnSync('docker', ['inspect', '-f', '{{.State.StartedAt}}', name], { encoding: 'utf8' }).stdout.trim();
    });
    expect(log.lines).toContain(`info: ${name}: reading volume ${volume}`);
    expect(result.failed, JSON.stringify(result.containers)).toBe(1);
    expect(result.containers[0].error).toMatch(new RegExp(`^${moved} ${torn.source}`));
    expect(existsSync(join(store, 'sets', 'moved.json'))).toBe(false);
    expect(journals).toEqual([]);
    const after = (await docker.getContainer(name).inspect()).State;
    expect({ running: after.Running, paused: after.Paused }).toEqual({ running: true, paused: false });
    // Started once, by the other client: not started again by the backup's put-back.
    expect(after.StartedAt).toBe(hold === 'stop' ? startedByOther : startedAt);
    expect(log.lines.filter((l) => l.startsWith('warning:'))).toEqual([]);
  });

  it.each([
    ['the volume beside its walk and the layer for its opaque directories', '', 2],
    ['the layer for its capabilities (its whole layer read on this host, which a cancel must not turn into a commit)', 'security', 1],
  ] as const)(
    'a backup cancelled while getfattr runs in its hold for %s ends at once: getfattr killed, the container running, unpaused, no journal, no set',
    async (_what, match, runsAtCancel) => {
      // A running container writing to a named volume, with a file of its own in its writable layer (read on this host, not committed).
      const name = res.name(`cancel-getfattr-${runsAtCancel}`);
      const volume = res.volume(`cancel-getfattr-${runsAtCancel}-data`);
      const Cmd = ['sh', '-c', 'echo layer > /in-layer; trap "exit 0" TERM; while true; do date >> /data/log; sleep 0.1; done'];
      await runContainer({ name, Image: inject('fixtureImage'), Cmd, HostConfig: { Binds: [`${volume}:/data`] } }, 'running');
      await waitFor(async () => spawnSync('docker', ['exec', name, 'test', '-e', '/in-layer']).status === 0);
      // getfattr on PATH: the real one, but once the backup pauses the container, one that sleeps for the runs whose arguments hold `match` (tagged, to be found).
      const bin = res.tempDir();
      const gate = join(bin, 'held');
      const sleeping = join(bin, 'sleeping');
      const n = randomInt(100_000, 1_000_000);
      const sleeps = `sleep 600\\.${n}`;
      const real = spawnSync('sh', ['-c', 'command -v getfattr'], { encoding: 'utf8' }).stdout.trim();
      expect(real).not.toBe('');
      writeFileSync(
        join(bin, 'getfattr'),
        `#!/bin/sh\nif [ -e '${gate}' ]; then case "$*" in *'${match}'*) echo "$*" >> '${sleeping}'; exec sleep 600.${n};; esac; fi\nexec '${real}' "$@"\n`,
        { mode: 0o755 },
      );
      class GateAtPause extends Engine {
        override async pause(id: string) {
          writeFileSync(gate, '');
          return super.pause(id);
        }
      }
      const runs = () => (existsSync(sleeping) ? readFileSync(sleeping, 'utf8').split('\n').filter(Boolean) : []);
      const cancel = new AbortController();
      const path = process.env.PATH;
      process.env.PATH = `${bin}:${path}`;
      const state = res.tempDir();
      const store = join(res.tempDir(), 'store');
      const log = recordingLog();
      const env = { ...process.env, DOCKER_CONFIG: '/nonexistent', CONTAINER_SNAPSHOT_STATE_DIR: state };
      const engine = new GateAtPause();
      const handle = fileJournal(env);
      let atCancel: string[] | undefined;
      let left: number | null | undefined;
      try {
        const run = guarded(handle, engine, log, (signal) =>
          backup(
            parseBackupInputs((k) => ({ containers: name, destination: `dir:${store}`, tag: 'cancelled' })[k] ?? ''),
            {
              log,
              env,
              engine,
              journal: handle.journal,
              signal: AbortSignal.any([signal, cancel.signal]),
            },
          ),
        );
        await waitFor(async () => runs().length >= runsAtCancel, 60_000);
        atCancel = runs();
        expect((await docker.getContainer(name).inspect()).State.Paused).toBe(true);
        cancel.abort(new Error('cancelled by the test'));
        const outcome = await run.then(
          (r) => JSON.stringify(r.containers.map((c) => c.error)),
          (err: unknown) => (err as Error).message,
        );
        expect(outcome).toMatch(/cancelled by the test/);
        // Killed by the cancel, not left sleeping (pgrep exits 1 when it finds none).
        left = spawnSync('pgrep', ['-f', sleeps]).status;
      } finally {
        process.env.PATH = path;
        spawnSync('pkill', ['-f', sleeps]);
      }
      expect(left).toBe(1);
      if (match === '') {
        // Both kinds of held getfattr were running when the cancel came: the volume's (-m -) and the layer's overlay attributes.
        expect((atCancel ?? []).some((a) => a.includes(`-m - `) && a.endsWith(`/${volume}/_data`))).toBe(true);
        expect((atCancel ?? []).some((a) => a.includes('trusted'))).toBe(true);
      } else expect(atCancel).toEqual([expect.stringContaining('security')]);
      // No engine commit started for a cancelled run.
      expect(log.lines.filter((l) => /commit/.test(l))).toEqual([]);
      const after = (await docker.getContainer(name).inspect()).State;
      expect({ running: after.Running, paused: after.Paused }).toEqual({ running: true, paused: false });
      expect(readdirIfAny(join(state, 'journal'))).toEqual([]);
      expect(existsSync(join(store, 'sets', 'cancelled.json'))).toBe(false);
    },
  );

  it('a running container stopped by another client just before the backup stops it is taken as it is and left stopped, not started again', async () => {
    const { name, volume } = await writer('stopped-by-other');
    const store = join(res.tempDir(), 'store');
    const inputs = { containers: name, destination: `dir:${store}`, tag: 'other-stop', stop: 'true' };
    const { result, log, journals } = await journalled(inputs, res.tempDir(), undefined, (m) => {
      // Logged just before the backup's own stop: the other client's comes first, so the engine answers the backup's with 304.
      if (m.startsWith(`${name}: stopping (up to`)) cli('stop', name);
    });
    expect(result.failed, JSON.stringify(result.containers)).toBe(0);
    expect(result.containers[0]).toMatchObject({
      pausedMs: 0,
      stoppedMs: 0,
      note: 'not running at its stop (stopped by another client, or exited): taken as it is, left stopped',
    });
    expect(log.lines).toContain(
      `info: ${name}: was not running any more when this backup stopped it (stopped by another client, or exited): taken as it is, and left stopped`,
    );
    expect(log.lines.filter((l) => /^(warning|error):/.test(l))).toEqual([]);
    expect(journals).toEqual([]);
    expect(existsSync(join(store, 'sets', 'other-stop.json'))).toBe(true);
    expect(result.containers[0].volumes).toEqual([volume]);
    // Left as the other client left it: the backup did not start it again.
    expect((await docker.getContainer(name).inspect()).State.Running).toBe(false);
  });

  it('a running container paused by another client just before the backup pauses it is taken as it is and left paused, not unpaused', async () => {
    const { name, volume } = await writer('paused-by-other');
    // Another client pauses it between the plan (it ran) and the backup's own pause, which the engine then refuses (409).
    class OtherPausesFirst extends Engine {
      override async pause(id: string) {
        cli('pause', name);
        return super.pause(id);
      }
    }
    const store = join(res.tempDir(), 'store');
    const { result, log, journals } = await journalled(
      { containers: name, destination: `dir:${store}`, tag: 'other-pause' },
      res.tempDir(),
      new OtherPausesFirst(),
    );
    expect(result.failed, JSON.stringify(result.containers)).toBe(0);
    expect(result.containers[0]).toMatchObject({ pausedMs: 0, stoppedMs: 0, note: 'paused by another client before its hold: taken as it is, left paused' });
    expect(log.lines).toContain(`info: ${name}: was paused by another client before this backup paused it: taken as it is, and left paused`);
    expect(log.lines.filter((l) => /^(warning|error):/.test(l))).toEqual([]);
    expect(journals).toEqual([]);
    expect(result.containers[0].volumes).toEqual([volume]);
    // Left as the other client left it: the backup did not unpause it.
    const after = (await docker.getContainer(name).inspect()).State;
    expect({ running: after.Running, paused: after.Paused }).toEqual({ running: true, paused: true });
    cli('unpause', name);
  });

  it('a created --rm container started, exited and removed while its volume is read is not stored (its events show it ran)', async () => {
    const name = res.name('rm-created');
    const volume = res.volume('rm-created-data');
    await runContainer(
      { name, Image: inject('fixtureImage'), Cmd: ['sh', '-c', 'date >> /data/runs'], HostConfig: { AutoRemove: true, Binds: [`${volume}:/data`] } },
      'created',
    );
    const store = join(res.tempDir(), 'store');
    const inputs = { containers: name, destination: `dir:${store}`, tag: 'rm-created' };
    let gone = false;
    const { result, log } = await journalled(inputs, res.tempDir(), undefined, (m) => {
      // Once its volume is read on this host: the container runs, exits and is removed before the inspect after the read.
      if (!m.startsWith(`${name}: reading ${volume}: read on this host from`)) return;
      cli('start', name);
      for (let i = 0; i < 300 && !gone; i++) {
        gone = spawnSync('docker', ['inspect', name]).status !== 0;
        if (!gone) spawnSync('sleep', ['0.02']);
      }
    });
    expect(gone, log.lines.join('\n')).toBe(true);
    expect(result.failed, JSON.stringify(result.containers)).toBe(1);
    expect(result.containers[0].error).toMatch(new RegExp(`^it was started ${torn.source}`));
    expect(existsSync(join(store, 'sets', 'rm-created.json'))).toBe(false);
  });

  it.each(['false', 'true'])('a container paused or stopped (stop %s) and left alone is stored, with no warning and no word of its events', async (stop) => {
    const { name } = await writer(`still-${stop}`);
    const store = join(res.tempDir(), 'store');
    const { result, log, journals } = await journalled({ containers: name, destination: `dir:${store}`, tag: 'still', stop }, res.tempDir());
    expect(result.failed, JSON.stringify(result.containers)).toBe(0);
    expect(result.containers[0]).toMatchObject(stop === 'true' ? { pausedMs: 0, stoppedMs: expect.any(Number) } : { pausedMs: expect.any(Number) });
    expect(log.lines.filter((l) => /^(warning|error):|\bevents?\b/.test(l))).toEqual([]);
    expect(journals).toEqual([]);
    expect(existsSync(join(store, 'sets', 'still.json'))).toBe(true);
    const after = (await docker.getContainer(name).inspect()).State;
    expect({ running: after.Running, paused: after.Paused }).toEqual({ running: true, paused: false });
  });

  it('where the engine streams no events, the inspects alone still catch an unpause, and a container left alone is stored, with nothing said of it', async () => {
    // The engine as one whose events cannot be read: each stream fails as it opens.
    class NoEvents extends Engine {
      override watchContainer() {
        return watchOf(Promise.reject(new Error('connect ECONNRESET')), new AbortController());
      }
    }
    const { name, volume } = await writer('unwatched');
    const store = join(res.tempDir(), 'store');
    const left = await journalled({ containers: name, destination: `dir:${store}`, tag: 'left' }, res.tempDir(), new NoEvents());
    expect(left.result.failed, JSON.stringify(left.result.containers)).toBe(0);
    expect(left.log.lines.filter((l) => /^(warning|error):|\bevents?\b/.test(l))).toEqual([]);
    const moved = await journalled({ containers: name, destination: `dir:${store}`, tag: 'moved' }, res.tempDir(), new NoEvents(), (m) => {
      if (m === `${name}: reading volume ${volume}`) cli('unpause', name);
    });
    expect(moved.result.containers[0].error).toMatch(new RegExp(`^it was unpaused ${torn.source}`));
    expect(moved.journals).toEqual([]);
  });

  it('a journal naming a container that no longer exists is cleared by the next backup and restore, with no error', async () => {
    const name = res.name('gone');
    await runContainer({ name, Image: inject('fixtureImage'), Cmd: ['sleep', '100000'] }, 'running');
    const goneId = (await docker.getContainer(name).inspect()).Id;
    await docker.getContainer(name).remove({ force: true });
    const state = res.tempDir();
    const gone = spawnSync('true').pid!;
    const journalFile = join(state, 'journal', `${hostname()}-${gone}.json`);
    mkdirSync(join(state, 'journal'), { recursive: true });
    const pending = { paused: [goneId], stopped: [{ id: goneId, startedAt: '2026-11-30T00:00:00Z', until: 0 }], tempImages: [] };
    writeFileSync(
      journalFile,
      JSON.stringify({ pid: gone, started: processStart(gone), host: hostname(), engine: process.env.DOCKER_HOST || 'unix:///var/run/docker.sock', pending }),
    );

    const other = res.name('gone-other');
    await runContainer({ name: other, Image: inject('fixtureImage'), Cmd: ['sleep', '100000'] }, 'running');
    const store = join(res.tempDir(), 'store');
    const first = await journalled({ containers: other, destination: `dir:${store}`, tag: 'first' }, state);
    expect(first.result.failed).toBe(0);
    expect(first.log.lines.filter((l) => l.startsWith('error:'))).toEqual([]);
    expect(first.log.lines).toContainEqual(
      expect.stringMatching(new RegExp(`^warning: container ${goneId.slice(0, 12)}, left by an interrupted backup, no longer exists`)),
    );
    expect(existsSync(journalFile)).toBe(false);
    // Neither a later backup nor a restore says anything of it again.
    const second = await journalled({ containers: other, destination: `dir:${store}`, tag: 'second' }, state);
    expect(second.log.lines.filter((l) => l.includes(goneId.slice(0, 12)) || /interrupted/.test(l))).toEqual([]);
    const restoreLog = recordingLog();
    const copy = res.name('gone-copy');
    const r = await restore(
      parseRestoreInputs((n) => ({ source: `dir:${store}`, snapshot: 'second', rename: `${other}=${copy}`, start: 'never' })[n] ?? ''),
      {
        log: restoreLog,
        env: { ...process.env, CONTAINER_SNAPSHOT_STATE_DIR: state },
      },
    );
    expect(r.failed).toBe(0);
    res.image((await docker.getContainer(copy).inspect()).Config.Image);
    expect(restoreLog.lines.filter((l) => l.startsWith('error:') || /interrupted/.test(l))).toEqual([]);
  });
});
