import { createHash } from 'node:crypto';
import { PassThrough, Readable, Writable } from 'node:stream';
import type { BlobScope, BlobWriter, Destination, SetReceipt } from '../../src/destinations/types.js';
import { newestFirst, summarize, type SetSummary, type SnapshotSet } from '../../src/snapshot/manifest.js';

/** A destination in memory, for unit tests of the pipelines' pure logic. */
export class MemoryDestination implements Destination {
  readonly label = 'memory:';
  readonly blobs = new Map<string, Buffer>();
  readonly sets = new Map<string, SnapshotSet>();
  writes = 0;

  async check(): Promise<void> {}

  async hasBlob(_scope: BlobScope, digest: string): Promise<boolean> {
    return this.blobs.has(digest);
  }

  async writeBlob(): Promise<BlobWriter> {
    const chunks: Buffer[] = [];
    const stream = new Writable({
      write: (chunk: Buffer, _enc, done) => {
        chunks.push(chunk);
        done();
      },
    });
    return {
      stream,
      commit: async (digest, size) => {
        const body = Buffer.concat(chunks);
        const actual = `sha256:${createHash('sha256').update(body).digest('hex')}`;
        if (actual !== digest || body.length !== size) throw new Error(`memory: blob ${digest} does not match its bytes`);
        this.writes++;
        this.blobs.set(digest, body);
      },
      abort: async () => undefined,
    };
  }

  async readBlob(_scope: BlobScope, digest: string): Promise<Readable> {
    const body = this.blobs.get(digest);
    if (!body) throw new Error(`memory: no blob ${digest}`);
    const out = new PassThrough();
    out.end(body);
    return out;
  }

  async hasSet(tag: string): Promise<boolean> {
    return this.sets.has(tag);
  }

  async writeSet(set: SnapshotSet): Promise<SetReceipt> {
    this.sets.set(set.tag, set);
    return { refs: Object.fromEntries(set.containers.map((c) => [c.name, { ref: `memory:${set.tag}/${c.name}` }])) };
  }

  async readSet(tag: string): Promise<SnapshotSet | undefined> {
    if (tag === 'latest') return this.sets.get((await this.listSets())[0]?.tag ?? '');
    return this.sets.get(tag);
  }

  async listSets(): Promise<SetSummary[]> {
    return [...this.sets.values()].map(summarize).sort(newestFirst);
  }
}
