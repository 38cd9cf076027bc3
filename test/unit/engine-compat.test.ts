import { describe, expect, it } from 'vitest';
import { apiGaps, describeGap, engineCompatWarnings, engineMajor, warnEngineCompat } from '../../src/snapshot/engine-compat.js';
import type { ContainerSpec } from '../../src/snapshot/spec.js';
import type { BlobDescriptor, SnapshotSet } from '../../src/snapshot/manifest.js';

const blob = (mediaType: string): BlobDescriptor => ({
  mediaType,
  digest: `sha256:${'a'.repeat(64)}`,
  size: 1,
  contentDigest: `sha256:${'b'.repeat(64)}`,
  contentSize: 1,
});

function set(engineVersion: string, layerMediaType: string): Pick<SnapshotSet, 'tag' | 'source' | 'containers'> {
  return {
    tag: 'nightly',
    source: { hostname: 'h', engine: { version: engineVersion, apiVersion: '1.45', os: 'linux', arch: 'amd64' } },
    containers: [{ image: { layers: [blob(layerMediaType)] } } as unknown as SnapshotSet['containers'][number]],
  };
}

const ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd';
const GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';

describe('restore onto an older engine than the set was made on', () => {
  it('reads the major version of Debian-style engine versions', () => {
    expect(engineMajor('26.1.5+dfsg1')).toBe(26);
    expect(engineMajor('20.10.24+dfsg1')).toBe(20);
    expect(engineMajor('dev')).toBeNaN();
  });

  it('warns that zstd layers of a set from Engine 26 cannot be pulled by Engine 20.10', () => {
    const [warning, ...more] = engineCompatWarnings(set('26.1.5+dfsg1', ZSTD), { version: '20.10.24+dfsg1' });
    expect(more).toEqual([]);
    expect(warning).toMatch(
      /^Snapshot nightly was made on Engine 26\.1\.5\+dfsg1 with zstd image layers, which Engine 20\.10\.24\+dfsg1 cannot pull \(Engine 23 or later can\)/,
    );
  });

  it.each([
    ['gzip layers from Engine 26 onto 20.10', '26.1.5', GZIP, '20.10.24'],
    ['zstd layers from Engine 20.10 onto 20.10 (not older)', '20.10.24', ZSTD, '20.10.24'],
    ['zstd layers from Engine 27 onto 24 (older, but pulls zstd)', '27.0.1', ZSTD, '24.0.7'],
    ['zstd layers from Engine 26 onto 28 (newer)', '26.1.5', ZSTD, '28.1.0'],
    ['an engine version without a number', 'dev', ZSTD, '20.10.24'],
  ])('says nothing for %s', (_what, from, mediaType, to) => {
    expect(engineCompatWarnings(set(from, mediaType), { version: to })).toEqual([]);
  });

  it('logs each warning through the restore log, asking the engine its version once', async () => {
    const warnings: string[] = [];
    let asked = 0;
    const engine = { info: async () => (asked++, { version: '20.10.24' }) };
    await warnEngineCompat(set('26.1.5', ZSTD) as SnapshotSet, engine, { warning: (m) => warnings.push(m) });
    expect(asked).toBe(1);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('zstd image layers');
  });
});

describe('configuration an older engine drops at create (Engine API version history)', () => {
  const record = (spec: Partial<ContainerSpec>) => ({ name: 'db', spec: { config: {}, hostConfig: {}, networks: [], ...spec } });
  const full = record({
    config: { Healthcheck: { Test: ['CMD', 'true'], StartInterval: 1_000_000_000 } },
    hostConfig: {
      NetworkMode: 'front',
      Annotations: { 'io.example/a': 'b' },
      Mounts: [
        { Type: 'volume', Source: 'pg', Target: '/data', VolumeOptions: { Subpath: 'pgdata' } },
        { Type: 'bind', Source: '/srv', Target: '/srv', BindOptions: { CreateMountpoint: true, ReadOnlyNonRecursive: true } },
        { Type: 'bind', Source: '/etc/app', Target: '/conf', ReadOnly: true },
        { Type: 'bind', Source: '/x', Target: '/x', ReadOnly: true, BindOptions: { ReadOnlyForceRecursive: true } },
        { Type: 'tmpfs', Target: '/run', TmpfsOptions: { Options: [['exec']] } },
      ],
    },
    networks: [
      { name: 'front', aliases: [], macAddress: '02:42:ac:11:00:02' },
      { name: 'back', aliases: [], macAddress: '02:42:ac:12:00:02' },
    ],
  });

  it('names each field Engine 20.10 (API 1.41) would drop; refuses only a volume subpath (the container would see the whole volume)', () => {
    const gaps = apiGaps([full], '1.41', '1.45');
    expect(gaps.map((g) => [g.field, g.minApi, g.refuse])).toEqual([
      ['HostConfig.Annotations', '1.43', false],
      ['Healthcheck.StartInterval', '1.44', false],
      ['network back MacAddress', '1.44', false],
      ['Mounts[/data].VolumeOptions.Subpath', '1.45', true],
      // ReadOnlyNonRecursive is what an engine below 1.44 does anyway: no gap.
      ['Mounts[/srv].BindOptions.CreateMountpoint', '1.42', false],
      ['Mounts[/conf] read-only recursively', '1.44', false],
      ['Mounts[/x].BindOptions.ReadOnlyForceRecursive', '1.44', false],
      ['Mounts[/run].TmpfsOptions.Options', '1.46', false],
    ]);
    // A set taken below API 1.44: its read-only binds were not recursive there either.
    expect(apiGaps([full], '1.41', '1.41').map((g) => g.field)).not.toContain('Mounts[/conf] read-only recursively');
    expect(describeGap(gaps[3], { version: '20.10.24', apiVersion: '1.41' })).toBe(
      'db: Engine 20.10.24 (API 1.41) drops Mounts[/data].VolumeOptions.Subpath (API 1.45, Engine 26.0 and later keep it): the container would see the whole volume pg at /data, not its subpath pgdata',
    );
  });

  it('names only what is newer than the engine: API 1.45 drops tmpfs options alone; the MAC of the network created on is no gap', () => {
    expect(apiGaps([full], '1.45').map((g) => g.field)).toEqual(['Mounts[/run].TmpfsOptions.Options']);
    expect(apiGaps([full], '1.46')).toEqual([]);
    expect(apiGaps([record({ networks: [{ name: 'bridge', aliases: [], macAddress: '02:42:ac:11:00:02' }] })], '1.41')).toEqual([]);
  });
});
