import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import type { BlobDescriptor, SnapshotSet } from '../../src/snapshot/manifest.js';
import { copyBlobs, tagState, unwrittenLine, writeSetEverywhere } from '../../src/snapshot/set-writes.js';
import { MemoryDestination } from '../support/memory-destination.js';

function named(label: string): MemoryDestination {
  const dest = new MemoryDestination();
  Object.defineProperty(dest, 'label', { value: label });
  return dest;
}

function blob(text: string): { descriptor: BlobDescriptor; body: Buffer } {
  const body = Buffer.from(text);
  const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
  return { body, descriptor: { mediaType: 'application/octet-stream', digest, size: body.length, contentDigest: digest, contentSize: body.length } };
}

const layer = blob('layer');
const config = blob('config');
const volume = blob('volume');

function aSet(tag: string, created = '2026-12-01T00:00:00.000Z'): SnapshotSet {
  return {
    schemaVersion: 1,
    mediaType: 'application/vnd.container-snapshot.set.v1+json',
    tag,
    created,
    tool: { name: 'container-snapshot', version: '0.1.0' },
    source: { hostname: 'h', engine: { version: '20.10', apiVersion: '1.41', os: 'linux', arch: 'amd64' } },
    containers: [
      {
        name: 'db',
        id: 'c1',
        state: 'running',
        image: { id: 'sha256:img', baseImage: 'base', config: config.descriptor, layers: [layer.descriptor] },
        volumes: [{ type: 'volume', name: 'data', anonymous: false, destination: '/data', blob: volume.descriptor }],
        spec: {},
        pausedMs: 1,
      },
    ],
    failures: [],
  } as unknown as SnapshotSet;
}

describe('writing a set to several destinations', () => {
  it('writes where it can and reports each destination: the failure names the set, its containers, the phase and the destination', async () => {
    const [a, b] = [named('memory:a'), named('memory:b')];
    b.writeSet = () => Promise.reject(new Error('memory:b: ENOSPC: no space left on device, write'));
    const out = await writeSetEverywhere(aSet('t'), [a, b]);
    expect(out.placements).toEqual([
      { destination: 'memory:a', written: true },
      { destination: 'memory:b', written: false, error: 'Snapshot t (db) not written to memory:b: set document: ENOSPC: no space left on device, write' },
    ]);
    expect(out.refs.get('db')?.map((r) => r.destination)).toEqual(['memory:a']);
    expect(unwrittenLine('t', out.placements)).toBe(
      'Snapshot t (db) not written to memory:b: set document: ENOSPC: no space left on device, write. It is complete in memory:a; run again with tag t to write it to the rest.',
    );
    expect(unwrittenLine('t', out.placements.slice(0, 1))).toBeUndefined();
  });

  it('counts a destination holding the very same set as written, and refuses one holding a different set under the tag', async () => {
    const [same, other] = [named('memory:same'), named('memory:other')];
    await same.writeSet(aSet('t'));
    await other.writeSet(aSet('t', '2026-01-01T00:00:00.000Z'));
    let writes = 0;
    for (const d of [same, other]) d.writeSet = () => Promise.resolve({ refs: {} }).finally(() => writes++);
    const out = await writeSetEverywhere(aSet('t'), [same, other]);
    expect(out.placements).toEqual([
      { destination: 'memory:same', written: true },
      { destination: 'memory:other', written: false, error: 'Snapshot t (db) not written to memory:other: set document: a different snapshot t is there' },
    ]);
    expect(writes).toBe(0);
  });
});

describe('where a tag already is', () => {
  it('is free, to complete (one set in every holder), or refused (everywhere, or different sets)', async () => {
    const [a, b, c] = [named('memory:a'), named('memory:b'), named('memory:c')];
    expect(await tagState([a, b], 't')).toEqual({ holders: [], missing: [a, b] });
    await a.writeSet(aSet('t'));
    await b.writeSet(aSet('t'));
    const state = await tagState([a, b, c], 't');
    expect([state.holders, state.missing, state.set?.tag]).toEqual([[a, b], [c], 't']);
    await expect(tagState([a, b], 't')).rejects.toThrow('Snapshot t already exists in memory:a, memory:b. Expected a new tag.');
    await b.writeSet(aSet('t', '2026-01-01T00:00:00.000Z'));
    await expect(tagState([a, b, c], 't')).rejects.toThrow('Snapshot t differs between memory:a and memory:b. Expected a new tag.');
  });

  it('copies the blobs a destination lacks, each checked, and names what failed and where', async () => {
    const [from, to] = [named('memory:from'), named('memory:to')];
    for (const b of [layer, config, volume]) from.blobs.set(b.descriptor.digest, b.body);
    to.blobs.set(layer.descriptor.digest, layer.body);
    expect(await copyBlobs(aSet('t'), from, to)).toEqual({ written: 2, reused: 1 });
    expect([...to.blobs.keys()].sort()).toEqual([layer, config, volume].map((b) => b.descriptor.digest).sort());
    const bad = named('memory:bad');
    bad.blobs.set(layer.descriptor.digest, layer.body);
    bad.blobs.set(config.descriptor.digest, Buffer.from('tampered'));
    const empty = named('memory:empty');
    await expect(copyBlobs(aSet('t'), bad, empty)).rejects.toThrow(/^db image config: memory:empty: .*db image config \(memory:bad\)/);
    expect(empty.blobs.has(config.descriptor.digest)).toBe(false);
  });
});
