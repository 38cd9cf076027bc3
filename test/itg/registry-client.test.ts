import { createHash, randomBytes } from 'node:crypto';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, inject, it } from 'vitest';
import { RegistryClient } from '../../src/registry/client.js';
import { RegistryAuthError, RegistryError } from '../../src/registry/errors.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const reg = inject('registry');
const prefix = inject('runPrefix').toLowerCase();
const repoA = `${prefix}/regclient-a`;
const repoB = `${prefix}/regclient-b`;

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

function client(password = reg.password): RegistryClient {
  return new RegistryClient({ host: reg.host, auth: { username: reg.username, password } });
}

function generated(bytes: number, chunk = 64 * 1024): Readable {
  let left = bytes;
  return new Readable({
    read() {
      const n = Math.min(chunk, left);
      left -= n;
      this.push(n > 0 ? randomBytes(n) : null);
    },
  });
}

function hashing(): { stream: Transform; digest: () => string } {
  const hash = createHash('sha256');
  const stream = new Transform({
    transform(c: Buffer, _e, done) {
      hash.update(c);
      done(null, c);
    },
  });
  return { stream, digest: () => `sha256:${hash.digest('hex')}` };
}

async function digestOf(stream: Readable): Promise<{ digest: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const c of stream as AsyncIterable<Buffer>) {
    hash.update(c);
    size += c.length;
  }
  return { digest: `sha256:${hash.digest('hex')}`, size };
}

async function pushBuffer(c: RegistryClient, repo: string, data: Buffer): Promise<string> {
  const up = await c.createUpload(repo);
  up.stream.end(data);
  await up.finish(sha(data));
  return sha(data);
}

describe('RegistryClient against a real registry (distribution, htpasswd)', () => {
  const c = client();
  const size = 20 * 1024 * 1024;
  let bigDigest = '';

  it('pings with valid credentials', async () => {
    await c.ping();
  });

  it('raises RegistryAuthError for a wrong password without printing it', async () => {
    const wrong = `nope-${randomBytes(6).toString('hex')}`;
    const err = await client(wrong)
      .ping()
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryAuthError);
    expect((err as Error).message).toContain(`docker login ${reg.host}`);
    expect((err as Error).message).not.toContain(wrong);
    expect((err as Error).message).not.toContain(reg.password);
  });

  it('streams a 20 MB blob up and reads it back', async () => {
    const up = await c.createUpload(repoA);
    const hash = hashing();
    await pipeline(generated(size), hash.stream, up.stream);
    bigDigest = hash.digest();
    await up.finish(bigDigest);
    expect(await digestOf(await c.getBlob(repoA, bigDigest))).toEqual({ digest: bigDigest, size });
  });

  it('tells whether a blob exists', async () => {
    expect(await c.hasBlob(repoA, bigDigest)).toBe(true);
    expect(await c.hasBlob(repoA, sha(randomBytes(8)))).toBe(false);
    expect(await c.hasBlob(repoB, bigDigest)).toBe(false);
  });

  it('mounts a blob from another repository', async () => {
    expect(await c.mountBlob(repoB, bigDigest, repoA)).toBe(true);
    expect(await c.hasBlob(repoB, bigDigest)).toBe(true);
    expect(await c.mountBlob(repoB, sha(randomBytes(8)), repoA)).toBe(false);
  });

  it('puts, gets, lists and deletes an OCI image manifest', async () => {
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
    const layer = randomBytes(4096);
    const configDigest = await pushBuffer(c, repoB, config);
    const layerDigest = await pushBuffer(c, repoB, layer);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layerDigest, size: layer.length }],
      }),
    );
    const digest = await c.putManifest(repoB, 'snap-1', OCI_MANIFEST, manifest);
    expect(digest).toBe(sha(manifest));
    expect(await c.getManifest(repoB, 'snap-1')).toEqual({ mediaType: OCI_MANIFEST, digest, body: manifest });
    expect(await c.getManifest(repoB, 'no-such-tag')).toBeUndefined();
    expect(await c.getManifest(`${prefix}/no-such-repo`, 'latest')).toBeUndefined();
    expect(await c.listTags(repoB)).toEqual(['snap-1']);
    expect(await c.listTags(`${prefix}/no-such-repo`)).toEqual([]);

    await c.deleteManifest(repoB, digest);
    expect(await c.getManifest(repoB, digest)).toBeUndefined();
    expect(await c.listTags(repoB)).not.toContain('snap-1');
  });

  it('rejects a wrong digest at finish', async () => {
    const up = await c.createUpload(repoA);
    up.stream.end(Buffer.from('some bytes'));
    const err = await up.finish(sha(Buffer.from('other bytes'))).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect(err).not.toBeInstanceOf(RegistryAuthError);
    expect((err as RegistryError).status).toBe(400);
    expect((err as Error).message).toContain(repoA);
    await up.cancel();
  });
});
