import { describe, expect, it } from 'vitest';
import { engineCompatWarnings, engineMajor, warnEngineCompat } from '../../src/snapshot/engine-compat.js';
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
