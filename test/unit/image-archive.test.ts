import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { loadArchive, storeSavedImage } from '../../src/snapshot/image-archive.js';
import { layerMediaType } from '../../src/snapshot/manifest.js';
import { readSmall } from '../../src/util/streams.js';
import { MemoryDestination } from '../support/memory-destination.js';

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const hex = (d: string) => d.slice('sha256:'.length);

function layerTar(files: Record<string, string>): Buffer {
  // A small, deterministic tar as a layer's content.
  const blocks: Buffer[] = [];
  for (const [name, body] of Object.entries(files)) {
    const header = Buffer.alloc(512);
    header.write(name, 0);
    header.write('0000644\0', 100);
    header.write(`${body.length.toString(8).padStart(11, '0')}\0`, 124);
    blocks.push(header, Buffer.concat([Buffer.from(body), Buffer.alloc((512 - (body.length % 512)) % 512)]));
  }
  return Buffer.concat([...blocks, Buffer.alloc(1024)]);
}

const layers = [layerTar({ 'base.txt': 'base layer' }), layerTar({ 'top.txt': 'the writable layer' })];
const diffIds = layers.map(sha);
// Three layers, the third the same as the first, as images with a repeated (often empty) layer have.
const imageLayers = [layers[0], layers[1], layers[0]];
const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: imageLayers.map(sha) } }));

function pack(entries: Array<[string, Buffer] | [string, 'symlink', string]>): Readable {
  const p = tar.pack();
  for (const e of entries) {
    if (e[1] === 'symlink') p.entry({ name: e[0], type: 'symlink', linkname: e[2] });
    else p.entry({ name: e[0], size: e[1].length }, e[1]);
  }
  p.finalize();
  return p as unknown as Readable;
}

/** What Engine 20.10 writes: <v1id>/layer.tar per layer, <config-hex>.json, manifest.json last. */
function legacySave(): Readable {
  const manifest = [{ Config: `${hex(sha(config))}.json`, RepoTags: null, Layers: ['aaa/layer.tar', 'bbb/layer.tar', 'ccc/layer.tar'] }];
  return pack([
    ['aaa/layer.tar', layers[0]],
    ['bbb/layer.tar', layers[1]],
    ['ccc/layer.tar', 'symlink', '../aaa/layer.tar'],
    [`${hex(sha(config))}.json`, config],
    ['manifest.json', Buffer.from(JSON.stringify(manifest))],
  ]);
}

/** What newer engines write: an OCI image layout that also carries manifest.json. */
function ociSave(): Readable {
  const manifest = [{ Config: `blobs/sha256/${hex(sha(config))}`, RepoTags: null, Layers: imageLayers.map((l) => `blobs/sha256/${hex(sha(l))}`) }];
  return pack([
    [`blobs/sha256/${hex(diffIds[0])}`, layers[0]],
    [`blobs/sha256/${hex(diffIds[1])}`, layers[1]],
    [`blobs/sha256/${hex(sha(config))}`, config],
    ['index.json', Buffer.from('{"schemaVersion":2,"manifests":[]}')],
    ['manifest.json', Buffer.from(JSON.stringify(manifest))],
    ['oci-layout', Buffer.from('{"imageLayoutVersion":"1.0.0"}')],
  ]);
}

async function entriesOf(stream: Readable): Promise<Map<string, Buffer>> {
  const extract = tar.extract();
  stream.pipe(extract);
  const out = new Map<string, Buffer>();
  for await (const entry of extract) out.set(entry.header.name, await readSmall(entry as unknown as Readable));
  return out;
}

describe.each([
  ['legacy', legacySave, 2],
  ['OCI layout', ociSave, 2],
] as const)('a %s docker save archive', (_kind, save, distinctLayers) => {
  it.each(['zstd', 'gzip'] as const)('is stored compressed (%s) and comes back as a docker load archive', async (compression) => {
    const dest = new MemoryDestination();
    const targets = [{ dest, scope: { container: 'web' } }];
    const result = await storeSavedImage(save(), targets, { diffIds, known: new Map(), layerMediaType: layerMediaType(compression), configTargets: targets });
    if ('retry' in result) throw new Error('unexpected retry');
    expect(result.image.config.digest).toBe(sha(config));
    expect(result.image.layers.map((l) => l.contentDigest)).toEqual(imageLayers.map(sha));
    expect(result.image.layers.every((l) => l.mediaType.endsWith(`+${compression}`) && l.size !== l.contentSize)).toBe(true);

    const back = await entriesOf(loadArchive(dest, { container: 'web' }, result.image, 'snap/web:t1'));
    const manifest = JSON.parse(back.get('manifest.json')!.toString()) as Array<{ Config: string; RepoTags: string[]; Layers: string[] }>;
    expect(manifest[0].RepoTags).toEqual(['snap/web:t1']);
    expect(back.get(manifest[0].Config)).toEqual(config);
    expect(manifest[0].Layers.map((p) => back.get(p))).toEqual(imageLayers);
  });

  it('reads but does not store layers a destination already holds', async () => {
    const dest = new MemoryDestination();
    const targets = [{ dest, scope: { container: 'web' } }];
    const opts = { diffIds, known: new Map(), layerMediaType: layerMediaType('zstd'), configTargets: targets };
    const first = await storeSavedImage(save(), targets, opts);
    if ('retry' in first) throw new Error('unexpected retry');
    const writes = dest.writes;
    const known = new Map(first.image.layers.map((l) => [l.contentDigest, l]));
    const second = await storeSavedImage(save(), targets, { ...opts, known });
    expect(second).toMatchObject({ written: 0, reused: distinctLayers });
    expect(dest.writes - writes).toBe(1); // the config only
  });
});

describe('layer reuse by size', () => {
  it('saves again without reuse when an entry had a stored layer size but other content', async () => {
    const dest = new MemoryDestination();
    const impostor = { mediaType: layerMediaType('zstd'), digest: sha(Buffer.from('x')), size: 1, contentDigest: diffIds[0], contentSize: layers[1].length };
    const result = await storeSavedImage(legacySave(), [{ dest, scope: { container: 'web' } }], {
      diffIds,
      known: new Map([[diffIds[0], impostor]]),
      layerMediaType: layerMediaType('zstd'),
      configTargets: [],
    });
    expect(result).toEqual({ retry: true });
  });

  it('refuses a truncated archive', async () => {
    const dest = new MemoryDestination();
    const whole = await readSmall(legacySave());
    const truncated = Readable.from([whole.subarray(0, whole.length - 3000)]);
    await expect(
      storeSavedImage(truncated, [{ dest, scope: { container: 'web' } }], {
        diffIds,
        known: new Map(),
        layerMediaType: layerMediaType('zstd'),
        configTargets: [],
      }),
    ).rejects.toThrow();
  });
});
