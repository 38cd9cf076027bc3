import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';

/**
 * Names of what a run leaves on the host while it works, and how a later run tells its own
 * host's leftovers from a dead process: `<host>-<pid>-<random>`, where `<host>` is `h` and 8 hex
 * of the sha256 of the host name. Temporary commit images are tagged
 * `container-snapshot-tmp/<12 hex of the container ID>:<run name>`; spool directories are named
 * `<run name>`.
 */

export const TEMP_IMAGE_REPOSITORY = 'container-snapshot-tmp';

function hostTag(): string {
  return `h${createHash('sha256').update(hostname()).digest('hex').slice(0, 8)}`;
}

/** A new name for something process `pid` (this one by default) leaves on this host. */
export function runName(pid = process.pid): string {
  return `${hostTag()}-${pid}-${randomBytes(4).toString('hex')}`;
}

/** The pid of the process on this host that named `name` with runName; undefined for any other name. */
export function runNameOwner(name: string): number | undefined {
  const m = new RegExp(`^${hostTag()}-(\\d+)-[0-9a-f]+$`).exec(name);
  return m ? Number(m[1]) : undefined;
}

/** The repository and tag of a new temporary image of container `containerId`, made by process `pid` (this one by default). */
export function tempImageName(containerId: string, pid = process.pid): { repo: string; tag: string } {
  return { repo: `${TEMP_IMAGE_REPOSITORY}/${containerId.slice(0, 12)}`, tag: runName(pid) };
}

/** The pid of the process on this host that named temporary image `ref` (`repo:tag`); undefined for any other image. */
export function tempImageOwner(ref: string): number | undefined {
  const m = new RegExp(`^${TEMP_IMAGE_REPOSITORY}/[0-9a-f]{12}:(.+)$`).exec(ref);
  return m ? runNameOwner(m[1]) : undefined;
}
