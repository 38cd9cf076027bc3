import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { mkdirSync, readdirSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import type Docker from 'dockerode';
import { backup, restore } from '../../src/commands.js';
import { parseBackupInputs, parseRestoreInputs } from '../../src/core/inputs.js';
import type { CreateContainerOptions } from '../../src/engine/containers.js';
import { Engine } from '../../src/engine/engine.js';
import { buildFixtureImage } from '../support/engine.js';
import { freePort } from '../support/registry.js';
import { Resources, commitsOf, docker, quietLog, runContainer, treeDigest, waitFor } from '../support/fixtures.js';
import { startArtifactService, type RunningArtifactService } from '../support/artifact-service.js';

type Kind = 'dir' | 'registry' | 'artifact';

/**
 * The environment a runner gives a step of one job of a workflow run, on this process: @actions/artifact
 * reads process.env itself. Returns the undo.
 */
function enterRun(vars: Record<string, string>): () => void {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  return () => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
}

interface Case {
  suffix: string;
  state: 'created' | 'running' | 'paused' | 'exited';
  /** Paths whose content must come back identical. */
  paths: string[];
}

const CASES: Case[] = [
  { suffix: 'web', state: 'running', paths: ['/data', '/anon', '/layer.txt', '/etc/marker'] },
  { suffix: 'worker', state: 'paused', paths: ['/work', '/tmp/worker.txt'] },
  { suffix: 'job', state: 'exited', paths: ['/out', '/layer-job.txt'] },
  { suffix: 'fresh', state: 'created', paths: ['/cache', '/etc/marker'] },
  { suffix: 'binder', state: 'running', paths: ['/host', '/layer-bind.txt'] },
];

/** The inspect fields a restore must reproduce. */
function compared(info: Docker.ContainerInspectInfo) {
  const explicitHostname = info.Config.Hostname !== info.Id.slice(0, 12);
  const networks = Object.entries(info.NetworkSettings.Networks)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([n, ep]) => ({ n, aliases: (ep.Aliases ?? []).filter((a: string) => a !== info.Id.slice(0, 12)).sort() }));
  const hc = info.HostConfig as Record<string, unknown>;
  return {
    running: info.State.Running,
    paused: info.State.Paused,
    config: {
      Env: info.Config.Env,
      Cmd: info.Config.Cmd,
      Entrypoint: info.Config.Entrypoint,
      User: info.Config.User,
      WorkingDir: info.Config.WorkingDir,
      Labels: info.Config.Labels,
      ExposedPorts: info.Config.ExposedPorts,
      Healthcheck: (info.Config as Record<string, unknown>).Healthcheck,
      StopSignal: (info.Config as Record<string, unknown>).StopSignal,
      Hostname: explicitHostname ? info.Config.Hostname : '(engine-assigned)',
      Volumes: info.Config.Volumes,
    },
    hostConfig: Object.fromEntries(
      [
        'PortBindings',
        'RestartPolicy',
        'Binds',
        'Mounts',
        'Tmpfs',
        'CapAdd',
        'ExtraHosts',
        'LogConfig',
        'NetworkMode',
        'Memory',
        'Privileged',
        'ReadonlyRootfs',
        'Dns',
        'Init',
      ].map((k) => [k, hc[k]]),
    ),
    networks,
    mounts: info.Mounts.map((m) => ({
      Type: m.Type,
      Destination: m.Destination,
      RW: m.RW,
      Name: m.Type === 'volume' && !/^[0-9a-f]{64}$/.test(m.Name ?? '') ? m.Name : undefined,
    })).sort((a, b) => a.Destination.localeCompare(b.Destination)),
  };
}

async function snapshotOf(name: string, paths: string[]) {
  const info = await docker.getContainer(name).inspect();
  const data: Record<string, string> = {};
  for (const p of paths) data[p] = (await treeDigest(info.Id, p)).digest;
  return { fields: compared(info), data };
}

/** An engine that notes every volume the containers it creates mount: what a restore made, and nothing else on the engine. */
class NotingEngine extends Engine {
  readonly volumes = new Set<string>();

  override async createContainer(opts: CreateContainerOptions): Promise<string> {
    const id = await super.createContainer(opts);
    for (const m of (await docker.getContainer(id).inspect()).Mounts) if (m.Type === 'volume' && m.Name) this.volumes.add(m.Name);
    return id;
  }
}

describe.each<Kind>(['dir', 'registry', 'artifact'])('round trip through %s', (kind) => {
  const res = new Resources(inject('runPrefix'), `fid${kind.slice(0, 3)}`);
  const reg = inject('registry');
  let location: string;
  let hostDir: string;
  let port: number;
  const before = new Map<string, Awaited<ReturnType<typeof snapshotOf>>>();
  const net = res.network('net');
  const named = { data: res.volume('data'), work: res.volume('work'), out: res.volume('out') };
  const env: NodeJS.ProcessEnv = { ...process.env, DOCKER_CONFIG: '/nonexistent' };
  // artifact: job "backup" of run 7001 stores the set; a later run, 7002, restores it by run-id and token.
  let artifacts: RunningArtifactService | undefined;
  let runnerTemp = '';
  const creds: Record<string, string> = kind === 'registry' ? { 'registry-username': reg.username, 'registry-password': reg.password } : {};
  let baseImage: string;

  beforeAll(async () => {
    baseImage = res.image(await buildFixtureImage(`${res.prefix}-base:v1`, res.prefix));
    location = { dir: `dir:${res.tempDir()}/store`, registry: `registry:${reg.host}/${res.prefix}`, artifact: `artifact:${res.prefix}` }[kind];
    if (kind === 'artifact') {
      artifacts = await startArtifactService();
      runnerTemp = res.tempDir();
    }
    hostDir = res.tempDir();
    mkdirSync(join(hostDir, 'sub'));
    writeFileSync(join(hostDir, 'sub', 'host.txt'), 'from the host\n');
    chmodSync(join(hostDir, 'sub', 'host.txt'), 0o640);
    port = await freePort();
    await docker.createNetwork({ Name: net, Driver: 'bridge', Labels: { purpose: 'fidelity' } });

    await runContainer(
      {
        name: res.name('web'),
        Image: baseImage,
        Hostname: 'web-host',
        User: '0:0',
        WorkingDir: '/tmp',
        Env: ['APP_MODE=test', 'GREETING=hello world'],
        Labels: { tier: 'front', 'com.example.owner': 'fidelity' },
        ExposedPorts: { '8080/tcp': {} },
        Entrypoint: ['sh', '-c'],
        Cmd: [
          // Set up once: a restored container must find its data, not write it again.
          'test -f /layer.txt || { echo layer-a > /layer.txt; mkdir -p /data/sub /data/empty; echo named > /data/sub/f; chown 1000:1000 /data/sub; chmod 600 /data/sub/f; ' +
            'ln -s sub/f /data/link; echo anon > /anon/g; sync; }; exec httpd -f -p 8080 -h /www',
        ],
        // No probe while the test runs: a probe's exec racing the backup's pause can leave runc 1.1 (cgroup v1)
        // stuck in the frozen cgroup and the container paused for good (seen on Engine 26.1 here).
        Healthcheck: { Test: ['CMD', 'true'], Interval: 600_000_000_000, Timeout: 1_000_000_000, Retries: 3 },
        StopSignal: 'SIGTERM',
        Volumes: { '/anon': {} },
        HostConfig: {
          Binds: [`${named.data}:/data`],
          PortBindings: { '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: String(port) }] },
          RestartPolicy: { Name: 'unless-stopped', MaximumRetryCount: 0 },
          Tmpfs: { '/scratch': 'size=1m' },
          CapAdd: ['NET_ADMIN'],
          ExtraHosts: ['db.local:10.1.2.3'],
          Memory: 64 * 1024 * 1024,
        },
        NetworkingConfig: { EndpointsConfig: { [net]: { Aliases: ['web-alias'] } } },
      },
      'running',
    );
    await waitFor(
      async () =>
        await fetch(`http://127.0.0.1:${port}/index.html`)
          .then((r) => r.ok)
          .catch(() => false),
    );
    await runContainer(
      {
        name: res.name('worker'),
        Image: baseImage,
        User: '1000:1000',
        Cmd: ['sh', '-c', 'test -f /tmp/worker.txt || echo worker > /tmp/worker.txt; exec sleep 100000'],
        HostConfig: { Mounts: [{ Type: 'volume', Source: named.work, Target: '/work' }], RestartPolicy: { Name: 'on-failure', MaximumRetryCount: 3 } },
      },
      'running',
    );
    await waitFor(
      async () =>
        await treeDigest(res.name('worker'), '/tmp/worker.txt').then(
          () => true,
          () => false,
        ),
    );
    await docker.getContainer(res.name('worker')).pause();
    await runContainer(
      {
        name: res.name('job'),
        Image: baseImage,
        Cmd: ['sh', '-c', 'echo done > /out/result; seq 1 5000 > /out/numbers; echo job > /layer-job.txt'],
        HostConfig: { Binds: [`${named.out}:/out`] },
      },
      'exited',
    );
    await runContainer(
      {
        name: res.name('fresh'),
        Image: baseImage,
        Labels: { state: 'never-started' },
        Cmd: ['sleep', '1'],
        HostConfig: { Mounts: [{ Type: 'volume', Target: '/cache' } as never], LogConfig: { Type: 'json-file', Config: { 'max-size': '1m' } } },
      },
      'created',
    );
    await runContainer(
      {
        name: res.name('binder'),
        Image: baseImage,
        Cmd: ['sh', '-c', 'test -f /layer-bind.txt || echo bind > /layer-bind.txt; exec sleep 100000'],
        HostConfig: { Binds: [`${hostDir}:/host`], Init: true },
      },
      'running',
    );
    await waitFor(
      async () =>
        await treeDigest(res.name('binder'), '/layer-bind.txt').then(
          () => true,
          () => false,
        ),
    );
    for (const c of CASES) before.set(c.suffix, await snapshotOf(res.name(c.suffix), c.paths));
  });

  afterAll(async () => {
    await artifacts?.stop();
    await res.cleanup();
  });

  it('backs up every state, removes everything, restores the same data and configuration', async () => {
    const inputs: Record<string, string> = {
      containers: `${res.prefix}-*`,
      destination: location,
      tag: 'fidelity-1',
      'include-bind-mounts': 'true',
      ...creds,
    };
    const leave = enterRun(artifacts ? { ...artifacts.env({ runId: 7001, jobId: 'backup' }), RUNNER_TEMP: runnerTemp } : {});
    const result = await backup(
      parseBackupInputs((n) => inputs[n] ?? ''),
      { log: quietLog, env: { ...env, ...process.env } },
    ).finally(leave);
    expect(result.failed, JSON.stringify(result.containers.filter((c) => c.error))).toBe(0);
    expect(result.containers.map((c) => c.name).sort()).toEqual(CASES.map((c) => res.name(c.suffix)).sort());
    expect(await commitsOf(result.containers.map((c) => c.id))).toEqual([]);
    const web = result.containers.find((c) => c.name === res.name('web'));
    expect(web?.pausedMs).toBeGreaterThan(0);
    expect(web?.volumes).toContain(named.data);

    // A still-paused container stays paused; a running one is running again.
    expect((await docker.getContainer(res.name('worker')).inspect()).State.Paused).toBe(true);
    expect((await docker.getContainer(res.name('web')).inspect()).State.Paused).toBe(false);

    // Remove the containers, their volumes, the network, the bind mount's content and the base image.
    for (const c of CASES) await docker.getContainer(res.name(c.suffix)).remove({ force: true, v: true });
    for (const v of Object.values(named)) await docker.getVolume(v).remove();
    await docker.getNetwork(net).remove();
    for (const entry of readdirSync(hostDir)) rmSync(join(hostDir, entry), { recursive: true });
    await docker.getImage(baseImage).remove({ force: true });
    expect((await docker.listImages()).some((i) => (i.RepoTags ?? []).some((t) => t.startsWith(res.prefix)))).toBe(false);

    const otherRun: Record<string, string> = artifacts ? { 'run-id': '7001', repository: 'octo-org/octo-repo', 'github-token': artifacts.apiToken } : {};
    const rin: Record<string, string> = { source: location, snapshot: 'latest', ...creds, ...otherRun };
    const engine = new NotingEngine();
    const back = enterRun(artifacts ? { ...artifacts.env({ runId: 7002, jobId: 'restore' }), RUNNER_TEMP: runnerTemp } : {});
    const restored = await restore(
      parseRestoreInputs((n) => rin[n] ?? ''),
      { log: quietLog, env: { ...env, ...process.env }, engine },
    ).finally(back);
    // Volumes no container mounts any more, among those the restore's containers (helpers included) mounted: it must leave none.
    expect(engine.volumes.size).toBeGreaterThan(0);
    const dangling = ((await docker.listVolumes({ filters: { dangling: ['true'] } })).Volumes ?? []).filter((v) => engine.volumes.has(v.Name));
    expect(dangling.map((v) => v.Name)).toEqual([]);
    expect(restored.failed, JSON.stringify(restored.containers.filter((c) => c.error))).toBe(0);
    for (const r of restored.containers) {
      const ref = (await docker.getContainer(r.id).inspect()).Config.Image;
      res.image(ref);
    }
    await waitFor(
      async () =>
        await fetch(`http://127.0.0.1:${port}/index.html`)
          .then((r) => r.ok)
          .catch(() => false),
    );

    for (const c of CASES) {
      const after = await snapshotOf(res.name(c.suffix), c.paths);
      const expected = before.get(c.suffix)!;
      if (c.state === 'exited') {
        // An exited container comes back created, not started: its command is not run again.
        expect(after.fields.running).toBe(false);
        expect(after.fields).toEqual({ ...expected.fields });
      } else {
        expect(after.fields, c.suffix).toEqual(expected.fields);
      }
      expect(after.data, c.suffix).toEqual(expected.data);
    }
    expect((await docker.getNetwork(net).inspect()).Labels).toEqual({ purpose: 'fidelity' });
    const body = await (await fetch(`http://127.0.0.1:${port}/index.html`)).text();
    expect(body).toBe('fixture\n');
    if (kind === 'registry') await expectPullable(`${reg.host}/${res.prefix}/${res.name('web')}:fidelity-1`);
    if (artifacts) {
      // Nothing staged on the runner's disk is left behind.
      expect(readdirSync(runnerTemp)).toEqual([]);
      const made = artifacts.artifacts().filter((a) => a.runId === 7001);
      // Every artifact is finalized; any deleted is a blob stored twice, which the set does not reference.
      expect(made.every((a) => a.finalized)).toBe(true);
      expect(made.filter((a) => a.deleted).every((a) => a.name.includes('.blob.'))).toBe(true);
      expect(made.filter((a) => a.name.endsWith('.set.json')).map((a) => a.name)).toEqual([`${res.prefix}@fidelity-1.attempt-1.set.json`]);
    }
  });

  /** The engine that made the snapshot can pull its image, and the image carries the OCI labels. */
  async function expectPullable(ref: string): Promise<void> {
    const stream = await docker.pull(ref, { authconfig: { username: reg.username, password: reg.password, serveraddress: reg.host } });
    const events = await new Promise<Array<{ error?: string }>>((resolve, reject) =>
      docker.modem.followProgress(stream, (err, out) => (err ? reject(err) : resolve(out))),
    );
    res.image(ref);
    expect(events.filter((e) => e.error)).toEqual([]);
    const labels = (await docker.getImage(ref).inspect()).Config.Labels ?? {};
    expect(labels).toMatchObject({
      'io.container-snapshot.container': res.name('web'),
      'io.container-snapshot.set': 'fidelity-1',
      'org.opencontainers.image.base.name': baseImage,
    });
    expect(labels['org.opencontainers.image.created']).toMatch(/^\d{4}-\d\d-\d\dT/);
  }
});
