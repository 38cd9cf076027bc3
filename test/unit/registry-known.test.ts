import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { RegistryDestination } from '../../src/destinations/registry.js';
import { KnownBlobs } from '../../src/destinations/registry-known.js';
import { parseSetManifest } from '../../src/destinations/registry-set-manifest.js';
import type { RegistryClient } from '../../src/registry/client.js';

const sha = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const SET_MEDIA_TYPE = 'application/vnd.container-snapshot.set.v1+json';

/** A registry client of sets in repository `p`, each with its set document and `chunks` named as layers; counts every call. */
function fakeClient(tags: string[], chunks: string[]) {
  const calls: string[] = [];
  const docs = new Map<string, Buffer>();
  const manifests = new Map<string, Buffer>();
  tags.forEach((tag, i) => {
    const doc = Buffer.from(JSON.stringify({ schemaVersion: 1, mediaType: SET_MEDIA_TYPE, tag, created: `2026-01-0${i + 1}T00:00:00Z`, containers: [] }));
    docs.set(sha(doc), doc);
    const layers = chunks.map((digest) => ({ mediaType: 'application/octet-stream', digest, size: 1 }));
    manifests.set(tag, Buffer.from(JSON.stringify({ schemaVersion: 2, config: { mediaType: SET_MEDIA_TYPE, digest: sha(doc), size: doc.length }, layers })));
  });
  const client = {
    host: 'r.example',
    listTags: async () => (calls.push('listTags'), tags),
    getManifest: async (_repo: string, tag: string) => {
      calls.push(`getManifest ${tag}`);
      const body = manifests.get(tag);
      return body && { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha(body), body };
    },
    getBlob: async (_repo: string, digest: string) => (calls.push(`getBlob ${digest}`), Readable.from([docs.get(digest)!])),
    hasBlob: async (repo: string, digest: string) => (calls.push(`hasBlob ${repo} ${digest}`), false),
    mountBlob: async () => (calls.push('mountBlob'), false),
    createUpload: async () => {
      calls.push('createUpload');
      return { stream: new Writable({ write: (_c, _e, cb) => cb() }), finish: async () => undefined, cancel: async () => undefined };
    },
  } as unknown as RegistryClient;
  return { client, calls };
}

describe('the registry destination asks the registry less', () => {
  it('lists sets reading each manifest and each set document once, and reads a listed set again without its document', async () => {
    const { client, calls } = fakeClient(['a', 'b', 'c'], []);
    const dest = new RegistryDestination('registry:r.example/p', 'p', client);
    expect((await dest.listSets()).map((s) => s.tag)).toEqual(['c', 'b', 'a']);
    expect(calls.filter((c) => c.startsWith('getManifest')).sort()).toEqual(['getManifest a', 'getManifest b', 'getManifest c']);
    expect(calls.filter((c) => c.startsWith('getBlob'))).toHaveLength(3);
    calls.length = 0;
    expect((await dest.readSet('b'))?.tag).toBe('b');
    expect(calls).toEqual(['getManifest b']);
  });

  it('knows the blobs a set manifest read names, and those it stored, without a HEAD; asks about any other', async () => {
    const chunk = sha('chunk');
    const { client, calls } = fakeClient(['a'], [chunk]);
    const dest = new RegistryDestination('registry:r.example/p', 'p', client);
    await dest.listSets();
    calls.length = 0;
    expect(await dest.hasBlob({ set: true }, chunk)).toBe(true);
    expect(calls).toEqual([]);
    // In the set's repository only: a container's repository is asked.
    expect(await dest.hasBlob({ container: 'app' }, chunk)).toBe(false);
    expect(calls).toEqual([`hasBlob p/app ${chunk}`, 'mountBlob']);
    calls.length = 0;
    const other = sha('other');
    expect(await dest.hasBlob({ set: true }, other)).toBe(false);
    const writer = await dest.writeBlob({ set: true });
    writer.stream.end(Buffer.from('other'));
    await writer.commit(other, 5);
    expect(await dest.hasBlob({ set: true }, other)).toBe(true);
    expect(calls).toEqual([`hasBlob p ${other}`, 'createUpload']);
  });
});

describe('KnownBlobs', () => {
  it('knows a blob per repository, and names another repository it was seen in to mount it from', () => {
    const known = new KnownBlobs();
    known.add('p', ['sha256:1']);
    expect(known.has('p', 'sha256:1')).toBe(true);
    expect(known.has('p/app', 'sha256:1')).toBe(false);
    expect(known.mountSource('p/app', 'sha256:1')).toBe('p');
    expect(known.mountSource('p', 'sha256:1')).toBeUndefined();
    known.seen('p/app', 'sha256:2');
    expect(known.has('p/app', 'sha256:2')).toBe(false);
    expect(known.mountSource('p/db', 'sha256:2')).toBe('p/app');
  });
});

describe('parseSetManifest', () => {
  it('names the config and every layer digest, and no config when it is not a set document', () => {
    const d = (s: string) => sha(s);
    const set = parseSetManifest(
      Buffer.from(JSON.stringify({ config: { mediaType: SET_MEDIA_TYPE, digest: d('c'), size: 3 }, layers: [{ digest: d('l') }, { digest: 'bad' }, null] })),
    );
    expect(set.named).toEqual([d('c'), d('l')]);
    expect(set.parsed.config).toEqual({ mediaType: SET_MEDIA_TYPE, digest: d('c'), size: 3 });
    const image = parseSetManifest(Buffer.from(JSON.stringify({ config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: d('c') } })));
    expect(image.parsed.config).toBeUndefined();
    expect(image.named).toEqual([d('c')]);
  });
});
