import { afterAll, describe, expect, inject, it } from 'vitest';
import { existsSync, readdirSync } from 'node:fs';
import { spoolRoot, stateDir } from '../../src/core/state-dir.js';
import { tempImageName } from '../../src/core/run-names.js';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { Resources, commitsOf, docker, runBigVolumeContainer, runContainer, whenContainer } from '../support/fixtures.js';
import { runCli } from '../support/runner.js';

describe('an interrupted backup', () => {
  const res = new Resources(inject('runPrefix'), 'sig');
  afterAll(() => res.cleanup());

  it.each(['SIGTERM', 'SIGINT'] as const)('on %s unpauses the container, removes its temporary image and lists no set', async (signal) => {
    const store = join(res.tempDir(), 'store');
    const { name, id } = await runBigVolumeContainer(res, `big-${signal.toLowerCase()}`, inject('fixtureImage'), 160);

    let signalled = false;
    const result = await runCli(['backup', '--containers', name, '--destination', `dir:${store}`, '--tag', 'cut'], {
      onSpawn: whenContainer(
        id,
        (info) => info.State.Paused,
        (child) => {
          signalled = true;
          child.kill(signal);
        },
      ),
    });
    expect(signalled, result.stderr).toBe(true);
    expect(result.code).toBe(signal === 'SIGINT' ? 130 : 143);
    expect(result.stderr).toContain(`Received ${signal}`);
    const info = await docker.getContainer(id).inspect();
    expect(info.State.Paused).toBe(false);
    expect(info.State.Running).toBe(true);
    expect(await commitsOf([id])).toEqual([]);
    expect(existsSync(join(store, 'sets')) ? readdirSync(join(store, 'sets')) : []).toEqual([]);
  });

  it('killed outright (SIGKILL) while spooling, leaves its journal and spool, and the next run undoes and removes them', async () => {
    const store = join(res.tempDir(), 'store');
    // Large enough that the spool's copy outlasts the poll that sends the kill (160 MB was copied too fast once).
    const { name, id } = await runBigVolumeContainer(res, 'big-kill', inject('fixtureImage'), 400);
    const journalDir = join(stateDir(process.env), 'journal');
    const spools = () => (existsSync(spoolRoot(process.env)) ? readdirSync(spoolRoot(process.env)) : []);
    const before = new Set(spools());
    // This run's spool: a directory that was not there before, holding a file.
    const spooling = () => spools().some((d) => !before.has(d) && readdirSync(join(spoolRoot(process.env), d)).length > 0);
    let killed = false;
    const result = await runCli(['backup', '--containers', name, '--destination', `dir:${store}`, '--tag', 'killed'], {
      onSpawn: whenContainer(
        id,
        (info) => info.State.Paused && spooling(),
        (child) => {
          killed = true;
          child.kill('SIGKILL');
        },
      ),
    });
    expect(killed, result.stderr).toBe(true);
    expect(result.code).toBe(128);
    // Nothing could run in the killed process: the container is still paused, its journal says so.
    expect((await docker.getContainer(id).inspect()).State.Paused).toBe(true);
    const journals = readdirSync(journalDir).filter((f) => f.endsWith('.json'));
    expect(journals.length).toBeGreaterThan(0);
    const left = spools().filter((d) => !before.has(d));
    expect(left.length).toBe(1);

    const other = res.name('after-kill');
    await runContainer({ name: other, Image: inject('fixtureImage'), Cmd: ['sleep', '100000'] }, 'running');
    const next = await runCli(['backup', '--containers', other, '--destination', `dir:${store}`, '--tag', 'next']);
    expect(next.code, next.stderr).toBe(0);
    expect(next.stderr).toMatch(/A backup \(pid \d+\) ended without cleaning up \(1 paused container\(s\)/);
    expect(next.stderr).toContain(`Removed the spool ${join(spoolRoot(process.env), left[0])}, left by an interrupted backup`);
    expect(spools()).not.toContain(left[0]);
    const info = await docker.getContainer(id).inspect();
    expect(info.State.Paused).toBe(false);
    expect(info.State.Running).toBe(true);
    expect(await commitsOf([id])).toEqual([]);
    expect(readdirSync(journalDir).filter((f) => journals.includes(f))).toEqual([]);
    expect(readdirSync(join(store, '.tmp'))).toEqual([]);
    expect(readdirSync(join(store, 'sets'))).toEqual(['next.json']);
  });

  /** Runs a backup with stop: true and sends `signal` once the engine shows the container stopped. */
  async function interruptWhileStopped(suffix: string, signal: NodeJS.Signals) {
    const store = join(res.tempDir(), 'store');
    const { name, id } = await runBigVolumeContainer(res, suffix, inject('fixtureImage'), 160);
    let sent = false;
    const result = await runCli(['backup', '--containers', name, '--destination', `dir:${store}`, '--tag', 'stopped', '--stop', '--stop-timeout', '1'], {
      onSpawn: whenContainer(
        id,
        (info) => !info.State.Running && info.State.Status === 'exited',
        (child) => {
          sent = true;
          child.kill(signal);
        },
      ),
    });
    expect(sent, result.stderr).toBe(true);
    return { id, store, result };
  }

  it('on SIGTERM while it holds a container stopped, starts it again', async () => {
    const { id, store, result } = await interruptWhileStopped('stop-term', 'SIGTERM');
    expect(result.code).toBe(143);
    expect((await docker.getContainer(id).inspect()).State.Running).toBe(true);
    expect(await commitsOf([id])).toEqual([]);
    expect(existsSync(join(store, 'sets')) ? readdirSync(join(store, 'sets')) : []).toEqual([]);
  });

  it('killed (SIGKILL) while it holds a container stopped: the next run starts it again', async () => {
    const { id, store, result } = await interruptWhileStopped('stop-kill', 'SIGKILL');
    expect(result.code).toBe(128);
    expect((await docker.getContainer(id).inspect()).State.Running).toBe(false);
    const other = res.name('after-stop-kill');
    await runContainer({ name: other, Image: inject('fixtureImage'), Cmd: ['sleep', '100000'] }, 'running');
    const next = await runCli(['backup', '--containers', other, '--destination', `dir:${store}`, '--tag', 'next']);
    expect(next.code, next.stderr).toBe(0);
    expect(next.stderr).toMatch(/ended without cleaning up \(0 paused container\(s\), 1 stopped container\(s\)/);
    expect(next.stderr).toMatch(/Started container .*stop-kill again, left stopped by an interrupted backup/);
    expect((await docker.getContainer(id).inspect()).State.Running).toBe(true);
    expect(await commitsOf([id])).toEqual([]);
  });

  it('a commit that lands after its killed process was recovered is removed by a later run', async () => {
    // A process that has exited: its pid is dead.
    const gone = spawnSync('true').pid;
    const image = inject('fixtureImage');
    const ref = tempImageName('ab12'.repeat(3), gone);
    await docker.getImage(image).tag(ref);
    res.image(`${ref.repo}:${ref.tag}`);
    // Another host's temporary image (other prefix) is never touched.
    const foreign = { repo: ref.repo, tag: `h00000000-${gone}-0badc0de` };
    await docker.getImage(image).tag(foreign);
    res.image(`${foreign.repo}:${foreign.tag}`);
    const other = res.name('sweep');
    await runContainer({ name: other, Image: image, Cmd: ['sleep', '100000'] }, 'running');
    const next = await runCli(['backup', '--containers', other, '--destination', `dir:${join(res.tempDir(), 'store')}`]);
    expect(next.code, next.stderr).toBe(0);
    expect(next.stderr).toContain(`Removed temporary image ${ref.repo}:${ref.tag}, left by an interrupted backup`);
    const tags = (await docker.listImages({ filters: { reference: [`${ref.repo}:*`] } })).flatMap((i) => i.RepoTags ?? []);
    expect(tags).toEqual([`${foreign.repo}:${foreign.tag}`]);
  });
});
