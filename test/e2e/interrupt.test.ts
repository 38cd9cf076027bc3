import { afterAll, describe, expect, inject, it } from 'vitest';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Resources, commitsOf, docker, runContainer, waitFor } from '../support/fixtures.js';
import { runCli } from '../support/runner.js';

describe('an interrupted backup', () => {
  const res = new Resources(inject('runPrefix'), 'sig');
  afterAll(() => res.cleanup());

  it.each(['SIGTERM', 'SIGINT'] as const)('on %s unpauses the container, removes its temporary image and lists no set', async (signal) => {
    const name = res.name(`big-${signal.toLowerCase()}`);
    const vol = res.volume(`big-${signal.toLowerCase()}`);
    const store = join(res.tempDir(), 'store');
    // A volume large enough that archiving it keeps the container paused for a while.
    await runContainer(
      { name, Image: inject('fixtureImage'), Cmd: ['sh', '-c', 'test -f /v/big || dd if=/dev/urandom of=/v/big bs=1M count=160 2>/dev/null; touch /v/ready; exec sleep 100000'], HostConfig: { Binds: [`${vol}:/v`] } },
      'running',
    );
    const id = (await docker.getContainer(name).inspect()).Id;
    await waitFor(async () => {
      const exec = await docker.getContainer(name).exec({ Cmd: ['test', '-f', '/v/ready'] });
      await (await exec.start({})).resume();
      await new Promise((r) => setTimeout(r, 50));
      return (await exec.inspect()).ExitCode === 0;
    }, 60_000);

    let signalled = false;
    const result = await runCli(['backup', '--containers', name, '--destination', `dir:${store}`, '--tag', 'cut'], {
      onSpawn: (child) => {
        const poll = setInterval(() => {
          docker
            .getContainer(id)
            .inspect()
            .then((info) => {
              if (info.State.Paused && !signalled) {
                signalled = true;
                clearInterval(poll);
                child.kill(signal);
              }
            })
            .catch(() => undefined);
        }, 10);
        child.on('close', () => clearInterval(poll));
      },
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
});
