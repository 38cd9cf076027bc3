import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';

/**
 * The names of the temporary images a backup commits a container to, and how a later run tells
 * its own host's leftovers: `container-snapshot-tmp/<12 hex of the container ID>:<host>-<pid>-<random>`,
 * where `<host>` is `h` and 8 hex of the sha256 of the host name.
 */

export const TEMP_IMAGE_REPOSITORY = 'container-snapshot-tmp';

function hostTag(): string {
  return `h${createHash('sha256').update(hostname()).digest('hex').slice(0, 8)}`;
}

/** The repository and tag of a new temporary image of container `containerId`, made by process `pid` (this one by default). */
export function tempImageName(containerId: string, pid = process.pid): { repo: string; tag: string } {
  return { repo: `${TEMP_IMAGE_REPOSITORY}/${containerId.slice(0, 12)}`, tag: `${hostTag()}-${pid}-${randomBytes(4).toString('hex')}` };
}

/** The pid of the process on this host that named temporary image `ref` (`repo:tag`); undefined for any other image. */
export function tempImageOwner(ref: string): number | undefined {
  const m = new RegExp(`^${TEMP_IMAGE_REPOSITORY}/[0-9a-f]{12}:${hostTag()}-(\\d+)-[0-9a-f]+$`).exec(ref);
  return m ? Number(m[1]) : undefined;
}
