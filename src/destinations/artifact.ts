import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, constants, createReadStream, openSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import { ACTION_WORDS, type Vocabulary } from '../core/words.js';
import type { Artifact, ArtifactClient, FindOptions } from '@actions/artifact';
import type { ArtifactRun } from '../core/options.js';
import {
  ManifestError,
  SET_AGE_MEDIA_TYPE,
  SetDigestError,
  damagedSummary,
  newestFirst,
  parseSet,
  setBlobs,
  summarize,
  type SetSummary,
  type SnapshotSet,
} from '../snapshot/manifest.js';
import { isDigest } from '../oci/digest.js';
import type { Keyring } from '../crypto/keyring.js';
import { envelopeOf, openSealed, sealSet, sealedSummary } from '../snapshot/sealed-sets.js';
import { DestinationError, type BlobWriter, type Destination, type SetReceipt } from './types.js';
import { sha256Digest } from '../oci/digest.js';

const CREATED = 'org.opencontainers.image.created';

const INDEX_MEDIA_TYPE = 'application/vnd.container-snapshot.artifact-index.v1+json';

/**
 * What the set's artifact holds: the set document (in clear: `set`; encrypted: `sealed`, its age
 * bytes in base64 with its clear envelope, sealed-sets.ts), and which artifact stores each blob.
 */
interface ArtifactIndex {
  mediaType: typeof INDEX_MEDIA_TYPE;
  set?: SnapshotSet;
  sealed?: { mediaType: string; body: string; annotations: Record<string, string> };
  blobs: Record<string, string>;
}

/** The workflow run this process runs in, as the runner describes it. */
export interface RunContext {
  runtimeToken?: string;
  resultsUrl?: string;
  serverUrl: string;
  repository?: string;
  runId?: string;
  attempt: number;
  tempDir: string;
}

export function runContext(env: NodeJS.ProcessEnv): RunContext {
  return {
    runtimeToken: env.ACTIONS_RUNTIME_TOKEN || undefined,
    resultsUrl: env.ACTIONS_RESULTS_URL || undefined,
    serverUrl: (env.GITHUB_SERVER_URL || 'https://github.com').replace(/\/+$/, ''),
    repository: env.GITHUB_REPOSITORY || undefined,
    runId: env.GITHUB_RUN_ID || undefined,
    attempt: Number(env.GITHUB_RUN_ATTEMPT) >= 1 ? Number(env.GITHUB_RUN_ATTEMPT) : 1,
    tempDir: env.RUNNER_TEMP || tmpdir(),
  };
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * Snapshot sets as workflow artifacts, through @actions/artifact:
 *   NAME@<tag>.attempt-<n>.set.json   the set document and its blob index, uploaded last
 *   NAME.blob.<n>-<id>.<seq>          one artifact per blob (layer, volume, image config), unzipped
 * Blobs stream through a named pipe into the library's single-file upload (skipArchive), so a
 * snapshot is never written to the runner's disk on the way out. A download lands in a temporary
 * file, one blob at a time, removed once read.
 */
export class ArtifactDestination implements Destination {
  /** Blobs of the set being written: digest → the artifact that holds it. */
  private readonly uploaded = new Map<string, string>();
  /** Every blob artifact of the set being written, duplicates included: deleted if no set references them. */
  private pending: string[] = [];
  private readonly indexes = new Map<string, ArtifactIndex>();
  /** Tags already warned about: their set artifact has no recorded digest. */
  private readonly unchecked = new Set<string>();
  private listing?: Artifact[];
  private readonly uid = randomBytes(4).toString('hex');
  private seq = 0;

  constructor(
    readonly label: string,
    private readonly name: string,
    private readonly client: ArtifactClient,
    private readonly run: RunContext,
    private readonly retentionDays: number | undefined,
    private readonly other: ArtifactRun | undefined,
    private readonly warn: (message: string) => void = () => undefined,
    private readonly words: Vocabulary = ACTION_WORDS,
    readonly keyring?: Keyring,
  ) {}

  private get find(): FindOptions {
    if (!this.other) return {};
    const { runId, owner, repo, token } = this.other;
    return { findBy: { workflowRunId: runId, repositoryOwner: owner, repositoryName: repo, token } };
  }

  private where(): string {
    return this.other ? `run ${this.other.runId} of ${this.other.owner}/${this.other.repo}` : 'this workflow run';
  }

  async check(access: 'read' | 'write' | 'plan'): Promise<void> {
    if (access !== 'read' && this.other) throw new DestinationError(`${this.label}: another run's artifacts can be read, not written.`);
    if (this.other) return;
    if (!this.run.runtimeToken || !this.run.resultsUrl) {
      throw new DestinationError(
        `${this.label} needs GitHub's artifact service, which exists only inside a workflow run (ACTIONS_RUNTIME_TOKEN and ACTIONS_RESULTS_URL are not set). ` +
          `Expected a step that uses the action, or dir:/registry: elsewhere${access === 'read' ? `, or ${this.words.name('run-id')} with ${this.words.token} to read another run's artifacts` : ''}.`,
      );
    }
  }

  private setName(tag: string, attempt = this.run.attempt): string {
    return `${this.name}@${tag}.attempt-${attempt}.set.json`;
  }

  private async artifacts(refresh = false): Promise<Artifact[]> {
    if (!this.listing || refresh) {
      this.listing = (await this.call('list artifacts', () => this.client.listArtifacts(this.find))).artifacts;
    }
    return this.listing;
  }

  /** The newest attempt's set document of each tag, by artifact. */
  private async setArtifacts(): Promise<Map<string, Artifact>> {
    // '@' never occurs in a tag, so artifact:db does not take artifact:db@x's sets for its own.
    const pattern = new RegExp(`^${escapeRegExp(this.name)}@([A-Za-z0-9_][A-Za-z0-9._-]*)\\.attempt-(\\d+)\\.set\\.json$`);
    const newest = new Map<string, { artifact: Artifact; attempt: number }>();
    for (const artifact of await this.artifacts(true)) {
      const m = pattern.exec(artifact.name);
      if (!m) continue;
      const attempt = Number(m[2]);
      if ((newest.get(m[1])?.attempt ?? 0) < attempt) newest.set(m[1], { artifact, attempt });
    }
    return new Map([...newest].map(([tag, v]) => [tag, v.artifact]));
  }

  async hasBlob(_scope: unknown, digest: string): Promise<boolean> {
    return this.uploaded.has(digest);
  }

  async writeBlob(): Promise<BlobWriter> {
    const name = `${this.name}.blob.${this.run.attempt}-${this.uid}.${++this.seq}`;
    const upload = await PipeUpload.start(
      this.run.tempDir,
      name,
      (path, dir) => this.client.uploadArtifact(name, [path], dir, { skipArchive: true, retentionDays: this.retentionDays }),
      (err) => this.failure(`upload ${name}`, err),
    );
    return {
      stream: upload.stream,
      commit: async (digest, size) => {
        const result = await this.call(`upload ${name}`, () => upload.finish());
        this.pending.push(name);
        if (result.size !== size || `sha256:${result.digest}` !== digest) {
          throw new DestinationError(`${this.label}: artifact ${name} holds ${result.size} bytes (sha256:${result.digest}), expected ${size} bytes (${digest})`);
        }
        // A blob stored twice in one set (a retried image, a layer of a failed container): keep the first.
        if (!this.uploaded.has(digest)) this.uploaded.set(digest, name);
      },
      abort: async () => {
        if (await upload.cancel()) await this.remove(name);
      },
    };
  }

  /** Best effort: an artifact no set will reference. */
  private async remove(name: string): Promise<void> {
    await this.client.deleteArtifact(name).catch(() => undefined);
  }

  async readBlob(_scope: unknown, digest: string): Promise<Readable> {
    const name = [...this.indexes.values()].find((index) => index.blobs[digest])?.blobs[digest];
    if (!name) throw new DestinationError(`${this.label}: no artifact holds blob ${digest}`);
    const artifact = (await this.artifacts()).find((a) => a.name === name) ?? (await this.artifacts(true)).find((a) => a.name === name);
    if (!artifact) throw new DestinationError(`${this.label}: artifact ${name} (blob ${digest}) is missing from ${this.where()}; it may have expired or been deleted`);
    const { dir, file } = await this.download(artifact, digest);
    const stream = createReadStream(file);
    // Unlinked as soon as it is open: a crash or a signal leaves no multi-GB file behind.
    const remove = () => void rm(dir, { recursive: true, force: true });
    stream.once('open', remove);
    stream.once('close', remove);
    return stream;
  }

  /** One artifact into a fresh temporary directory, its digest checked by the library. */
  private async download(artifact: Artifact, digest?: string, mismatch?: () => Error): Promise<{ dir: string; file: string }> {
    const dir = await mkdtemp(join(this.run.tempDir, 'container-snapshot-dl-'));
    try {
      const result = await this.call(`download ${artifact.name}`, () =>
        this.client.downloadArtifact(artifact.id, { path: dir, ...this.find, ...(digest ? { expectedHash: digest } : {}) }),
      );
      if (result.digestMismatch && mismatch) throw mismatch();
      if (result.digestMismatch) throw new DestinationError(`${this.label}: artifact ${artifact.name} does not match its digest ${digest}; refusing it`);
      const files = await readdir(dir);
      if (files.length !== 1) throw new DestinationError(`${this.label}: artifact ${artifact.name} downloaded as ${files.length} files, expected one`);
      return { dir, file: join(dir, files[0]) };
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
  }

  async hasSet(tag: string): Promise<boolean> {
    return (await this.artifacts(true)).some((a) => a.name === this.setName(tag));
  }

  async writeSet(set: SnapshotSet): Promise<SetReceipt> {
    const blobs: Record<string, string> = {};
    for (const { digest } of setBlobs(set)) {
      const name = this.uploaded.get(digest);
      if (!name) throw new DestinationError(`${this.label}: blob ${digest} of set ${set.tag} was not uploaded`);
      blobs[digest] = name;
    }
    const doc = await sealSet(set, this.keyring);
    const index: ArtifactIndex =
      doc.mediaType === SET_AGE_MEDIA_TYPE
        ? { mediaType: INDEX_MEDIA_TYPE, sealed: { mediaType: doc.mediaType, body: doc.body.toString('base64'), annotations: doc.annotations }, blobs }
        : { mediaType: INDEX_MEDIA_TYPE, set, blobs };
    const name = this.setName(set.tag);
    const dir = await mkdtemp(join(this.run.tempDir, 'container-snapshot-set-'));
    try {
      await writeFile(join(dir, name), `${JSON.stringify(index, null, 2)}\n`);
      const result = await this.call(`upload ${name}`, () =>
        this.client.uploadArtifact(name, [join(dir, name)], dir, { skipArchive: true, retentionDays: this.retentionDays }),
      );
      const id = result.id ?? 0;
      const url = this.run.repository && this.run.runId ? `${this.run.serverUrl}/${this.run.repository}/actions/runs/${this.run.runId}/artifacts/${id}` : '';
      this.indexes.set(set.tag, { ...index, set });
      // Blobs no set references (containers that failed part-way, duplicates); the rest now belong to the set.
      const kept = new Set(Object.values(blobs));
      for (const orphan of this.pending.filter((n) => !kept.has(n))) await this.remove(orphan);
      this.pending = [];
      this.uploaded.clear();
      return {
        refs: Object.fromEntries(set.containers.map((c) => [c.name, { ref: `${this.label}#${set.tag}/${c.name}`, digest: c.image.id }])),
        artifact: { name, id, url },
      };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  async readSet(tag: string): Promise<SnapshotSet | undefined> {
    if (tag === 'latest') {
      // listSets has read every set's index: the newest is at hand (a damaged one is read again, to fail).
      const [newest] = await this.listSets();
      const index = newest && this.indexes.get(newest.tag);
      return newest ? (index ? this.setOf(newest.tag, index) : this.readSet(newest.tag)) : undefined;
    }
    const artifact = (await this.setArtifacts()).get(tag);
    return artifact ? this.setOf(tag, await this.readIndex(tag, artifact)) : undefined;
  }

  /** The index's set document: an encrypted one decrypted with the keyring (a KeyError without the key). */
  private async setOf(tag: string, index: ArtifactIndex): Promise<SnapshotSet> {
    if (index.set) return index.set;
    const sealed = index.sealed!;
    const body = Buffer.from(sealed.body, 'base64');
    // The artifact service checked the index's digest; the document inside it is the index's own.
    index.set = await openSealed(body, { mediaType: sealed.mediaType, digest: sha256Digest(body), annotations: sealed.annotations }, this.keyring, tag, this.label);
    return index.set;
  }

  /**
   * The set's artifact, checked against the digest the artifact service recorded at upload
   * (apart from the document): a mismatch is a SetDigestError; an artifact with no recorded
   * digest is used with a warning.
   */
  private async readIndex(tag: string, artifact: Artifact): Promise<ArtifactIndex> {
    this.indexes.delete(tag);
    if (!artifact.digest && !this.unchecked.has(tag)) {
      this.unchecked.add(tag);
      this.warn(`Snapshot ${tag} in ${this.label}: the artifact service recorded no digest for ${artifact.name}, so a change to its set document cannot be detected.`);
    }
    const { dir, file } = await this.download(artifact, artifact.digest, () => new SetDigestError(tag, this.label, artifact.digest ?? ''));
    try {
      const index = parseIndex(await readFile(file, 'utf8'), `${this.label} ${artifact.name}`);
      if (index.set && index.set.tag !== tag) throw new ManifestError(`Snapshot ${tag} in ${this.label}: its set document is the one of snapshot ${index.set.tag}; not used.`);
      this.indexes.set(tag, index);
      return index;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  async listSets(): Promise<SetSummary[]> {
    const out: SetSummary[] = [];
    for (const [tag, artifact] of await this.setArtifacts()) {
      try {
        const index = await this.readIndex(tag, artifact);
        out.push(!index.sealed && index.set ? summarize(index.set) : sealedSummary(tag, index.sealed?.annotations[CREATED] ?? artifact.createdAt?.toISOString() ?? '', envelopeOf(index.sealed?.annotations, `${this.label} ${artifact.name}`)));
      } catch (err) {
        if (!(err instanceof SetDigestError)) throw err;
        out.push(damagedSummary(tag, artifact.createdAt?.toISOString(), err));
      }
    }
    return out.sort(newestFirst);
  }

  /** Deletes the blob artifacts of a set that will not be written, so no orphan stays in the run. */
  async discard(): Promise<void> {
    for (const name of this.pending) await this.remove(name);
    this.pending = [];
    this.uploaded.clear();
  }

  private failure(what: string, err: unknown): Error {
    if (err instanceof DestinationError) return err;
    return new DestinationError(`${this.label}: cannot ${what} in ${this.where()}: ${err instanceof Error ? err.message : String(err)}`);
  }

  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw this.failure(what, err);
    }
  }
}

function parseIndex(text: string, where: string): ArtifactIndex {
  let doc: Partial<ArtifactIndex>;
  try {
    doc = JSON.parse(text) as Partial<ArtifactIndex>;
  } catch (err) {
    throw new DestinationError(`${where} is not JSON: ${(err as Error).message}`);
  }
  if (doc.mediaType !== INDEX_MEDIA_TYPE || typeof doc.blobs !== 'object' || doc.blobs === null) {
    throw new DestinationError(`${where} is not a container-snapshot artifact index. Expected mediaType ${INDEX_MEDIA_TYPE}.`);
  }
  for (const [digest, name] of Object.entries(doc.blobs)) {
    if (!isDigest(digest) || typeof name !== 'string') throw new DestinationError(`${where} has an invalid blob entry '${digest}'`);
  }
  if (doc.sealed && doc.set === undefined) {
    if (doc.sealed.mediaType !== SET_AGE_MEDIA_TYPE || typeof doc.sealed.body !== 'string') throw new DestinationError(`${where} holds an encrypted set document of an unknown kind. Expected ${SET_AGE_MEDIA_TYPE}.`);
    const missing = envelopeOf(doc.sealed.annotations, where).blobs.filter((d) => !doc.blobs![d]);
    if (missing.length > 0) throw new DestinationError(`${where} does not say where blob ${missing[0]} is`);
    return { mediaType: INDEX_MEDIA_TYPE, sealed: doc.sealed, blobs: doc.blobs };
  }
  const set = parseSet(JSON.stringify(doc.set), where);
  const missing = setBlobs(set).map((b) => b.digest).filter((d) => !doc.blobs![d]);
  if (missing.length > 0) throw new DestinationError(`${where} does not say where blob ${missing[0]} is`);
  return { mediaType: INDEX_MEDIA_TYPE, set, blobs: doc.blobs };
}

const execFileAsync = promisify(execFile);

interface Uploaded {
  size?: number;
  digest?: string;
  id?: number;
}

/** Pipes with a library reader that may be blocked in a thread: the process cannot exit until each sees end of file. */
const livePipes = new Set<PipeUpload>();
let exitHookInstalled = false;

function closeLivePipesOnExit(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const pipe of livePipes) pipe.closeNow();
  });
}

/**
 * A single-file artifact upload fed from a stream: the library reads a named pipe as the file.
 * Our end opens only once the library's end is open (a pipe nobody holds loses what it buffered),
 * non-blocking, so no thread of ours ever waits on the pipe. Closing our end is the reader's end of
 * file, so every way out (done, cancelled, failed, process exit) closes it.
 */
class PipeUpload {
  readonly stream = new PassThrough();
  private fd?: number;
  private socket?: Socket;
  private cancelled = false;
  private settled = false;
  private finalized = false;
  private readonly piped: Promise<void>;

  private constructor(
    private readonly path: string,
    private readonly dir: string,
    private readonly uploading: Promise<Uploaded>,
    private readonly failure: (err: unknown) => Error,
  ) {
    livePipes.add(this);
    closeLivePipesOnExit();
    // Failures reach the caller through the pipeline while it runs, and through finish() after: never as an unhandled event.
    this.stream.on('error', () => undefined);
    this.piped = this.connect();
    this.piped.catch((err: unknown) => this.stream.destroy(this.failure(err)));
    uploading.then(
      () => {
        this.finalized = true;
        this.settled = true;
      },
      (error: unknown) => {
        this.settled = true;
        // The library gave up: fail the writer instead of waiting on a pipe nobody reads.
        this.stream.destroy(this.failure(error));
        this.socket?.destroy();
      },
    );
    void uploading.catch(() => undefined).finally(() => livePipes.delete(this));
  }

  static async start(
    tempRoot: string,
    name: string,
    upload: (path: string, dir: string) => Promise<Uploaded>,
    failure: (err: unknown) => Error,
  ): Promise<PipeUpload> {
    const dir = await mkdtemp(join(tempRoot, 'container-snapshot-up-'));
    const path = join(dir, name);
    try {
      await execFileAsync('mkfifo', ['-m', '600', path]);
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw new DestinationError(`Cannot make a named pipe in ${tempRoot} to stream to the artifact service: ${(err as Error).message}`);
    }
    return new PipeUpload(path, dir, upload(path, dir), failure);
  }

  /** Opens our end once the library has opened its end (after creating the artifact), until the upload settles. */
  private async connect(): Promise<void> {
    while (this.fd === undefined) {
      if (this.settled) throw new Error('the artifact service refused the upload');
      try {
        this.fd = openSync(this.path, constants.O_WRONLY | constants.O_NONBLOCK);
      } catch (err) {
        // ENXIO: the library has not opened its end yet.
        if ((err as NodeJS.ErrnoException).code !== 'ENXIO') throw err;
        await delay(20);
      }
    }
    this.socket = new Socket({ fd: this.fd, readable: false, writable: true });
    // Cancelled before the library opened its end: give it end of file at once, so it does not wait forever.
    if (this.cancelled) this.socket.destroy();
    await pipeline(this.stream, this.socket);
  }

  /** Waits for everything written to be uploaded, and the artifact finalized. */
  async finish(): Promise<Uploaded> {
    try {
      const [piped, uploaded] = await Promise.allSettled([this.piped, this.uploading]);
      // The library's reason first: a failed pipe is only its consequence.
      if (uploaded.status === 'rejected') throw uploaded.reason;
      if (piped.status === 'rejected') throw piped.reason;
      return uploaded.value;
    } finally {
      await rm(this.dir, { recursive: true, force: true });
    }
  }

  /** Stops the upload; true when the library finalized an artifact anyway (it saw end of file). */
  async cancel(): Promise<boolean> {
    this.cancelled = true;
    this.stream.destroy();
    this.socket?.destroy();
    await this.uploading.catch(() => undefined);
    await rm(this.dir, { recursive: true, force: true });
    return this.finalized;
  }

  /** At process exit (synchronous): end of file for a reader still blocked on the pipe. */
  closeNow(): void {
    try {
      if (this.fd !== undefined) closeSync(this.fd);
      else closeSync(openSync(this.path, constants.O_WRONLY | constants.O_NONBLOCK));
    } catch {
      // No reader, or already closed.
    }
  }
}
