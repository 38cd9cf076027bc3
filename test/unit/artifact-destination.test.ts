import { createHash } from 'node:crypto';
import { createReadStream, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as delay } from 'node:timers/promises';
import type { ArtifactClient } from '@actions/artifact';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ArtifactDestination } from '../../src/destinations/artifact/index.js';
import { storeBlob } from '../../src/snapshot/blobs.js';
import type { Destination } from '../../src/destinations/types.js';

/**
 * The artifact destination's own logic (the streamed upload, cleanup, bookkeeping) against a fake
 * client that reads the file as @actions/artifact does: create the artifact, then createReadStream.
 * The real library and a wire-level service are exercised in test/e2e/artifact.test.ts.
 */
class FakeClient {
  readonly deleted: string[] = [];
  readonly finalized = new Map<string, Buffer>();
  createMs = 50;
  failCreate = false;
  failAfterBytes?: number;

  async uploadArtifact(name: string, files: string[]) {
    await delay(this.createMs);
    if (this.failCreate) throw new Error('Failed to CreateArtifact: (403) Forbidden');
    const chunks: Buffer[] = [];
    let n = 0;
    for await (const c of createReadStream(files[0], { highWaterMark: 8 << 20 })) {
      chunks.push(c as Buffer);
      n += (c as Buffer).length;
      if (this.failAfterBytes !== undefined && n > this.failAfterBytes) throw new Error('Unable to make request: ECONNRESET');
    }
    const body = Buffer.concat(chunks);
    this.finalized.set(name, body);
    return { id: this.finalized.size, size: body.length, digest: createHash('sha256').update(body).digest('hex') };
  }

  async deleteArtifact(name: string) {
    this.deleted.push(name);
    return { id: 0 };
  }
}

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe('artifact destination: blobs streamed into the library', () => {
  let temp: string;
  let client: FakeClient;
  let dest: ArtifactDestination;

  beforeEach(() => {
    temp = mkdtempSync(join(tmpdir(), 'csx-art-unit-'));
    client = new FakeClient();
    const run = { attempt: 1, tempDir: temp, serverUrl: 'https://github.com', runtimeToken: 't', resultsUrl: 'http://x' };
    dest = new ArtifactDestination('artifact:x', 'x', client as unknown as ArtifactClient, run, undefined, undefined);
  });
  afterEach(() => rmSync(temp, { recursive: true, force: true }));

  it('streams a blob whole, small or large, and leaves nothing in the temporary directory', async () => {
    for (const body of [Buffer.from('tiny'), Buffer.alloc(5 << 20, 7)]) {
      const w = await dest.writeBlob();
      await pipeline(Readable.from([body]), w.stream);
      await w.commit(sha(body), body.length);
      expect(await dest.hasBlob({ set: true }, sha(body))).toBe(true);
    }
    expect([...client.finalized.values()].map((b) => b.length)).toEqual([4, 5 << 20]);
    expect(readdirSync(temp)).toEqual([]);
  });

  it('aborted before the library opens the file: returns, and deletes the empty artifact it made', async () => {
    client.createMs = 200;
    const w = await dest.writeBlob();
    await w.abort();
    expect(client.deleted).toHaveLength(1);
    expect(readdirSync(temp)).toEqual([]);
  });

  it('another destination failing first (storeBlob aborts every writer) settles at once', async () => {
    const broken = { label: 'registry:r', writeBlob: async () => Promise.reject(new Error('registry:r: cannot start upload: 401')) } as unknown as Destination;
    const started = Date.now();
    await expect(
      storeBlob(
        Readable.from([Buffer.from('x')]),
        [
          { dest, scope: { set: true } },
          { dest: broken, scope: { set: true } },
        ],
        'application/octet-stream',
      ),
    ).rejects.toThrow(/401/);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('a library failure mid-stream fails the writer with an error that names the destination', async () => {
    client.failAfterBytes = 1 << 20;
    const body = Buffer.alloc(4 << 20, 1);
    const w = await dest.writeBlob();
    const store = async () => {
      await pipeline(Readable.from([body]), w.stream);
      await w.commit(sha(body), body.length);
    };
    await expect(store()).rejects.toThrow(/^artifact:x: cannot upload x\.blob\.1-\w+\.1 in this workflow run: Unable to make request: ECONNRESET$/);
    await w.abort();
    expect(client.finalized.size).toBe(0);
  });

  it("a refused artifact fails the blob with the service's reason, and leaves nothing behind", async () => {
    client.failCreate = true;
    const w = await dest.writeBlob();
    const store = async () => {
      await pipeline(Readable.from([Buffer.from('data')]), w.stream);
      await w.commit(sha(Buffer.from('data')), 4);
    };
    await expect(store()).rejects.toThrow(/artifact:x: cannot upload .*\(403\) Forbidden/);
    expect(readdirSync(temp)).toEqual([]);
  });

  it('a size or digest the service disagrees with fails the commit; discard deletes what was uploaded', async () => {
    const w = await dest.writeBlob();
    await pipeline(Readable.from([Buffer.from('abc')]), w.stream);
    await expect(w.commit(sha(Buffer.from('abd')), 3)).rejects.toThrow(/holds 3 bytes .* expected 3 bytes/);
    await dest.discard();
    expect(client.deleted).toHaveLength(1);
  });

  it('a set once written is never discarded; duplicates and orphans are deleted when it is written', async () => {
    const body = Buffer.from('layer');
    const names: string[] = [];
    for (let i = 0; i < 2; i++) {
      const w = await dest.writeBlob();
      await pipeline(Readable.from([body]), w.stream);
      await w.commit(sha(body), body.length);
    }
    names.push(...client.finalized.keys());
    const blob = { mediaType: 'application/octet-stream', digest: sha(body), size: body.length, contentDigest: sha(body), contentSize: body.length };
    const set = {
      schemaVersion: 1,
      mediaType: 'application/vnd.container-snapshot.set.v1+json',
      tag: 't1',
      created: new Date().toISOString(),
      tool: { name: 'container-snapshot', version: 'test' },
      source: { hostname: 'h', engine: { version: '20.10', apiVersion: '1.41' } },
      containers: [{ name: 'c', id: 'i', state: 'running', image: { id: 'sha256:1', baseImage: 'b', config: blob, layers: [blob] }, volumes: [], spec: {} }],
      failures: [],
    };
    const receipt = await dest.writeSet(set as never);
    expect(receipt.artifact?.name).toBe('x@t1.attempt-1.set.json');
    expect(client.deleted).toEqual([names[1]]);
    await dest.discard();
    expect(client.deleted).toEqual([names[1]]);
  });
});
