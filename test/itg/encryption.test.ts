import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { backup, list, prune, restore, verify } from '../../src/commands.js';
import { parseRetentionPolicy } from '../../src/core/retention-input.js';
import { Keyring } from '../../src/crypto/keyring.js';
import { buffer } from 'node:stream/consumers';
import { Readable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { parseBackupInputs, parseRestoreInputs } from '../../src/core/inputs.js';
import { parseDestination } from '../../src/core/destination-input.js';
import { storedBlobs } from '../../src/snapshot/manifest.js';
import { backUp, inputs, testEnv } from '../support/commands.js';
import { Resources, docker, quietLog, runContainer, treeDigest, waitFor } from '../support/fixtures.js';

const SECRET = 'pw-9f3c1e7a-never-in-clear';
const AGE_HEADER = 'age-encryption.org/v1\n';

/** An age key pair made by the reference age-keygen (Debian's age). */
function keygen(path: string): { identityFile: string; identity: string; recipient: string } {
  execFileSync('age-keygen', ['-o', path], { stdio: 'ignore' });
  const identity = readFileSync(path, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('AGE-SECRET-KEY-'))!;
  return { identityFile: path, identity, recipient: execFileSync('age-keygen', ['-y', path], { encoding: 'utf8' }).trim() };
}

function storeFiles(root: string): string[] {
  const blobs = readdirSync(join(root, 'blobs', 'sha256')).map((h) => join(root, 'blobs', 'sha256', h));
  const sets = readdirSync(join(root, 'sets')).map((n) => join(root, 'sets', n));
  return [...blobs, ...sets];
}

describe('encryption at rest (dir:)', () => {
  const res = new Resources(inject('runPrefix'), 'encrypt');
  const name = res.name('app');
  const volume = res.volume('data');
  let keys: ReturnType<typeof keygen>;
  let other: ReturnType<typeof keygen>;
  let byKey = '';
  let byPass = '';
  let volumeDigest = '';

  /** What this test has on the engine: its containers, volumes and images. */
  async function engineState(): Promise<string> {
    const containers = (await docker.listContainers({ all: true })).filter((c) => c.Names.some((n) => n.includes(res.prefix)));
    const volumes = ((await docker.listVolumes()).Volumes ?? []).filter((v) => v.Name.includes(res.prefix));
    const images = (await docker.listImages()).filter((i) => (i.RepoTags ?? []).some((t) => t.includes(res.prefix)));
    return JSON.stringify([containers.map((c) => [c.Id, c.State]), volumes.map((v) => v.Name), images.map((i) => i.Id)]);
  }

  async function expectRefused(values: Record<string, string>, message: string | RegExp): Promise<void> {
    const before = await engineState();
    await expect(restore(parseRestoreInputs(inputs(values)), { log: quietLog, env: testEnv })).rejects.toThrow(message);
    expect(await engineState()).toBe(before);
  }

  beforeAll(async () => {
    const dir = res.tempDir();
    keys = keygen(join(dir, 'key.txt'));
    other = keygen(join(dir, 'other.txt'));
    byKey = `dir:${join(dir, 'by-key')}`;
    byPass = `dir:${join(dir, 'by-pass')}`;
    await runContainer(
      {
        name,
        Image: inject('fixtureImage'),
        Env: [`DB_PASSWORD=${SECRET}`],
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
    volumeDigest = (await treeDigest(name, '/data')).digest;
    await backUp({ containers: name, destination: byKey, tag: 'k1', 'encryption-recipients': keys.recipient });
    await backUp({ containers: name, destination: byPass, tag: 'p1', 'encryption-passphrase': SECRET.toUpperCase() });
  });
  afterAll(() => res.cleanup());

  it('stores every blob and the set document as age files, and no environment value in clear', () => {
    const files = storeFiles(byKey.slice(4));
    const blobs = files.filter((f) => f.includes('/blobs/'));
    expect(blobs.length).toBeGreaterThanOrEqual(4);
    for (const f of blobs) expect(readFileSync(f).subarray(0, AGE_HEADER.length).toString('latin1'), f).toBe(AGE_HEADER);
    for (const f of [...files, ...storeFiles(byPass.slice(4))]) expect(readFileSync(f).includes(SECRET), f).toBe(false);
  });

  it('the reference age decrypts what the backup stored (the image config, to its content digest)', async () => {
    const set = await verifyAndRead(byKey, 'k1', { identities: [keys.identity] });
    const config = set.containers[0].image.config;
    expect(config.encryption).toBe('age');
    const plain = execFileSync('age', ['-d', '-i', keys.identityFile, join(byKey.slice(4), 'blobs', 'sha256', config.digest.slice(7))]);
    expect(`sha256:${createHash('sha256').update(plain).digest('hex')}`).toBe(config.contentDigest);
    expect(plain.toString('utf8')).toContain(SECRET);
  });

  it('and what the reference age encrypts, the keyring decrypts', async () => {
    const plain = randomBytes(200_000);
    const sealed = execFileSync('age', ['-r', keys.recipient], { input: plain });
    const keyring = new Keyring(undefined, { identities: [keys.identity] }, { decrypt: 'a key' });
    expect((await buffer(Readable.from([sealed]).pipe(keyring.decryptStream('a file from age')))).equals(plain)).toBe(true);
  });

  it('list shows an encrypted set by its clear envelope, without a key', async () => {
    const sets = await list(parseDestination(byKey), {}, { log: quietLog, env: testEnv });
    expect(sets.map((s) => [s.tag, s.containers, s.encryption?.format])).toEqual([['k1', [name], 'age']]);
    expect(JSON.stringify(sets)).not.toContain(SECRET);
  });

  it('a second set with the same recipients reuses the stored blobs; with the same passphrase too', async () => {
    const k2 = await backUp({ containers: name, destination: byKey, tag: 'k2', 'encryption-recipients': keys.recipient });
    expect(k2.containers[0].blobs).toMatchObject({ written: 0 });
    expect(k2.containers[0].blobs.reused).toBeGreaterThanOrEqual(2);
    const p2 = await backUp({ containers: name, destination: byPass, tag: 'p2', 'encryption-passphrase': SECRET.toUpperCase() });
    expect(p2.containers[0].blobs).toMatchObject({ written: 0 });
    // Other recipients: nothing reused (those blobs could not be read with the new key).
    const o1 = await backUp({ containers: name, destination: byKey, tag: 'o1', 'encryption-recipients': other.recipient });
    expect(o1.containers[0].blobs.reused).toBe(0);
  });

  it('a missing key, a wrong key and a wrong passphrase are refused before any change; a tampered blob fails its container and leaves nothing changed', async () => {
    await docker.getContainer(name).remove({ force: true });
    await docker.getVolume(volume).remove();
    await expectRefused(
      { source: byKey, snapshot: 'k1' },
      `Snapshot k1 in ${byKey} is encrypted (age). Expected decryption-identity or decryption-passphrase.`,
    );
    await expectRefused(
      { source: byKey, snapshot: 'k1', 'decryption-identity': other.identityFile },
      `Snapshot k1 in ${byKey} cannot be decrypted with the key or passphrase given: it was encrypted for another. Expected the identity or passphrase it was made with (decryption-identity or decryption-passphrase).`,
    );
    await expectRefused({ source: byPass, snapshot: 'p1', 'decryption-passphrase': 'not it' }, `Snapshot p1 in ${byPass} cannot be decrypted`);
    const set = await verifyAndRead(byKey, 'k1', { identities: [keys.identity] });
    const blob = join(byKey.slice(4), 'blobs', 'sha256', storedBlobs(set.containers[0].volumes[0].blob)[0].digest.slice(7));
    const original = readFileSync(blob);
    const changed = Buffer.from(original);
    changed[changed.length - 20] ^= 1;
    writeFileSync(blob, changed);
    try {
      // Read once, checked as it streams: the damaged volume fails its container, whose changes are put back.
      const before = await engineState();
      const r = await restore(parseRestoreInputs(inputs({ source: byKey, snapshot: 'k1', 'decryption-identity': keys.identityFile })), {
        log: quietLog,
        env: testEnv,
      });
      expect(r.containers.map((c) => [c.status, c.error])).toEqual([['failed', expect.stringMatching(/checksum mismatch/)]]);
      expect(await engineState()).toBe(before);
    } finally {
      writeFileSync(blob, original);
    }
    for (const line of quietLog.lines) expect([line.includes(SECRET), line.includes(SECRET.toUpperCase())], line).toEqual([false, false]);
  });

  for (const what of ['an identity file', 'the passphrase'] as const) {
    it(`restores the container, its volume and its environment with ${what}`, async () => {
      const [source, snapshot] = what === 'the passphrase' ? [byPass, 'p2'] : [byKey, 'k2'];
      const key: Record<string, string> =
        what === 'the passphrase' ? { 'decryption-passphrase': SECRET.toUpperCase() } : { 'decryption-identity': keys.identityFile };
      const r = await restore(parseRestoreInputs(inputs({ source, snapshot, ...key, replace: 'true' })), { log: quietLog, env: testEnv });
      expect(r.failed).toBe(0);
      res.image(`container-snapshot/${name}:${r.tag}`);
      const info = await docker.getContainer(name).inspect();
      expect(info.Config.Env).toContain(`DB_PASSWORD=${SECRET}`);
      await waitFor(() =>
        treeDigest(name, '/data').then(
          (t) => t.digest === volumeDigest,
          () => false,
        ),
      );
    });
  }

  async function verifyAndRead(location: string, tag: string, decryption: { identities: string[] }) {
    const deps = { log: quietLog, env: testEnv, decryption };
    const v = await verify(parseDestination(location), tag, {}, deps);
    expect(v.blobs).toBeGreaterThanOrEqual(3);
    const { openDestination } = await import('../../src/destinations/index.js');
    const { Keyring } = await import('../../src/crypto/keyring.js');
    const dest = await openDestination(parseDestination(location), { credentials: {}, keyring: new Keyring(undefined, decryption, { decrypt: 'a key' }) });
    return (await dest.readSet(tag))!;
  }

  it('completing a tag held by one destination needs the set read back: refused, with a new tag as the way out, when the backup holds only public keys', async () => {
    const more = `dir:${join(res.tempDir(), 'more')}`;
    await expect(
      backup(parseBackupInputs(inputs({ containers: name, destination: `${byKey}\n${more}`, tag: 'o1', 'encryption-recipients': other.recipient })), {
        log: quietLog,
        env: testEnv,
      }),
    ).rejects.toThrow(
      `Snapshot o1 in ${byKey} is encrypted (age) and cannot be read back by this backup. Expected a new tag (a backup reads a set back only with the encryption-passphrase it was made with).`,
    );
  });

  it('a prune without any key removes sets and sweeps their blobs, from the clear envelopes alone', async () => {
    const [r] = await prune([parseDestination(byKey)], parseRetentionPolicy('last=1', 'keep')!, false, {}, { log: quietLog, env: testEnv });
    expect(r.removed.map((s) => s.tag).sort()).toEqual(['k1', 'k2']);
    expect(r.swept?.blobs).toBeGreaterThanOrEqual(3);
    const left = await verify(parseDestination(byKey), 'o1', {}, { log: quietLog, env: testEnv, decryption: { identities: [other.identity] } });
    expect(left.blobs).toBeGreaterThanOrEqual(3);
  });
});
