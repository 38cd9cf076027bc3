import type { Artifact } from '@actions/artifact';

/*
 * The artifacts of destination artifact:NAME:
 *   NAME@<tag>.attempt-<n>.set.json   the set document and its blob index, uploaded last
 *   NAME.blob.<n>-<id>.<seq>          one artifact per blob (layer, volume, image config), unzipped
 */

/** The set artifact of `tag` written by run attempt `attempt`. */
export function setArtifactName(name: string, tag: string, attempt: number): string {
  return `${name}@${tag}.attempt-${attempt}.set.json`;
}

/** The `seq`th blob artifact of writer `uid` (random per destination) in run attempt `attempt`. */
export function blobArtifactName(name: string, attempt: number, uid: string, seq: number): string {
  return `${name}.blob.${attempt}-${uid}.${seq}`;
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Of `artifacts`, the newest attempt's set artifact of each tag of destination `name`: tag → artifact. */
export function newestSetArtifacts(name: string, artifacts: Artifact[]): Map<string, Artifact> {
  // '@' never occurs in a tag, so artifact:db does not take artifact:db@x's sets for its own.
  const pattern = new RegExp(`^${escapeRegExp(name)}@([A-Za-z0-9_][A-Za-z0-9._-]*)\\.attempt-(\\d+)\\.set\\.json$`);
  const newest = new Map<string, { artifact: Artifact; attempt: number }>();
  for (const artifact of artifacts) {
    const m = pattern.exec(artifact.name);
    if (!m) continue;
    const attempt = Number(m[2]);
    if ((newest.get(m[1])?.attempt ?? 0) < attempt) newest.set(m[1], { artifact, attempt });
  }
  return new Map([...newest].map(([tag, v]) => [tag, v.artifact]));
}
