import { createReadStream } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { Artifact, ArtifactClient, FindOptions } from '@actions/artifact';
import { DestinationError } from '../types.js';

/** What a download needs of its destination: the client, where to land, whose run, and how to word a failure. */
export interface DownloadContext {
  client: ArtifactClient;
  tempDir: string;
  find: FindOptions;
  label: string;
  /** Runs one library call, its failure turned into a DestinationError naming `what`. */
  call<T>(what: string, fn: () => Promise<T>): Promise<T>;
}

/**
 * One artifact into a fresh temporary directory under `ctx.tempDir`, its digest checked by the
 * library against `digest` (when given). The caller removes `dir`. Throws `mismatch()` (a
 * DestinationError when absent) on a digest mismatch, a DestinationError when it is not one file.
 */
export async function downloadOne(ctx: DownloadContext, artifact: Artifact, digest?: string, mismatch?: () => Error): Promise<{ dir: string; file: string }> {
  const dir = await mkdtemp(join(ctx.tempDir, 'container-snapshot-dl-'));
  try {
    const result = await ctx.call(`download ${artifact.name}`, () =>
      ctx.client.downloadArtifact(artifact.id, { path: dir, ...ctx.find, ...(digest ? { expectedHash: digest } : {}) }),
    );
    if (result.digestMismatch && mismatch) throw mismatch();
    if (result.digestMismatch) throw new DestinationError(`${ctx.label}: artifact ${artifact.name} does not match its digest ${digest}; refusing it`);
    const files = await readdir(dir);
    if (files.length !== 1) throw new DestinationError(`${ctx.label}: artifact ${artifact.name} downloaded as ${files.length} files, expected one`);
    return { dir, file: join(dir, files[0]) };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** A blob artifact, downloaded and checked against `digest`, as a stream of its file. */
export async function openBlobArtifact(ctx: DownloadContext, artifact: Artifact, digest: string): Promise<Readable> {
  const { dir, file } = await downloadOne(ctx, artifact, digest);
  const stream = createReadStream(file);
  // Unlinked as soon as it is open: a crash or a signal leaves no multi-GB file behind.
  const remove = () => void rm(dir, { recursive: true, force: true });
  stream.once('open', remove);
  stream.once('close', remove);
  return stream;
}
