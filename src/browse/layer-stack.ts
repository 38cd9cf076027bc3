import { posix } from 'node:path';

/** A path of one layer of a stack and what its entry is (a whiteout: `deleted` or `opaque`). */
export interface StackEntry {
  path: string;
  /** An EntryType of entries.ts: `directory`, `deleted`, `opaque`, `file`, … */
  type: string;
}

function ancestors(path: string): string[] {
  const out: string[] = [];
  for (let p = posix.dirname(path); p !== '/' && p !== '.'; p = posix.dirname(p)) out.push(p);
  return out;
}

/**
 * Which layer of a writable-layer stack (bottom first: the full layer, then each delta) shows each
 * path, as the engine applies them (OCI image-spec layer.md): the topmost entry of a path wins; a
 * whiteout hides the path and its subtree in the layers below, an opaque directory its children
 * below, an entry that is no directory whatever was under it below. A whiteout is shown (as
 * `deleted`: a file of the image deleted) unless a layer below it has an entry of that path (then
 * it only takes back what the writable layer made). Returns path → layer index.
 */
export function stackWinners(layers: StackEntry[][]): Map<string, number> {
  const winners = new Map<string, number>();
  const gone = new Set<string>();
  const opaque = new Set<string>();
  // Whiteouts shown unless a layer below turns out to have made the path: then it only hides that.
  const tentative = new Set<string>();
  for (let i = layers.length - 1; i >= 0; i--) {
    const hide: { gone: string[]; opaque: string[] } = { gone: [], opaque: [] };
    for (const { path, type } of layers[i]) {
      if (tentative.has(path) && type !== 'deleted' && type !== 'opaque') {
        tentative.delete(path);
        winners.delete(path);
      }
      const hidden = gone.has(path) || ancestors(path).some((a) => gone.has(a) || opaque.has(a));
      // An opaque marker names its directory, whose own entry in the same layer may come first.
      if (type === 'opaque') {
        if (!hidden && (winners.get(path) ?? i) === i) hide.opaque.push(path);
        continue;
      }
      if (hidden || winners.has(path)) continue;
      if (type === 'deleted') {
        hide.gone.push(path);
        winners.set(path, i);
        if (i > 0) tentative.add(path);
        continue;
      }
      winners.set(path, i);
      if (type !== 'directory') hide.gone.push(path);
    }
    // What a layer hides applies to the layers below it only.
    for (const p of hide.gone) gone.add(p);
    for (const p of hide.opaque) opaque.add(p);
  }
  return winners;
}
