import { createHash } from 'node:crypto';

const COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;

/** A container name as a repository path component; names that had to change get a short hash so two never collide. */
export function repoComponent(name: string): string {
  if (COMPONENT.test(name)) return name;
  const cleaned =
    name
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-+|-+$/g, '') || 'container';
  return `${cleaned}-${createHash('sha256').update(name).digest('hex').slice(0, 6)}`;
}
