import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type Docker from 'dockerode';
import { backup, restore } from '../../src/commands.js';
import { parseBackupInputs, parseRestoreInputs } from '../../src/core/inputs.js';
import { buildFixtureImage } from '../support/engine.js';
import { ENGINE_B, engineBClient, engineBEnv, requireEngineB } from '../support/engine-b.js';
import { Engine } from '../../src/engine/engine.js';
import { parseEngineAddress } from '../../src/core/engine-address.js';
import { checkTarget } from '../../src/snapshot/target-check.js';
import type { ContainerRecord, SnapshotSet } from '../../src/snapshot/manifest.js';
import { freePort } from '../support/registry.js';
import { Resources, docker, freeSubnet, quietLog, runContainer, treeDigest, waitFor } from '../support/fixtures.js';
import { inputs, testEnv } from '../support/commands.js';
import { startArtifactService, type RunningArtifactService } from '../support/artifact-service.js';

type Kind = 'dir' | 'registry' | 'artifact';

/** The environment a runner gives one job's step, on this process (@actions/artifact reads process.env). Returns the undo. */
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

/** The commands' environment, read when called: a job's artifact service variables are on process.env then. */
const stepEnv = (): NodeJS.ProcessEnv => ({ ...testEnv, ...process.env, DOCKER_CONFIG: '/nonexistent' });

/** What a container must bring to the other engine: state, configuration that matters here, network aliases. */
async function shape(on: Docker, name: string) {
  const info = await on.getContainer(name).inspect();
  return {
    running: info.State.Running,
    paused: info.State.Paused,
    env: info.Config.Env,
    cmd: info.Config.Cmd,
    labels: info.Config.Labels,
    restart: info.HostConfig.RestartPolicy,
    networks: Object.entries(info.NetworkSettings.Networks).map(([n, ep]) => ({
      n,
      aliases: (ep.Aliases ?? []).filter((a: string) => a !== info.Id.slice(0, 12)).sort(),
    })),
  };
}

/** Names carrying the test's prefix on an engine: containers, volumes, networks, image tags. */
async function madeOn(on: Docker, prefix: string) {
  const mine = (n: string) => n.startsWith(prefix) || n.startsWith(`container-snapshot/${prefix}`);
  return {
    containers: (await on.listContainers({ all: true }))
      .flatMap((c) => c.Names.map((n) => n.replace(/^\//, '')))
      .filter(mine)
      .sort(),
    volumes: ((await on.listVolumes()).Volumes ?? [])
      .map((v) => v.Name)
      .filter(mine)
      .sort(),
    networks: (await on.listNetworks())
      .map((n) => n.Name)
      .filter(mine)
      .sort(),
    images: (await on.listImages())
      .flatMap((i) => i.RepoTags ?? [])
      .filter(mine)
      .sort(),
  };
}

describe.each<Kind>(['dir', 'registry', 'artifact'])('back up on engine A, restore on engine B over tcp+TLS through %s', (kind) => {
  const res = new Resources(inject('runPrefix'), `rmt${kind.slice(0, 3)}`);
  const reg = inject('registry');
  const net = res.network('net');
  const data = res.volume('data');
  const [web, worker, holder] = [res.name('web'), res.name('worker'), res.name('holder')];
  const creds: Record<string, string> = kind === 'registry' ? { 'registry-username': reg.username, 'registry-password': reg.password } : {};
  let b: Docker;
  let location = '';
  let port = 0;
  let artifacts: RunningArtifactService | undefined;
  let runnerTemp = '';
  const before = new Map<string, { shape: Awaited<ReturnType<typeof shape>>; data: string }>();

  beforeAll(async () => {
    b = await requireEngineB();
    const image = res.image(await buildFixtureImage(`${res.prefix}-base:v1`, res.prefix));
    location = { dir: `dir:${res.tempDir()}/store`, registry: `registry:${reg.host}/${res.prefix}`, artifact: `artifact:${res.prefix}` }[kind];
    if (kind === 'artifact') {
      artifacts = await startArtifactService();
      runnerTemp = res.tempDir();
    }
    port = await freePort();
    await docker.createNetwork({ Name: net, Driver: 'bridge', Labels: { purpose: 'remote' }, IPAM: { Config: [{ Subnet: `${freeSubnet()}.0/24` }] } });
    await runContainer(
      {
        name: web,
        Image: image,
        Env: ['APP=remote'],
        Labels: { tier: 'front' },
        Cmd: ['sh', '-c', 'test -f /data/index.html || { echo served-from-the-volume > /data/index.html; sync; }; exec httpd -f -p 8080 -h /data'],
        ExposedPorts: { '8080/tcp': {} },
        HostConfig: {
          Binds: [`${data}:/data`],
          PortBindings: { '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: String(port) }] },
          RestartPolicy: { Name: 'unless-stopped', MaximumRetryCount: 0 },
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
      { name: worker, Image: image, Cmd: ['sh', '-c', 'test -f /tmp/w.txt || echo w > /tmp/w.txt; exec sleep 100000'], HostConfig: { NetworkMode: net } },
      'running',
    );
    await waitFor(
      async () =>
        await treeDigest(worker, '/tmp/w.txt').then(
          () => true,
          () => false,
        ),
    );
    await docker.getContainer(worker).pause();
    for (const name of [web, worker])
      before.set(name, { shape: await shape(docker, name), data: (await treeDigest(name, name === web ? '/data' : '/tmp/w.txt')).digest });
  });

  afterAll(async () => {
    await artifacts?.stop();
    if (b) await res.cleanup(b);
    await res.cleanup();
  });

  it('refuses a host port taken on B before any change, then restores the same data, configuration and state with port-map, creating the network', async () => {
    const leave = enterRun(artifacts ? { ...artifacts.env({ runId: 7101, jobId: 'backup' }), RUNNER_TEMP: runnerTemp } : {});
    const backedUp = await backup(parseBackupInputs(inputs({ containers: `${res.prefix}-*`, destination: location, tag: 'remote-1', ...creds })), {
      log: quietLog,
      env: stepEnv(),
    }).finally(leave);
    expect(backedUp.failed, JSON.stringify(backedUp.containers.filter((c) => c.error))).toBe(0);
    const a = (await docker.info()) as { ID: string; Name: string };
    expect(backedUp.engine).toMatchObject({ id: a.ID, name: a.Name });

    // The service moves: gone from A (its port with it), while B has a container of its own on that port.
    for (const name of [web, worker]) await docker.getContainer(name).remove({ force: true });
    await docker.getVolume(data).remove();
    await docker.getNetwork(net).remove();
    const holderImage = res.image(await buildFixtureImage(`${res.prefix}-holder:v1`, 'holder', b));
    await runContainer(
      {
        name: holder,
        Image: holderImage,
        Cmd: ['httpd', '-f', '-p', '80', '-h', '/www'],
        ExposedPorts: { '80/tcp': {} },
        HostConfig: { PortBindings: { '80/tcp': [{ HostIp: '127.0.0.1', HostPort: String(port) }] } },
      },
      'running',
      b,
    );
    await waitFor(
      async () =>
        await fetch(`http://127.0.0.1:${port}/index.html`)
          .then((r) => r.ok)
          .catch(() => false),
    );
    const untouched = await madeOn(b, res.prefix);
    expect(untouched).toEqual({ containers: [holder], volumes: [], networks: [], images: [holderImage] });

    const other: Record<string, string> = artifacts ? { 'run-id': '7101', repository: 'octo-org/octo-repo', 'github-token': artifacts.apiToken } : {};
    const onB = (extra: Record<string, string>) => {
      const values = { source: location, snapshot: 'remote-1', 'docker-host': ENGINE_B.host, ...creds, ...other, ...extra };
      const back = enterRun(artifacts ? { ...artifacts.env({ runId: 7102, jobId: 'restore' }), RUNNER_TEMP: runnerTemp } : {});
      return restore(parseRestoreInputs(inputs(values), undefined, { ...stepEnv(), ...engineBEnv }), { log: quietLog, env: stepEnv() }).finally(back);
    };
    await expect(onB({})).rejects.toThrow(
      new RegExp(`${web} publishes host port 127\\.0\\.0\\.1:${port}/tcp .*container '${holder}' holds on this engine \\(port-map ${port}=NEWPORT`),
    );
    expect(await madeOn(b, res.prefix)).toEqual(untouched);

    const newPort = await freePort();
    const restored = await onB({ 'port-map': `${port}=${newPort}` });
    expect(restored.failed, JSON.stringify(restored.containers.filter((c) => c.error))).toBe(0);
    for (const r of restored.containers) res.image((await b.getContainer(r.id).inspect()).Config.Image);
    const bInfo = (await b.info()) as { ID: string };
    expect(restored.engine).toMatchObject({ id: bInfo.ID, address: `${ENGINE_B.host} (TLS)` });
    expect(restored.sourceEngine).toMatchObject({ id: a.ID, name: a.Name });
    expect(bInfo.ID).not.toBe(a.ID);

    // Same data, configuration and state; the network made on B; the port published where port-map says.
    for (const name of [web, worker]) {
      expect(await shape(b, name), name).toEqual(before.get(name)!.shape);
      expect((await treeDigest(name, name === web ? '/data' : '/tmp/w.txt', b)).digest, name).toBe(before.get(name)!.data);
    }
    expect((await b.getNetwork(net).inspect()).Labels).toEqual({ purpose: 'remote' });
    expect((await b.getContainer(web).inspect()).HostConfig.PortBindings).toEqual({ '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: String(newPort) }] });
    await waitFor(
      async () =>
        await fetch(`http://127.0.0.1:${newPort}/index.html`)
          .then(async (r) => (await r.text()) === 'served-from-the-volume\n')
          .catch(() => false),
    );
    expect(await fetch(`http://127.0.0.1:${port}/index.html`).then((r) => r.text())).toContain('fixture');
  });
});

describe("engine B's features, read from the engine itself", () => {
  it('names a runtime, log, volume and network driver B lacks, before any change', async () => {
    await requireEngineB();
    const prefix = `${inject('runPrefix')}-feat`;
    const engine = Engine.connect(parseEngineAddress(ENGINE_B.host, engineBEnv, 'docker-host'));
    const blob = { mediaType: 'x', digest: `sha256:${'a'.repeat(64)}`, size: 1, contentDigest: `sha256:${'b'.repeat(64)}`, contentSize: 1 };
    const record = (name: string, hostConfig: Record<string, unknown>, driver?: string): ContainerRecord => ({
      name,
      id: name,
      state: 'created',
      image: { id: 'sha256:x', baseImage: 'x', config: blob, layers: [] },
      volumes: driver ? [{ type: 'volume', name: `${prefix}-vol`, anonymous: false, destination: '/v', driver, blob }] : [],
      spec: {
        config: {},
        hostConfig,
        networks: [
          {
            name: `${prefix}-net`,
            aliases: [],
            definition: { driver: 'csx-netdriver', options: {}, labels: {}, internal: false, attachable: false, enableIPv6: false, ipam: {} },
          },
        ],
      },
      pausedMs: 0,
    });
    const set = {
      tag: 'features',
      source: { hostname: 'a', engine: { version: '20.10.24', apiVersion: '1.41', os: 'linux', arch: 'amd64' } },
      containers: [],
    } as unknown as SnapshotSet;
    const chosen = [
      record(`${prefix}-gpu`, { Runtime: 'csx-runtime', LogConfig: { Type: 'csx-logdriver' } }, 'csx-voldriver'),
      record(`${prefix}-plain`, { Runtime: 'runc', LogConfig: { Type: 'json-file' } }),
    ];
    const opts = { ...parseRestoreInputs(inputs({ snapshot: 'latest' })), includeVolumes: true };
    const [info, version] = [(await engineBClient().info()) as { Name: string }, await engineBClient().version()];
    await expect(checkTarget(engine, set, chosen, opts)).rejects.toThrow(
      `Snapshot features cannot be restored onto ${info.Name}, Engine ${version.Version} at ${ENGINE_B.host} (TLS); nothing was changed: ` +
        `the engine lacks runtime 'csx-runtime' (${prefix}-gpu), log driver 'csx-logdriver' (${prefix}-gpu), volume driver 'csx-voldriver' (${prefix}-gpu), network driver 'csx-netdriver' (network ${prefix}-net).`,
    );
    await expect(checkTarget(engine, set, [chosen[1]], { ...opts, includeVolumes: false })).rejects.toThrow(/lacks network driver 'csx-netdriver'/);

    // A network to create whose recorded subnet B already uses for one of its own.
    const b = engineBClient();
    const subnet = `${freeSubnet()}.0/24`;
    const taken = `${prefix}-taken`;
    await b.createNetwork({ Name: taken, IPAM: { Config: [{ Subnet: subnet }] } });
    try {
      const plain = chosen[1];
      const net = plain.spec.networks[0];
      const wants = {
        ...plain,
        spec: {
          ...plain.spec,
          networks: [{ ...net, definition: { ...net.definition!, driver: 'bridge', ipam: { Driver: 'default', Config: [{ Subnet: subnet }] } } }],
        },
      };
      await expect(checkTarget(engine, set, [wants], opts)).rejects.toThrow(
        `nothing was changed: network ${prefix}-net would be created with subnet ${subnet}, which overlaps network ${taken} (${subnet}) on this engine.`,
      );
    } finally {
      await b.getNetwork(taken).remove();
    }
  });
});

describe("engine B's clock, for the writable layer's racy entries", () => {
  it('reads how far the engine clock is from this host (GET /info SystemTime): B runs on this host, so within a second', async () => {
    await requireEngineB();
    const engine = Engine.connect(parseEngineAddress(ENGINE_B.host, engineBEnv, 'docker-host'));
    const skew = await engine.clockSkewNs();
    expect(skew).toBeTypeOf('bigint');
    expect(skew! < 1_000_000_000n && skew! > -1_000_000_000n, `skew ${skew} ns`).toBe(true);
    // Asked once per Engine: the same answer again.
    expect(await engine.clockSkewNs()).toBe(skew);
  });
});
