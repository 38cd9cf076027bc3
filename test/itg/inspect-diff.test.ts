import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type Docker from 'dockerode';
import { backup, restore } from '../../src/commands.js';
import { parseBackupInputs, parseRestoreInputs } from '../../src/core/inputs.js';
import { freePort } from '../support/registry.js';
import { Resources, docker, freeSubnet, quietLog, runContainer } from '../support/fixtures.js';
import { inspectDiff, type ByDesign } from '../support/inspect-diff.js';

/**
 * What may differ between a container and its restored copy, and why. Anything else in Config,
 * HostConfig or the endpoint settings that differs fails the test, a field of a newer engine included.
 */
const BY_DESIGN: ByDesign[] = [
  { path: 'Config.Image', why: 'the copy runs the snapshot image' },
  { path: 'Networks.*.NetworkID', why: 'the network was removed and made again' },
  { path: 'Networks.*.EndpointID', why: 'a new endpoint' },
  { path: 'Networks.bridge.IPAddress', why: 'engine-assigned, no --ip on the default bridge' },
  { path: 'Networks.bridge.MacAddress', why: 'engine-assigned (derived from the IP) where no MAC was configured' },
];

describe('a restored container is the same container: docker inspect over Config, HostConfig and endpoint settings', () => {
  const res = new Resources(inject('runPrefix'), 'insp');
  const image = inject('fixtureImage');
  const net = res.network('net');
  const vol = res.volume('data');
  const subnet = freeSubnet();
  const before = new Map<string, Docker.ContainerInspectInfo>();
  const env: NodeJS.ProcessEnv = { ...process.env, DOCKER_CONFIG: '/nonexistent' };

  beforeAll(async () => {
    await docker.createNetwork({ Name: net, Driver: 'bridge', IPAM: { Driver: 'default', Config: [{ Subnet: `${subnet}.0/24` }] } });
    const port = await freePort();
    // As many `docker run` flags as Engine 20.10 (API 1.41) takes, in the form the CLI sends them.
    await runContainer(
      {
        name: res.name('full'),
        Image: image,
        Hostname: 'full-host',
        Domainname: 'example.test',
        User: '1000:1000',
        WorkingDir: '/tmp',
        Env: ['APP_MODE=test', 'GREETING=hello world'],
        Labels: { tier: 'front', 'com.example.owner': 'inspect' },
        Entrypoint: ['sh', '-c'],
        Cmd: ['exec sleep 100000'],
        ExposedPorts: { '8080/tcp': {}, '9000/udp': {} },
        MacAddress: '02:aa:bb:cc:dd:01',
        // No probe while the test runs: a probe's exec racing the backup's pause can leave runc 1.1 (cgroup v1)
        // stuck in the frozen cgroup and the container paused for good (seen on Engine 26.1 here).
        Healthcheck: { Test: ['CMD', 'true'], Interval: 600_000_000_000, Timeout: 1_000_000_000, Retries: 3, StartPeriod: 1_000_000_000 },
        StopSignal: 'SIGUSR1',
        StopTimeout: 7,
        HostConfig: {
          NetworkMode: net,
          Binds: [`${vol}:/data`],
          Mounts: [{ Type: 'tmpfs', Target: '/scratch', TmpfsOptions: { SizeBytes: 1024 * 1024 } }],
          Tmpfs: { '/run': 'size=1m' },
          PortBindings: { '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: String(port) }] },
          RestartPolicy: { Name: 'on-failure', MaximumRetryCount: 2 },
          Dns: ['10.0.0.53'],
          DnsSearch: ['example.internal'],
          DnsOptions: ['ndots:2'],
          ExtraHosts: ['db.local:10.1.2.3'],
          CapAdd: ['NET_ADMIN', 'SYS_TIME'],
          CapDrop: ['MKNOD'],
          SecurityOpt: ['no-new-privileges:true', 'seccomp=unconfined'],
          Ulimits: [{ Name: 'nofile', Soft: 1024, Hard: 2048 }],
          Memory: 64 * 1024 * 1024,
          MemoryReservation: 32 * 1024 * 1024,
          MemorySwap: 128 * 1024 * 1024,
          NanoCpus: 500_000_000,
          CpuShares: 512,
          CpusetCpus: '0',
          PidsLimit: 100,
          OomScoreAdj: 100,
          Devices: [{ PathOnHost: '/dev/null', PathInContainer: '/dev/csx-null', CgroupPermissions: 'rwm' }],
          Sysctls: { 'net.core.somaxconn': '1024' },
          LogConfig: { Type: 'json-file', Config: { 'max-size': '1m', 'max-file': '2' } },
          Init: true,
          ReadonlyRootfs: true,
          ShmSize: 16 * 1024 * 1024,
          GroupAdd: ['1234'],
          IpcMode: 'shareable',
          CgroupnsMode: 'private',
          Runtime: 'runc',
        } as unknown as Docker.HostConfig,
        NetworkingConfig: {
          EndpointsConfig: { [net]: { Aliases: ['full-alias'], IPAMConfig: { IPv4Address: `${subnet}.5` }, DriverOpts: { 'csx.test': 'x' } } },
        },
      },
      'running',
    );
    await runContainer(
      {
        name: res.name('plain'),
        Image: image,
        Cmd: ['sleep', '100000'],
        MacAddress: '02:aa:bb:cc:dd:02',
        ExposedPorts: { '7000/tcp': {} },
        Volumes: { '/anon': {} },
        HostConfig: { PublishAllPorts: true, RestartPolicy: { Name: 'unless-stopped', MaximumRetryCount: 0 } },
      },
      'running',
    );
    for (const suffix of ['full', 'plain']) before.set(suffix, await docker.getContainer(res.name(suffix)).inspect());
  });

  afterAll(() => res.cleanup());

  it('differs only in the fields listed as different by design', async () => {
    const location = `dir:${res.tempDir()}/store`;
    const inputs: Record<string, string> = { containers: `${res.prefix}-*`, destination: location, tag: 'inspect-1' };
    const result = await backup(
      parseBackupInputs((n) => inputs[n] ?? ''),
      { log: quietLog, env },
    );
    expect(result.failed, JSON.stringify(result.containers.filter((c) => c.error))).toBe(0);
    for (const suffix of before.keys()) await docker.getContainer(res.name(suffix)).remove({ force: true, v: true });
    await docker.getVolume(vol).remove();
    await docker.getNetwork(net).remove();

    const rin: Record<string, string> = { source: location, snapshot: 'latest' };
    const restored = await restore(
      parseRestoreInputs((n) => rin[n] ?? ''),
      { log: quietLog, env },
    );
    expect(restored.failed, JSON.stringify(restored.containers.filter((c) => c.error))).toBe(0);
    for (const r of restored.containers) res.image((await docker.getContainer(r.id).inspect()).Config.Image);

    for (const [suffix, info] of before) {
      const after = await docker.getContainer(res.name(suffix)).inspect();
      expect(inspectDiff(info, after, BY_DESIGN), suffix).toEqual([]);
    }
    // The configured MACs came back (API 1.41 shows them in Config and on the endpoint).
    const full = await docker.getContainer(res.name('full')).inspect();
    expect(full.NetworkSettings.Networks[net].MacAddress).toBe('02:aa:bb:cc:dd:01');
    expect((await docker.getContainer(res.name('plain')).inspect()).NetworkSettings.Networks.bridge.MacAddress).toBe('02:aa:bb:cc:dd:02');
  });
});
