import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { backup } from '../../src/commands.js';
import { parseBackupInputs } from '../../src/core/inputs.js';
import { Engine } from '../../src/engine/engine.js';
import {
  Resources,
  afterItsPause,
  commitsOf,
  docker,
  quietLog,
  runBigVolumeContainer,
  runContainer,
  treeDigest,
  waitFor,
  whenContainer,
} from '../support/fixtures.js';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { startFaultyProxy } from '../support/faulty-proxy.js';
import { runCli, runStep } from '../support/runner.js';

const errorLines = (stderr: string) => stderr.split('\n').filter((l) => l.startsWith('error: '));

describe('faults: the registry, the disk and the engine failing under a backup', () => {
  const res = new Resources(inject('runPrefix'), 'flt');
  let registry: RunningRegistry;
  let bigLayer: { name: string; id: string };

  beforeAll(async () => {
    registry = await startRegistry();
    // 80 MB of random data in the writable layer: its upload after the pause takes a while.
    const name = res.name('layer');
    await runContainer(
      {
        name,
        Image: inject('fixtureImage'),
        Cmd: ['sh', '-c', 'test -f /big || dd if=/dev/urandom of=/big bs=1M count=80 2>/dev/null; touch /ready; exec sleep 100000'],
      },
      'running',
    );
    await waitFor(
      () =>
        treeDigest(name, '/ready').then(
          () => true,
          () => false,
        ),
      60_000,
    );
    bigLayer = { name, id: (await docker.getContainer(name).inspect()).Id };
  });

  afterAll(async () => {
    await registry?.stop();
    await res.cleanup();
  });

  it('the registry dies mid-push: that container fails naming the registry, it is left running, and no set exists', async () => {
    const own = await startRegistry();
    try {
      const { name, id } = await runBigVolumeContainer(res, 'regdown', inject('fixtureImage'), 60);
      const destination = `registry:${own.host}/${res.prefix}`;
      const r = await runCli(
        ['backup', '--containers', name, '--destination', destination, '--tag', 'down', '--registry-username', own.username, '--registry-password-stdin'],
        {
          input: own.password,
          env: { DOCKER_CONFIG: '/nonexistent' },
          onSpawn: whenContainer(
            id,
            (info) => info.State.Paused,
            () => void own.halt(),
          ),
        },
      );
      expect(r.code).toBe(1);
      expect(errorLines(r.stderr)).toHaveLength(1);
      const esc = (t: string) => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      expect(errorLines(r.stderr)[0]).toMatch(
        new RegExp(
          `1 container\\(s\\) failed: ${esc(name)} \\(volume ${esc(name)}: (${esc(destination)}|Registry ${esc(own.host)}).*(ECONNREFUSED|ECONNRESET|socket|terminated)`,
        ),
      );
      const info = await docker.getContainer(id).inspect();
      expect({ running: info.State.Running, paused: info.State.Paused }).toEqual({ running: true, paused: false });
      expect(await commitsOf([id])).toEqual([]);
      expect(own.storedTags(res.prefix)).toEqual([]);
    } finally {
      await own.stop();
    }
  });

  it('a directory on a tiny filesystem fills up: the container fails with ENOSPC, no partial blob or set is left', async () => {
    const mnt = join(res.tempDir(), 'tiny');
    mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mnt]);
    try {
      const { name, id } = await runBigVolumeContainer(res, 'full', inject('fixtureImage'), 20);
      const r = await runCli(['backup', '--containers', name, '--destination', `dir:${mnt}/store`, '--tag', 'full']);
      expect(r.code).toBe(1);
      expect(errorLines(r.stderr)).toHaveLength(1);
      expect(errorLines(r.stderr)[0]).toMatch(new RegExp(`failed: ${name} \\(volume ${name}: dir:${mnt}/store: ENOSPC: no space left on device`));
      const info = await docker.getContainer(id).inspect();
      expect({ running: info.State.Running, paused: info.State.Paused }).toEqual({ running: true, paused: false });
      expect(await commitsOf([id])).toEqual([]);
      expect(readdirSync(join(mnt, 'store', '.tmp'))).toEqual([]);
      expect(readdirSync(join(mnt, 'store', 'sets'))).toEqual([]);
    } finally {
      execFileSync('umount', [mnt]);
    }
  });

  it('the engine unreachable: one clear line from the CLI and the actions, and a non-zero exit', async () => {
    const env = { DOCKER_HOST: 'unix:///nonexistent/docker.sock', DOCKER_CONFIG: '/nonexistent' };
    const cli = await runCli(['backup', '--destination', `dir:${res.tempDir()}`], { env });
    expect(cli.code).toBe(1);
    expect(errorLines(cli.stderr)).toEqual([
      expect.stringMatching(
        /^error: Docker engine unreachable \(ENOENT\) while trying to .*nonexistent\/docker\.sock\. Expected a running Docker engine at unix:\/\/\/nonexistent\/docker\.sock, or another named with --docker-host \(or DOCKER_HOST\)\.$/,
      ),
    ]);
    // A set to restore, made while the engine was there.
    const store = `dir:${res.tempDir()}/store`;
    const made = await runCli(['backup', '--containers', bigLayer.name, '--destination', store, '--tag', 'there']);
    expect(made.code, made.stderr).toBe(0);
    for (const [dir, inputs] of [
      ['.', { destination: `dir:${res.tempDir()}` }],
      ['restore', { source: store }],
    ] as const) {
      const step = await runStep(dir, inputs, { env });
      expect(step.code).toBe(1);
      expect(step.stdout.split('\n').filter((l) => l.startsWith('::error::'))).toEqual([
        expect.stringMatching(/^::error::Docker engine unreachable \(ENOENT\).*, or another named with docker-host \(or DOCKER_HOST\)\.$/),
      ]);
    }
  });

  it('a container removed between selection and commit fails alone; the others are stored', async () => {
    const victim = res.name('victim');
    const survivor = res.name('survivor');
    for (const name of [victim, survivor]) await runContainer({ name, Image: inject('fixtureImage'), Cmd: ['sleep', '100000'] }, 'running');
    const victimId = (await docker.getContainer(victim).inspect()).Id;
    // The real engine; the container disappears right after the selection listed it.
    class RacingEngine extends Engine {
      override async inspectContainer(idOrName: string) {
        if (idOrName === victimId)
          await docker
            .getContainer(victimId)
            .remove({ force: true })
            .catch(() => undefined);
        return super.inspectContainer(idOrName);
      }
    }
    const store = join(res.tempDir(), 'store');
    const inputs: Record<string, string> = { containers: `${victim},${survivor}`, destination: `dir:${store}`, tag: 'race' };
    const result = await backup(
      parseBackupInputs((n) => inputs[n] ?? ''),
      { log: quietLog, env: { ...process.env }, engine: new RacingEngine() },
    );
    expect(result.failed).toBe(1);
    expect(result.containers.find((c) => c.name === victim)?.error).toMatch(/No such container/);
    expect(result.containers.find((c) => c.name === survivor)?.status).toBe('ok');
    expect(readdirSync(join(store, 'sets'))).toEqual(['race.json']);
  });

  it('SIGTERM while it uploads the image (after the pause): running container, no temporary image, no set', async () => {
    const destination = `registry:${registry.host}/${res.prefix}-term`;
    let sent = false;
    const r = await runCli(
      [
        'backup',
        '--containers',
        bigLayer.name,
        '--destination',
        destination,
        '--tag',
        'term',
        '--registry-username',
        registry.username,
        '--registry-password-stdin',
      ],
      {
        input: registry.password,
        env: { DOCKER_CONFIG: '/nonexistent' },
        onSpawn: whenContainer(bigLayer.id, afterItsPause(), (child) => {
          sent = true;
          child.kill('SIGTERM');
        }),
      },
    );
    expect(sent).toBe(true);
    expect(r.code).toBe(143);
    expect((await docker.getContainer(bigLayer.id).inspect()).State.Running).toBe(true);
    expect(await commitsOf([bigLayer.id])).toEqual([]);
    expect(registry.storedTags(`${res.prefix}-term`)).toEqual([]);
  });

  it('SIGKILL of the main step while it uploads, then the post step: no temporary image, no set', async () => {
    const destination = `registry:${registry.host}/${res.prefix}-kill`;
    let sent = false;
    const main = await runStep(
      '.',
      // layer-compaction 0: the writable layer is committed (not read on the host), so a killed step leaves its temporary image.
      {
        containers: bigLayer.name,
        destination,
        tag: 'kill',
        'layer-compaction': '0',
        'registry-username': registry.username,
        'registry-password': registry.password,
      },
      {
        env: { DOCKER_CONFIG: '/nonexistent' },
        onSpawn: whenContainer(bigLayer.id, afterItsPause(), (child) => {
          sent = true;
          child.kill('SIGKILL');
        }),
      },
    );
    expect(sent).toBe(true);
    expect(main.code).toBe(128);
    // Killed outright: its temporary image is still there, and its step state says so.
    expect(JSON.parse(main.state.pending).tempImages).toHaveLength(1);
    const post = await runStep('.', {}, { phase: 'post', state: main.state, env: { DOCKER_CONFIG: '/nonexistent' } });
    expect(post.code, post.stdout).toBe(0);
    expect(await commitsOf([bigLayer.id])).toEqual([]);
    expect((await docker.getContainer(bigLayer.id).inspect()).State.Running).toBe(true);
    expect(registry.storedTags(`${res.prefix}-kill`)).toEqual([]);
  });

  it.each(['SIGTERM', 'SIGKILL'] as const)('%s as it writes the set manifest (the last write): no set is listed, nothing is left', async (signal) => {
    const prefix = `${res.prefix}-manifest-${signal.toLowerCase()}`;
    let child: ChildProcess | undefined;
    let sent = false;
    // The set manifest is PUT to <prefix>/manifests/<tag>; the per-container images go to <prefix>/<name>/manifests/<tag> first.
    const proxy = await startFaultyProxy(registry.host, (req) => {
      if (req.method === 'PUT' && req.url === `/v2/${prefix}/manifests/last` && child) {
        sent = true;
        child.kill(signal);
        return 'reset';
      }
      return 'pass';
    });
    try {
      const r = await runCli(
        [
          'backup',
          '--containers',
          bigLayer.name,
          '--destination',
          `registry:${proxy.host}/${prefix}`,
          '--tag',
          'last',
          '--registry-username',
          registry.username,
          '--registry-password-stdin',
        ],
        {
          input: registry.password,
          env: { DOCKER_CONFIG: '/nonexistent' },
          onSpawn: (c) => (child = c),
        },
      );
      expect(sent, r.stderr).toBe(true);
      expect(r.code).toBe(signal === 'SIGTERM' ? 143 : 128);
      expect(registry.storedTags(prefix)).toEqual([]);
      const list = await runCli(
        ['list', '--source', `registry:${registry.host}/${prefix}`, '--registry-username', registry.username, '--registry-password-stdin'],
        { input: registry.password, env: { DOCKER_CONFIG: '/nonexistent' } },
      );
      expect(list.stdout.trim()).toBe(`No snapshot sets in registry:${registry.host}/${prefix}.`);
      expect((await docker.getContainer(bigLayer.id).inspect()).State.Running).toBe(true);
      expect(await commitsOf([bigLayer.id])).toEqual([]);
    } finally {
      await proxy.close();
    }
  });
});
