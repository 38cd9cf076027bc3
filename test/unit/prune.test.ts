import { describe, expect, it } from 'vitest';
import { DestinationError, type Destination, type SweepResult } from '../../src/destinations/types.js';
import { RegistryDestination } from '../../src/destinations/registry.js';
import type { RegistryClient } from '../../src/registry/client.js';
import { RegistryError } from '../../src/registry/errors.js';
import type { SetSummary } from '../../src/snapshot/manifest.js';
import { prune, REGISTRY_GC_NOTE } from '../../src/snapshot/prune.js';
import { parseRetentionPolicy } from '../../src/core/retention-input.js';
import { pruneReport } from '../../src/report.js';

const log = {
  lines: [] as string[],
  info: () => undefined,
  warning(m: string) {
    this.lines.push(m);
  },
  error: () => undefined,
  group: <T>(_t: string, fn: () => Promise<T>) => fn(),
};
const NOW = new Date('2026-12-01T00:00:00Z');
const summary = (tag: string, created: string, damaged?: string): SetSummary => ({
  tag,
  created,
  containers: ['a'],
  bytes: 10,
  ...(damaged ? { damaged } : {}),
});
const SETS = [
  summary('d3', '2026-11-30T10:00:00Z'),
  summary('d2b', '2026-11-29T20:00:00Z'),
  summary('d2a', '2026-11-29T10:00:00Z'),
  summary('d1', '2026-11-28T10:00:00Z'),
];

/** Records the calls a prune makes, in order. */
function fake(sets: SetSummary[], opts: { sweep?: boolean; deletable?: boolean } = {}): Destination & { calls: string[] } {
  const calls: string[] = [];
  return {
    label: 'fake:',
    calls,
    check: async () => undefined,
    hasBlob: async () => false,
    writeBlob: () => Promise.reject(new Error('not used')),
    readBlob: () => Promise.reject(new Error('not used')),
    hasSet: async () => false,
    writeSet: () => Promise.reject(new Error('not used')),
    readSet: async () => undefined,
    listSets: async () => sets,
    ...(opts.deletable === false ? {} : { deleteSet: async (tag: string) => void calls.push(`delete ${tag}`) }),
    ...(opts.sweep === false
      ? {}
      : {
          sweep: async ({ without, dryRun }: { without: string[]; dryRun: boolean }): Promise<SweepResult> => {
            calls.push(`sweep${dryRun ? ' (dry run)' : ''} without [${without.join(',')}]`);
            return { blobs: 2, bytes: 2048 };
          },
        }),
  };
}

describe('prune', () => {
  const policy = parseRetentionPolicy('daily=2')!;

  it('removes each set the policy drops, tag first, then sweeps once over what remains', async () => {
    const dest = fake(SETS);
    const r = await prune(dest, policy, { dryRun: false, now: NOW, log });
    expect(dest.calls).toEqual(['delete d2a', 'delete d1', 'sweep without []']);
    expect(r.kept.map((k) => k.tag)).toEqual(['d3', 'd2b']);
    expect(r.removed.map((k) => k.tag)).toEqual(['d2a', 'd1']);
    expect(r.swept).toEqual({ blobs: 2, bytes: 2048 });
    expect(pruneReport(r)).toContain('Freed 2.0 KiB (2 unreferenced blob(s)).');
  });

  it('a dry run deletes nothing and sweeps as if the dropped sets were gone', async () => {
    const dest = fake(SETS);
    const r = await prune(dest, policy, { dryRun: true, now: NOW, log });
    expect(dest.calls).toEqual(['sweep (dry run) without [d2a,d1]']);
    expect(pruneReport(r)).toMatch(/would remove\s+d2a/);
    expect(pruneReport(r)).toContain('Would free 2.0 KiB');
  });

  it('keeps a damaged set, reports it, and counts it for no rule', async () => {
    const dest = fake([summary('bad', '2026-12-01T00:00:00Z', 'the set document does not match its digest'), ...SETS]);
    log.lines = [];
    const r = await prune(dest, parseRetentionPolicy('last=1')!, { dryRun: false, now: NOW, log });
    expect(r.damaged).toEqual([{ tag: 'bad', reason: 'the set document does not match its digest' }]);
    expect(r.kept.map((k) => k.tag)).toEqual(['d3']);
    expect(dest.calls).not.toContain('delete bad');
    expect(log.lines.join('\n')).toContain('snapshot bad is damaged and kept');
  });

  it('says where blobs go when the store sweeps them itself (a registry)', async () => {
    const r = await prune(fake(SETS, { sweep: false }), policy, { dryRun: false, now: NOW, log });
    expect(r.note).toBe(REGISTRY_GC_NOTE);
    expect(pruneReport(r)).toContain('garbage collection');
  });

  it('refuses a destination whose sets cannot be removed (artifact:), naming retention-days', async () => {
    await expect(prune(fake(SETS, { deletable: false }), policy, { dryRun: false, now: NOW, log })).rejects.toThrow(
      /a prune cannot remove sets there.*retention-days/,
    );
  });
});

describe('RegistryDestination.deleteSet', () => {
  it('a registry with deletes disabled (HTTP 405) is one clear error naming the setting', async () => {
    const doc = { schemaVersion: 1, mediaType: 'application/vnd.container-snapshot.set.v1+json', tag: 't', containers: [] };
    const body = Buffer.from(JSON.stringify(doc));
    const { createHash } = await import('node:crypto');
    const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
    const manifest = Buffer.from(JSON.stringify({ config: { mediaType: doc.mediaType, digest, size: body.length } }));
    const { Readable } = await import('node:stream');
    const client = {
      host: 'r.example',
      getManifest: async () => ({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${'a'.repeat(64)}`, body: manifest }),
      getBlob: async () => Readable.from([body]),
      deleteManifest: async () => {
        throw new RegistryError('delete manifest: 405 UNSUPPORTED', { status: 405, code: 'UNSUPPORTED' });
      },
    } as unknown as RegistryClient;
    const dest = new RegistryDestination('registry:r.example/p', 'p', client);
    const err = await dest.deleteSet('t').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DestinationError);
    expect((err as Error).message).toBe(
      'registry:r.example/p: the registry refuses deletes (HTTP 405 on p). Expected a registry with deletes enabled (distribution: storage.delete.enabled: true).',
    );
  });
});
