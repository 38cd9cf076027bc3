import { createHash } from 'node:crypto';
import type { BlobWriter } from '../../src/destinations/types.js';
import { SET_MEDIA_TYPE, type SnapshotSet } from '../../src/snapshot/manifest.js';

/** A one-container set naming `digests` (sha256:…): the first as its image config, the rest as its layers; each 1 byte. */
export function setNaming(tag: string, digests: string[]): SnapshotSet {
  const blobs = digests.map((d) => ({ mediaType: 'application/octet-stream', digest: d, size: 1, contentDigest: d, contentSize: 1 }));
  return {
    schemaVersion: 1,
    mediaType: SET_MEDIA_TYPE,
    tag,
    created: '2026-12-02T00:00:00Z',
    tool: { name: 'container-snapshot', version: 'test' },
    source: { hostname: 'h', engine: { version: '20.10', apiVersion: '1.41', os: 'linux', arch: 'amd64' } },
    containers: [
      {
        name: 'app',
        id: 'i',
        state: 'running',
        image: { id: 'sha256:1', baseImage: 'b', config: blobs[0], layers: blobs.slice(1) },
        volumes: [],
        spec: { Config: {} } as never,
        pausedMs: 0,
      },
    ],
    failures: [],
  };
}

/** Writes `body` as a blob through a dir: destination's writer (it needs no scope) and commits it; returns its digest (sha256:…). */
export async function putBlob(dest: { writeBlob(): Promise<BlobWriter> }, body: Buffer): Promise<string> {
  const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
  const writer = await dest.writeBlob();
  await new Promise<void>((resolve, reject) => {
    writer.stream.once('error', reject);
    writer.stream.end(body, resolve);
  });
  await writer.commit(digest, body.length);
  return digest;
}
