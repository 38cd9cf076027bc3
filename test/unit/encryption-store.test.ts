import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parseRetentionPolicy } from '../../src/core/retention-input.js';
import { Keyring } from '../../src/crypto/keyring.js';
import { DirDestination } from '../../src/destinations/dir/index.js';
import { SET_SCOPE } from '../../src/destinations/types.js';
import { storeBlob } from '../../src/snapshot/blobs.js';
import { SET_MEDIA_TYPE, type BlobDescriptor, type SnapshotSet } from '../../src/snapshot/manifest.js';
import { prune } from '../../src/snapshot/prune.js';
import { ENVELOPE_ANNOTATION, ENVELOPE_DIGEST_ANNOTATION } from '../../src/snapshot/sealed-sets.js';

const words = { decrypt: 'decryption-identity or decryption-passphrase' };
const log = {
  lines: [] as string[],
  info: () => undefined,
  warning: (m: string) => void log.lines.push(m),
  error: () => undefined,
  group: <T>(_t: string, fn: () => Promise<T>) => fn(),
};

function makeSet(tag: string, created: string, layer: BlobDescriptor, config: BlobDescriptor, volume: BlobDescriptor): SnapshotSet {
  return {
    schemaVersion: 1,
    mediaType: SET_MEDIA_TYPE,
    tag,
    created,
    tool: { name: 'container-snapshot', version: 'test' },
    source: { hostname: 'h', engine: { version: '20.10', apiVersion: '1.41', os: 'linux', arch: 'amd64' } },
    containers: [
      {
        name: 'db',
        id: 'i',
        state: 'running',
        image: { id: 'sha256:1', baseImage: 'b', config, layers: [layer] },
        volumes: [{ name: 'v', destination: '/data', blob: volume }] as never,
        spec: { Config: { Env: ['MODE=primary'] } } as never,
        pausedMs: 0,
      },
    ],
    failures: [],
  };
}

describe('encrypted sets in a dir: store', () => {
  let root: string;
  let recipient: string;
  let identity: string;
  let dest: DirDestination;
  let set: SnapshotSet;
  beforeAll(async () => {
    identity = await generateX25519Identity();
    recipient = await identityToRecipient(identity);
  });
  beforeEach(async () => {
    root = mkdtempSync(join(tmpdir(), 'csx-sealed-'));
    dest = new DirDestination(`dir:${root}`, root, () => undefined, new Keyring({ recipients: [recipient] }, undefined, words));
    await dest.check('write');
    const store = (text: string, mediaType: string) => storeBlob(Readable.from([Buffer.from(text)]), [{ dest, scope: SET_SCOPE }], mediaType);
    const [layer, config, volume] = [
      await store('layer', 'application/vnd.oci.image.layer.v1.tar+zstd'),
      await store('{"config":{}}', 'application/vnd.oci.image.config.v1+json'),
      await store('volume', 'application/vnd.container-snapshot.volume.v1.tar+zstd'),
    ];
    set = makeSet('s1', '2026-01-01T00:00:00Z', layer, config, volume);
    await dest.writeSet(set);
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  const tagFile = () => join(root, 'sets', 's1.json');
  const blobs = () => readdirSync(join(root, 'blobs', 'sha256')).sort();
  const editEnvelope = (edit: (env: { blobs: string[]; containers: string[] }) => void, redigest: boolean) => {
    const record = JSON.parse(readFileSync(tagFile(), 'utf8')) as { annotations: Record<string, string> };
    const env = JSON.parse(record.annotations[ENVELOPE_ANNOTATION]) as { blobs: string[]; containers: string[] };
    edit(env);
    record.annotations[ENVELOPE_ANNOTATION] = JSON.stringify(env);
    if (redigest)
      record.annotations[ENVELOPE_DIGEST_ANNOTATION] = `sha256:${createHash('sha256').update(record.annotations[ENVELOPE_ANNOTATION]).digest('hex')}`;
    writeFileSync(tagFile(), JSON.stringify(record));
  };

  for (const [what, edit] of [
    [
      'one changed character in the blob list',
      (env: { blobs: string[] }) => void (env.blobs[0] = `${env.blobs[0].slice(0, -1)}${env.blobs[0].endsWith('0') ? '1' : '0'}`),
    ],
    ['an emptied blob list', (env: { blobs: string[] }) => void (env.blobs = [])],
  ] as const) {
    it(`${what}: the set is listed damaged and a prune sweeps no blob`, async () => {
      const before = blobs();
      expect(before).toHaveLength(4);
      editEnvelope(edit, false);
      const [listed] = await dest.listSets();
      expect(listed.damaged).toMatch(/does not match its digest \(container-snapshot\.encryption\.digest\); damaged/);
      const r = await prune(dest, parseRetentionPolicy('last=1')!, { dryRun: false, now: new Date(), log });
      expect(r.damaged.map((d) => d.tag)).toEqual(['s1']);
      expect(r.swept).toMatchObject({ blobs: 0, skipped: expect.stringMatching(/^snapshot s1 cannot be read \(.*does not match its digest/) });
      expect(blobs()).toEqual(before);
    });
  }

  it('an envelope edited with its digest made anew: refused once the key opens the document, and a prune with the key sweeps nothing', async () => {
    editEnvelope((env) => void (env.blobs = env.blobs.slice(1)), true);
    const reader = new DirDestination(`dir:${root}`, root, () => undefined, new Keyring(undefined, { identities: [identity] }, words));
    await expect(reader.readSet('s1')).rejects.toThrow(
      `Invalid encrypted snapshot at dir:${root} s1: its clear envelope does not match its set document (blobs, containers or origin); damaged.`,
    );
    const before = blobs();
    await dest.close();
    const r = await prune(reader, parseRetentionPolicy('last=1')!, { dryRun: false, now: new Date(), log });
    expect(r.swept).toMatchObject({ blobs: 0, skipped: expect.stringContaining('its clear envelope does not match its set document') });
    expect(blobs()).toEqual(before);
  });

  it('an intact envelope: read with the key, and a prune keeps every blob the set uses', async () => {
    const reader = new DirDestination(`dir:${root}`, root, () => undefined, new Keyring(undefined, { identities: [identity] }, words));
    expect((await reader.readSet('s1'))?.containers.map((c) => c.name)).toEqual(['db']);
    const before = blobs();
    const r = await prune(dest, parseRetentionPolicy('last=1')!, { dryRun: false, now: new Date(), log });
    expect([r.damaged, r.swept?.blobs]).toEqual([[], 0]);
    expect(blobs()).toEqual(before);
  });
});
