/**
 * What a registry destination has learnt in this run about where blobs are, so that it asks the
 * registry less: blobs a manifest read from a repository names (the registry checked they were in
 * that repository when the manifest was pushed: distribution spec, "Pushing manifests"; a manifest
 * naming a blob the repository lacks is refused), blobs this run stored there, and set documents by
 * digest (content-addressed, so never stale).
 */

/** Set documents (their stored bytes) kept per run, at most: a listing reads each set's once. */
const DOCS_KEPT = 64;

export class KnownBlobs {
  /** Repository → digests known to be in it. */
  private readonly present = new Map<string, Set<string>>();
  /** Digest → the first repository it was seen in, so a blob in another repository is mounted rather than uploaded. */
  private readonly seenIn = new Map<string, string>();
  /** Config digest → the set document's stored bytes (checked against that digest when read). */
  private readonly docs = new Map<string, Buffer>();

  /** Records that `repo` holds each of `digests` (named by a manifest read from it, or stored there by this run). */
  add(repo: string, digests: Iterable<string>): void {
    let known = this.present.get(repo);
    if (!known) this.present.set(repo, (known = new Set()));
    for (const d of digests) {
      known.add(d);
      if (!this.seenIn.has(d)) this.seenIn.set(d, repo);
    }
  }

  /** Whether `repo` is known to hold `digest` (false: not known, not known to be absent). */
  has(repo: string, digest: string): boolean {
    return this.present.get(repo)?.has(digest) ?? false;
  }

  /** Records that `digest` was seen in `repo` (a set document names it there), for a later mount; says nothing of presence. */
  seen(repo: string, digest: string): void {
    if (!this.seenIn.has(digest)) this.seenIn.set(digest, repo);
  }

  /** A repository `digest` was seen in other than `repo`, to mount it from; undefined when none. */
  mountSource(repo: string, digest: string): string | undefined {
    const from = this.seenIn.get(digest);
    return from && from !== repo ? from : undefined;
  }

  /** The set document with config digest `digest`, when read before in this run. */
  doc(digest: string): Buffer | undefined {
    return this.docs.get(digest);
  }

  /** Keeps a set document read (its bytes checked against `digest`); the oldest goes past DOCS_KEPT. */
  keepDoc(digest: string, body: Buffer): void {
    if (this.docs.size >= DOCS_KEPT) this.docs.delete(this.docs.keys().next().value!);
    this.docs.set(digest, body);
  }
}
