import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { Artifact, ArtifactClient } from '@actions/artifact';
import type { ArtifactRun } from '../../core/destination-input.js';
import { ACTION_WORDS, type Vocabulary } from '../../core/words.js';
import type { Keyring } from '../../crypto/keyring.js';
import { sha256Digest } from '../../oci/digest.js';
import { ManifestError, SetDigestError, damagedSummary, newestFirst, setBlobs, summarize, type SetSummary, type SnapshotSet } from '../../snapshot/manifest.js';
import { envelopeOf, openSealed, sealSet, sealedSummary } from '../../snapshot/sealed-sets.js';
import { DestinationError, type BlobWriter, type Destination, type SetReceipt } from '../types.js';
import { downloadOne, openBlobArtifact, type DownloadContext } from './download.js';
import { describeRun, findOptions } from './source-run.js';
import { blobArtifactName, newestSetArtifacts, setArtifactName } from './names.js';
import type { RunContext } from './run-context.js';
import { buildIndex, parseIndex, type ArtifactIndex } from './set-index.js';
import { StreamedUpload } from './upload.js';

const CREATED = 'org.opencontainers.image.created';

/**
 * Snapshot sets as workflow artifacts, through @actions/artifact (names.ts says which artifact holds what).
 * Blobs stream into the library's single-file upload (skipArchive; upload.ts hands it our stream in
 * place of the file), so a snapshot is never written to the runner's disk on the way out. A download lands in a temporary
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
    private readonly artifactRun: ArtifactRun | undefined,
    private readonly warn: (message: string) => void = () => undefined,
    private readonly words: Vocabulary = ACTION_WORDS,
    readonly keyring?: Keyring,
  ) {}

  private get downloads(): DownloadContext {
    return { client: this.client, tempDir: this.run.tempDir, find: findOptions(this.artifactRun), label: this.label, call: (what, fn) => this.call(what, fn) };
  }

  async check(access: 'read' | 'write' | 'plan'): Promise<void> {
    if (access !== 'read' && this.artifactRun) throw new DestinationError(`${this.label}: another run's artifacts can be read, not written.`);
    if (this.artifactRun) return;
    if (!this.run.runtimeToken || !this.run.resultsUrl) {
      throw new DestinationError(
        `${this.label} needs GitHub's artifact service, which exists only inside a workflow run (ACTIONS_RUNTIME_TOKEN and ACTIONS_RESULTS_URL are not set). ` +
          `Expected a step that uses the action, or dir:/registry: elsewhere${access === 'read' ? `, or ${this.words.name('run-id')} with ${this.words.token} to read another run's artifacts` : ''}.`,
      );
    }
  }

  private setName(tag: string, attempt = this.run.attempt): string {
    return setArtifactName(this.name, tag, attempt);
  }

  private async artifacts(refresh = false): Promise<Artifact[]> {
    if (!this.listing || refresh) {
      this.listing = (await this.call('list artifacts', () => this.client.listArtifacts(findOptions(this.artifactRun)))).artifacts;
    }
    return this.listing;
  }

  /** The newest attempt's set document of each tag, by artifact. */
  private async setArtifacts(): Promise<Map<string, Artifact>> {
    return newestSetArtifacts(this.name, await this.artifacts(true));
  }

  async hasBlob(_scope: unknown, digest: string): Promise<boolean> {
    return this.uploaded.has(digest);
  }

  async writeBlob(): Promise<BlobWriter> {
    const name = blobArtifactName(this.name, this.run.attempt, this.uid, ++this.seq);
    const upload = await StreamedUpload.start(
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
          throw new DestinationError(
            `${this.label}: artifact ${name} holds ${result.size} bytes (sha256:${result.digest}), expected ${size} bytes (${digest})`,
          );
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
    if (!artifact)
      throw new DestinationError(
        `${this.label}: artifact ${name} (blob ${digest}) is missing from ${describeRun(this.artifactRun)}; it may have expired or been deleted`,
      );
    return openBlobArtifact(this.downloads, artifact, digest);
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
    const index = buildIndex(set, doc, blobs);
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
    index.set = await openSealed(
      body,
      { mediaType: sealed.mediaType, digest: sha256Digest(body), annotations: sealed.annotations },
      this.keyring,
      tag,
      this.label,
    );
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
      this.warn(
        `Snapshot ${tag} in ${this.label}: the artifact service recorded no digest for ${artifact.name}, so a change to its set document cannot be detected.`,
      );
    }
    const { dir, file } = await downloadOne(this.downloads, artifact, artifact.digest, () => new SetDigestError(tag, this.label, artifact.digest ?? ''));
    try {
      const index = parseIndex(await readFile(file, 'utf8'), `${this.label} ${artifact.name}`);
      if (index.set && index.set.tag !== tag)
        throw new ManifestError(`Snapshot ${tag} in ${this.label}: its set document is the one of snapshot ${index.set.tag}; not used.`);
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
        out.push(
          !index.sealed && index.set
            ? summarize(index.set)
            : sealedSummary(
                tag,
                index.sealed?.annotations[CREATED] ?? artifact.createdAt?.toISOString() ?? '',
                envelopeOf(index.sealed?.annotations, `${this.label} ${artifact.name}`),
              ),
        );
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
    return new DestinationError(`${this.label}: cannot ${what} in ${describeRun(this.artifactRun)}: ${err instanceof Error ? err.message : String(err)}`);
  }

  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw this.failure(what, err);
    }
  }
}
