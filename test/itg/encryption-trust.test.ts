import { execFileSync } from 'node:child_process';
import { createCipheriv, createHash, createHmac, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { list, verify } from '../../src/commands.js';
import { parseDestination } from '../../src/core/destination-input.js';
import { Keyring } from '../../src/crypto/keyring.js';
import { DirDestination } from '../../src/destinations/dir/index.js';
import { SET_SCOPE } from '../../src/destinations/types.js';
import { storeBlob } from '../../src/snapshot/blobs.js';
import { isChunked, storedBlobs, type BlobDescriptor, type SnapshotSet } from '../../src/snapshot/manifest.js';
import { setsTable } from '../../src/report.js';
import { ENVELOPE_ANNOTATION, ENVELOPE_DIGEST_ANNOTATION } from '../../src/snapshot/sealed-sets.js';
import { backUp, restoreFrom, testEnv } from '../support/commands.js';
import { Resources, quietLog, runContainer, treeDigest, waitFor } from '../support/fixtures.js';

const words = { decrypt: 'a key' };

function keygen(path: string): { identityFile: string; identity: string; recipient: string } {
  execFileSync('age-keygen', ['-o', path], { stdio: 'ignore' });
  const identity = readFileSync(path, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('AGE-SECRET-KEY-'))!;
  return { identityFile: path, identity, recipient: execFileSync('age-keygen', ['-y', path], { encoding: 'utf8' }).trim() };
}

/** What anyone holding only the public keys can seal: a record keyed by the recipients alone. */
function sealWithPublicKeys(record: unknown, recipients: string[]): string {
  const key = createHmac('sha256', 'container-snapshot dedupe v1')
    .update([...recipients].sort().join('\n'))
    .digest();
  const nonce = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  const body = Buffer.concat([cipher.update(JSON.stringify(record)), cipher.final()]);
  return Buffer.concat([nonce, cipher.getAuthTag(), body]).toString('base64');
}

describe('encrypted stores: what a backup and a restore trust', () => {
  const res = new Resources(inject('runPrefix'), 'enctrust');
  const name = res.name('app');
  const volume = res.volume('data');
  let keys: ReturnType<typeof keygen>;

  beforeAll(async () => {
    keys = keygen(join(res.tempDir(), 'key.txt'));
    await runContainer(
      {
        name,
        Image: inject('fixtureImage'),
        Env: ['API_TOKEN=tok-5d1e-never-logged'],
        Cmd: ['sh', '-c', '[ -f /data/f ] || echo row > /data/f; exec sleep 100000'],
        HostConfig: { Binds: [`${volume}:/data`] },
      },
      'running',
    );
    await waitFor(() =>
      treeDigest(name, '/data/f').then(
        () => true,
        () => false,
      ),
    );
  });
  afterAll(() => res.cleanup());

  it('a dedupe record forged with the public keys is never reused: the next backup stays restorable', async () => {
    const root = join(res.tempDir(), 'store');
    const store = `dir:${root}`;
    await backUp({ containers: name, destination: store, tag: 'h1', 'encryption-recipients': keys.recipient });
    const reader = new DirDestination(store, root, () => undefined, new Keyring(undefined, { identities: [keys.identity] }, words));
    const honest = (await reader.readSet('h1'))!;

    // The forger: the public key, a junk blob, and a set whose record maps every content digest to it.
    const forger = new DirDestination(store, root, () => undefined, new Keyring({ recipients: [keys.recipient] }, undefined, words));
    const junk = await storeBlob(Readable.from([randomBytes(64)]), [{ dest: forger, scope: SET_SCOPE }], 'application/vnd.oci.image.layer.v1.tar+zstd');
    const poisoned = (b: BlobDescriptor): BlobDescriptor => ({ ...junk, mediaType: b.mediaType, contentDigest: b.contentDigest, contentSize: b.contentSize });
    const containers = honest.containers.map((c) => ({
      ...c,
      image: { ...c.image, layers: c.image.layers.map(poisoned) },
      volumes: c.volumes.map((v) => ({ ...v, blob: isChunked(v.blob) ? { ...v.blob, chunks: v.blob.chunks.map(poisoned) } : poisoned(v.blob) })),
    }));
    const forged: SnapshotSet = { ...honest, tag: 'f1', created: new Date(Date.parse(honest.created) + 1000).toISOString(), containers };
    await forger.writeSet(forged);
    const tagFile = join(root, 'sets', 'f1.json');
    const record = JSON.parse(readFileSync(tagFile, 'utf8')) as { annotations: Record<string, string> };
    const envelope = JSON.parse(record.annotations[ENVELOPE_ANNOTATION]) as Record<string, unknown>;
    envelope.dedupe = sealWithPublicKeys(
      {
        containers: containers.map((c) => ({
          name: c.name,
          image: { layers: c.image.layers },
          volumes: c.volumes.map((v) => ({ destination: v.destination, blob: v.blob })),
        })),
      },
      [keys.recipient],
    );
    record.annotations[ENVELOPE_ANNOTATION] = JSON.stringify(envelope);
    record.annotations[ENVELOPE_DIGEST_ANNOTATION] = `sha256:${createHash('sha256').update(record.annotations[ENVELOPE_ANNOTATION]).digest('hex')}`;
    writeFileSync(tagFile, JSON.stringify(record));

    const h2 = await backUp({ containers: name, destination: store, tag: 'h2', 'encryption-recipients': keys.recipient });
    // The honest record of h1 (sealed with this host's key) is still reused.
    expect(h2.containers[0].blobs.reused).toBeGreaterThanOrEqual(1);
    const set = (await reader.readSet('h2'))!;
    const used = [...set.containers[0].image.layers, ...set.containers[0].volumes.flatMap((v) => storedBlobs(v.blob))].map((b) => b.digest);
    expect(used).not.toContain(junk.digest);
    const v = await verify(parseDestination(store), 'h2', {}, { log: quietLog, env: testEnv, decryption: { identities: [keys.identity] } });
    expect(v.blobs).toBeGreaterThanOrEqual(3);
  });

  it('a clear set is refused when a key is given (it may have been put in place of an encrypted one); list says which sets are encrypted', async () => {
    const root = join(res.tempDir(), 'clear');
    const store = `dir:${root}`;
    await backUp({ containers: name, destination: store, tag: 'c1' });
    await backUp({ containers: name, destination: store, tag: 'e1', 'encryption-recipients': keys.recipient });
    res.image(`container-snapshot/${name}:c1`); // what a restore that wrongly went ahead would leave
    await expect(restoreFrom({ source: store, snapshot: 'c1', 'decryption-identity': keys.identityFile, replace: 'true' })).rejects.toThrow(
      `Snapshot c1 in ${store} is not encrypted, yet decryption-identity or decryption-passphrase was given: a clear set may have been put where an encrypted one was. Not used; expected an encrypted set, or no key to read a clear one.`,
    );
    await expect(verify(parseDestination(store), 'c1', {}, { log: quietLog, env: testEnv, decryption: { identities: [keys.identity] } })).rejects.toThrow(
      /is not encrypted, yet/,
    );
    const sets = await list(parseDestination(store), {}, { log: quietLog, env: testEnv });
    expect(sets.map((s) => [s.tag, s.encrypted])).toEqual([
      ['e1', true],
      ['c1', false],
    ]);
    expect(setsTable(sets)).toMatch(/ENCRYPTED\ne1 .* age\nc1 .* no$/);
  });

  it('registry-pullable-image with a key: a warning names the secret-looking variables the clear image config holds, never their values', async () => {
    quietLog.lines.length = 0;
    await backUp({
      containers: name,
      destination: `dir:${join(res.tempDir(), 'pullable')}`,
      'encryption-recipients': keys.recipient,
      'registry-pullable-image': 'true',
    });
    expect(quietLog.lines).toContain(
      `warning: ${name}: its environment has API_TOKEN, whose names look secret; with registry-pullable-image: true the image config (which docker commit fills with the environment) is stored in clear, in every destination. Expected exclude-env to leave them out.`,
    );
    expect(quietLog.lines.join('\n')).not.toContain('tok-5d1e');
    quietLog.lines.length = 0;
    await backUp({ containers: name, destination: `dir:${join(res.tempDir(), 'sealed')}`, 'encryption-recipients': keys.recipient });
    expect(quietLog.lines.filter((l) => l.includes('look secret'))).toEqual([]);
  });
});
