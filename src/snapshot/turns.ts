/**
 * The order of containers' image-layer phases in one backup run: each container stores its image
 * layers after the one before it in the selection, so that a base layer they share is stored once.
 */

/** A container's place in the order of the image-layer phases: wait for the one before, then let the next go (once, whatever happens). */
export interface Turn {
  wait(): Promise<void>;
  done(): void;
}

/** A turn that never waits: a container backed up on its own. */
export const FREE_TURN: Turn = { wait: async () => undefined, done: () => undefined };

/** Turns for `count` containers, each after the one before. */
export function turnsInOrder(count: number): Turn[] {
  const releases: Array<() => void> = [];
  const finished = Array.from({ length: count }, (_v, i) => new Promise<void>((resolve) => (releases[i] = resolve)));
  return finished.map((_p, i) => ({ wait: () => (i === 0 ? Promise.resolve() : finished[i - 1]), done: () => releases[i]() }));
}
