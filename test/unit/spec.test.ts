import { describe, expect, it } from 'vitest';
import type { ContainerInspect, NetworkInspect } from '../../src/engine/engine.js';
import { captureSpec, createOptions, normalizeLinks } from '../../src/snapshot/spec.js';
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

const net = { Name: 'appnet', Driver: 'bridge', Options: {}, Labels: { x: 'y' }, Internal: false, Attachable: true, EnableIPv6: false, IPAM: { Driver: 'default', Config: [] } } as unknown as NetworkInspect;

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

  it('records user-defined networks with their aliases and definition, not the default bridge', () => {
    const spec = captureSpec(inspect(), new Map([['appnet', net]]));
    expect(spec.networks.map((n) => n.name)).toEqual(['appnet', 'other']);
    expect(spec.networks[0]).toMatchObject({ aliases: ['web-alias'], ipamConfig: { IPv4Address: '10.9.0.5' }, definition: { driver: 'bridge', labels: { x: 'y' }, attachable: true } });
  });
});

describe('createOptions', () => {
  it('creates on the first network and connects the rest before start', () => {
    const { create, connect } = createOptions(captureSpec(inspect(), new Map()), 'web2', 'snap:1');
    expect(create).toMatchObject({ name: 'web2', Image: 'snap:1', Env: ['A=1'] });
    expect(create.NetworkingConfig?.EndpointsConfig).toEqual({ appnet: { Aliases: ['web-alias'], IPAMConfig: { IPv4Address: '10.9.0.5' } } });
    expect(connect).toEqual([{ network: 'other', endpoint: {} }]);
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
    expect(mountsToTake(info, { includeVolumes: false, includeBindMounts: true })).toEqual([{ type: 'bind', name: '', destination: '/srv', source: '/srv', anonymous: false }]);
  });
});

describe('normalizeLinks', () => {
  it('turns inspect links into create links', () => {
    expect(normalizeLinks(['/db:/web/db', '/cache:/web/c'])).toEqual(['db:db', 'cache:c']);
    expect(normalizeLinks(null)).toBeUndefined();
  });
});
