import { describe, expect, it } from 'vitest';
import type { ContainerInspect } from '../../src/engine/containers.js';
import type { NetworkInspect } from '../../src/engine/volumes-networks.js';
import { apiAtLeast, captureSpec, createOptions, macFromIp, normalizeLinks } from '../../src/snapshot/spec.js';
import { mountsToTake } from '../../src/snapshot/volumes.js';

const id = 'abcdef0123456789'.repeat(4);

function inspect(over: Record<string, unknown> = {}): ContainerInspect {
  return {
    Id: id,
    Name: '/web',
    Config: { Hostname: id.slice(0, 12), Env: ['A=1'], Cmd: ['sh'], Image: 'base:1', Labels: { a: 'b' }, User: '1000', WorkingDir: '/w' },
    HostConfig: {
      NetworkMode: 'appnet',
      Binds: ['data:/data', '/srv:/srv:ro'],
      Mounts: [{ Type: 'volume', Source: 'cache', Target: '/cache' }],
      MaskedPaths: ['/proc/kcore'],
      ReadonlyPaths: ['/proc/sys'],
      Links: ['/db:/web/database'],
      RestartPolicy: { Name: 'always', MaximumRetryCount: 0 },
    },
    NetworkSettings: {
      Networks: {
        appnet: { Aliases: ['web-alias', id.slice(0, 12)], IPAMConfig: { IPv4Address: '10.9.0.5' } },
        other: { Aliases: null },
        bridge: {},
      },
    },
    Mounts: [
      { Type: 'volume', Name: 'data', Destination: '/data' },
      { Type: 'volume', Name: 'cache', Destination: '/cache' },
      { Type: 'volume', Name: 'f'.repeat(64), Destination: '/anon' },
      { Type: 'bind', Source: '/srv', Destination: '/srv' },
      { Type: 'tmpfs', Destination: '/run' },
    ],
    State: { Status: 'running', Running: true, Paused: false },
    ...over,
  } as unknown as ContainerInspect;
}

const net = {
  Name: 'appnet',
  Driver: 'bridge',
  Options: {},
  Labels: { x: 'y' },
  Internal: false,
  Attachable: true,
  EnableIPv6: false,
  IPAM: { Driver: 'default', Config: [] },
} as unknown as NetworkInspect;

describe('captureSpec', () => {
  it('keeps the configuration, drops engine-assigned values', () => {
    const spec = captureSpec(inspect(), new Map([['appnet', net]]));
    expect(spec.config).toMatchObject({ Env: ['A=1'], Cmd: ['sh'], Labels: { a: 'b' }, User: '1000', WorkingDir: '/w' });
    expect(spec.config.Hostname).toBeUndefined();
    expect(spec.hostConfig.MaskedPaths).toBeUndefined();
    expect(spec.hostConfig.RestartPolicy).toEqual({ Name: 'always', MaximumRetryCount: 0 });
    expect(spec.hostConfig.Links).toEqual(['db:database']);
  });

  it('keeps an explicit hostname', () => {
    const spec = captureSpec(inspect({ Config: { Hostname: 'web-host' } }), new Map());
    expect(spec.config.Hostname).toBe('web-host');
  });

  it('records every network with its aliases, and the definition of user-defined ones', () => {
    const spec = captureSpec(inspect(), new Map([['appnet', net]]));
    expect(spec.networks.map((n) => n.name)).toEqual(['appnet', 'other', 'bridge']);
    expect(spec.networks[2].definition).toBeUndefined();
    expect(spec.networks[0]).toMatchObject({
      aliases: ['web-alias'],
      ipamConfig: { IPv4Address: '10.9.0.5' },
      definition: { driver: 'bridge', labels: { x: 'y' }, attachable: true },
    });
  });
});

describe('captureSpec: Config whole, MAC addresses', () => {
  it('takes every Config field but the image, one this code does not know included', () => {
    const info = inspect({ Config: { Image: 'base:1', Env: ['A=1'], FutureField: { x: 1 }, Empty: null } });
    expect(captureSpec(info, new Map()).config).toEqual({ Env: ['A=1'], FutureField: { x: 1 } });
  });

  it('keeps a MAC configured on API 1.41 (Config.MacAddress) for the primary network only, and not an assigned one', () => {
    const info = inspect({ Config: { MacAddress: '02:aa:bb:cc:dd:01' } });
    info.NetworkSettings.Networks = {
      appnet: { MacAddress: '02:aa:bb:cc:dd:01', IPAddress: '10.9.0.5' },
      other: { MacAddress: '02:42:0a:0a:00:07', IPAddress: '10.10.0.7' },
    } as never;
    const spec = captureSpec(info, new Map());
    expect(spec.config.MacAddress).toBe('02:aa:bb:cc:dd:01');
    expect(spec.networks.map((n) => n.macAddress)).toEqual(['02:aa:bb:cc:dd:01', undefined]);
  });

  it('keeps a MAC configured on API 1.44+ (endpoint only) when it is not the one derived from the IP', () => {
    const info = inspect({ Config: { Hostname: 'h' } });
    info.NetworkSettings.Networks = {
      appnet: { MacAddress: '02:aa:bb:cc:dd:01', IPAddress: '10.9.0.5', DNSNames: ['web'] },
      other: { MacAddress: '02:42:0a:0a:00:07', IPAddress: '10.10.0.7', DriverOpts: { k: 'v' }, GwPriority: 3 },
    } as never;
    const spec = captureSpec(info, new Map());
    expect(spec.networks.map((n) => [n.macAddress, n.settings])).toEqual([
      ['02:aa:bb:cc:dd:01', undefined],
      [undefined, { DriverOpts: { k: 'v' }, GwPriority: 3 }],
    ]);
    const { create, connect } = createOptions(spec, 'w', 'i');
    // Engines before API 1.44 take the MAC at create only from Config.
    expect(create.MacAddress).toBe('02:aa:bb:cc:dd:01');
    expect(create.NetworkingConfig?.EndpointsConfig?.appnet).toMatchObject({ MacAddress: '02:aa:bb:cc:dd:01' });
    expect(connect).toEqual([{ network: 'other', endpoint: { DriverOpts: { k: 'v' }, GwPriority: 3 } }]);
  });

  it('keeps a MAC configured on another network as Engine 26 (API 1.45) shows it: the primary in Config.MacAddress and on its endpoint', () => {
    const info = inspect({ Config: { MacAddress: '02:aa:bb:cc:dd:01' } });
    info.NetworkSettings.Networks = {
      appnet: { MacAddress: '02:aa:bb:cc:dd:01', IPAddress: '10.9.0.5' },
      other: { MacAddress: '02:aa:bb:cc:dd:02', IPAddress: '10.10.0.7' },
      third: { MacAddress: '02:42:0a:0b:00:07', IPAddress: '10.11.0.7' },
    } as never;
    const spec = captureSpec(info, new Map());
    expect(spec.networks.map((n) => n.macAddress)).toEqual(['02:aa:bb:cc:dd:01', '02:aa:bb:cc:dd:02', undefined]);
    expect(createOptions(spec, 'w', 'i').connect).toEqual([
      { network: 'other', endpoint: { MacAddress: '02:aa:bb:cc:dd:02' } },
      { network: 'third', endpoint: {} },
    ]);
  });

  it('gives API 1.44 and later every network at create (Engine 26.1 drops a MAC given at connect), older APIs one', () => {
    const info = inspect({ Config: { MacAddress: '02:aa:bb:cc:dd:01' }, HostConfig: { NetworkMode: 'appnet' } });
    info.NetworkSettings.Networks = {
      appnet: { MacAddress: '02:aa:bb:cc:dd:01', IPAddress: '10.9.0.5' },
      other: { MacAddress: '02:aa:bb:cc:dd:02', IPAddress: '10.10.0.7' },
    } as never;
    const spec = captureSpec(info, new Map());
    const current = createOptions(spec, 'w', 'i', '1.45');
    expect(current.create.NetworkingConfig?.EndpointsConfig).toEqual({
      appnet: { MacAddress: '02:aa:bb:cc:dd:01' },
      other: { MacAddress: '02:aa:bb:cc:dd:02' },
    });
    expect(current.connect).toEqual([]);
    const old = createOptions(spec, 'w', 'i', '1.41');
    expect(Object.keys(old.create.NetworkingConfig?.EndpointsConfig ?? {})).toEqual(['appnet']);
    expect(old.connect).toEqual([{ network: 'other', endpoint: { MacAddress: '02:aa:bb:cc:dd:02' } }]);
    expect(apiAtLeast('1.44', '1.44') && apiAtLeast('2.0', '1.44') && !apiAtLeast('1.43', '1.44') && !apiAtLeast('1.9', '1.44')).toBe(true);
  });

  it('derives the MAC a bridge gives an IPv4 address', () => {
    expect(macFromIp('172.17.0.2')).toBe('02:42:ac:11:00:02');
    expect(macFromIp('')).toBeUndefined();
  });
});

describe('createOptions', () => {
  it('creates on the network its mode names and connects the others, the default bridge included, before start', () => {
    const { create, connect } = createOptions(captureSpec(inspect(), new Map()), 'web2', 'snap:1');
    expect(create).toMatchObject({ name: 'web2', Image: 'snap:1', Env: ['A=1'] });
    expect(create.NetworkingConfig?.EndpointsConfig).toEqual({ appnet: { Aliases: ['web-alias'], IPAMConfig: { IPv4Address: '10.9.0.5' } } });
    expect(connect).toEqual([
      { network: 'other', endpoint: {} },
      { network: 'bridge', endpoint: {} },
    ]);
  });

  it('creates a default-mode container on the bridge and connects its user networks', () => {
    const info = inspect();
    (info.HostConfig as { NetworkMode: string }).NetworkMode = 'default';
    const { create, connect } = createOptions(captureSpec(info, new Map()), 'web2', 'snap:1');
    expect(Object.keys(create.NetworkingConfig?.EndpointsConfig ?? {})).toEqual(['bridge']);
    expect(connect.map((c) => c.network)).toEqual(['appnet', 'other']);
  });

  it("drops what the engine refuses with another container's network, and names that container", () => {
    const info = inspect({ Config: { Hostname: 'f00dfeedf00d', ExposedPorts: { '80/tcp': {} }, Image: 'x' } });
    Object.assign(info.HostConfig, { NetworkMode: 'container:f00dfeedf00d1234', PidMode: 'container:f00dfeedf00d1234', PortBindings: {} });
    const spec = captureSpec(info, new Map(), (ref) => (ref.startsWith('f00d') ? 'peer' : ref));
    expect(spec.config.Hostname).toBeUndefined();
    expect(spec.config.ExposedPorts).toBeUndefined();
    expect(spec.hostConfig).toMatchObject({ NetworkMode: 'container:peer', PidMode: 'container:peer' });
    expect(createOptions(spec, 'w', 'i').create.NetworkingConfig).toBeUndefined();
  });

  it('keeps empty masked paths (systempaths=unconfined) and drops the engine defaults', () => {
    expect(captureSpec(inspect(), new Map()).hostConfig.MaskedPaths).toBeUndefined();
    const info = inspect();
    Object.assign(info.HostConfig, { MaskedPaths: [], ReadonlyPaths: [] });
    expect(captureSpec(info, new Map()).hostConfig).toMatchObject({ MaskedPaths: [], ReadonlyPaths: [] });
  });
});

describe('mountsToTake', () => {
  it('tells named from anonymous volumes and takes bind mounts only when asked', () => {
    const info = inspect();
    expect(mountsToTake(info, { includeVolumes: true, includeBindMounts: false })).toEqual([
      { type: 'volume', name: 'f'.repeat(64), destination: '/anon', anonymous: true },
      { type: 'volume', name: 'cache', destination: '/cache', anonymous: false },
      { type: 'volume', name: 'data', destination: '/data', anonymous: false },
    ]);
    expect(mountsToTake(info, { includeVolumes: false, includeBindMounts: true })).toEqual([
      { type: 'bind', name: '', destination: '/srv', source: '/srv', anonymous: false },
    ]);
  });
});

describe('normalizeLinks', () => {
  it('turns inspect links into create links', () => {
    expect(normalizeLinks(['/db:/web/db', '/cache:/web/c'])).toEqual(['db:db', 'cache:c']);
    expect(normalizeLinks(null)).toBeUndefined();
  });
});

describe('restore order and renames', () => {
  it('creates containers others refer to first, and applies renames to references', async () => {
    const { restoreOrder } = await import('../../src/snapshot/restore-set.js');
    const { renameReferences } = await import('../../src/snapshot/spec.js');
    const rec = (name: string, hostConfig: Record<string, unknown>) => ({ name, spec: { config: {}, hostConfig, networks: [] } }) as never;
    const app = rec('app', { Links: ['db:database'], VolumesFrom: ['data:ro'] });
    const db = rec('db', { NetworkMode: 'container:data' });
    const data = rec('data', { Binds: ['vol:/v'] });
    expect(restoreOrder([app, db, data], new Map()).map((c: { name: string }) => c.name)).toEqual(['data', 'db', 'app']);
    const renamed = renameReferences(
      (app as { spec: never }).spec,
      new Map([
        ['db', 'db2'],
        ['data', 'data2'],
      ]),
    );
    expect(renamed.hostConfig).toMatchObject({ Links: ['db2:database'], VolumesFrom: ['data2:ro'] });
    expect(renameReferences((data as { spec: never }).spec, new Map([['vol', 'vol2']])).hostConfig.Binds).toEqual(['vol2:/v']);
  });
});
