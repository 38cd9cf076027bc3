import { posix } from 'node:path';
import type { Readable } from 'node:stream';
import tar from 'tar-stream';
import type { RestoreOptions } from '../core/options.js';
import { ACTION_WORDS } from '../core/words.js';
import { SET_SCOPE } from '../destinations/types.js';
import type { ContainerInspect } from '../engine/containers.js';
import { visitSource } from '../browse/view.js';
import { mountName, within } from '../browse/paths.js';
import { ownerOf, sourcesOf, type Source } from '../browse/sources.js';
import { mountedSubpath } from './restore-mounts.js';
import { openContent } from './blobs.js';
import { Filler } from './fill.js';
import type { ContainerRecord } from './manifest.js';
import { mergedWith, readMetadataRecord } from './metadata-merge.js';
import { runLabelValue } from './restore-journal.js';
import { sparseOf, type MetadataRecord, type SparseFiles } from './volume-metadata.js';
import { chooseContainers, findSet } from './restore-set.js';
import { RestoreError, type RestoreContext, type RestoredContainer, type RestoreResult } from './restore-types.js';

/** One volume of an existing container to write some of a set's paths into. */
interface PathsPlan {
  source: Source;
  /** The existing container's volume at the same mount destination. */
  volume: string;
  paths: string[];
}

/** Keeps the entries of a volume archive (mounted at `root`) at or below `paths`, hard links only when their target is kept too. */
export function keepOnly(archive: Readable, root: string, paths: string[]): Readable {
  const extract = tar.extract();
  const pack = tar.pack();
  const kept = (name: string | null | undefined) => {
    const path = name ? mountName(name, root) : undefined;
    return path !== undefined && paths.some((p) => within(path, p));
  };
  archive.on('error', (err: Error) => pack.destroy(err));
  extract.on('entry', (header, stream, next) => {
    if (!kept(header.name) || (header.type === 'link' && !kept(header.linkname))) {
      stream.on('end', next);
      stream.resume();
      return;
    }
    stream.pipe(pack.entry(header, (err) => (err ? pack.destroy(err) : next())));
  });
  extract.on('finish', () => pack.finalize());
  extract.on('error', (err: Error) => pack.destroy(err));
  archive.pipe(extract);
  return pack as unknown as Readable;
}

/** The volume of `c` each path lies in, matched to the existing container's volume there; throws RestoreError when one lies elsewhere. */
function planFor(c: ContainerRecord, target: string, info: ContainerInspect, paths: string[]): PathsPlan[] {
  const sources = sourcesOf(c);
  const mounts = (info.Mounts ?? []) as Array<{ Type?: string; Name?: string; Destination: string }>;
  const plans = new Map<string, PathsPlan>();
  for (const path of paths) {
    const source = ownerOf(path, sources);
    if (!source || source.kind !== 'volume') {
      const where = source?.kind === 'bind' ? `bind mount ${source.root}` : 'writable layer';
      throw new RestoreError(
        `${path} is in the ${where} of ${c.name} in the set, not in a volume: only volume content is restored by path (extract takes any path).`,
      );
    }
    const volume = mounts.find((m) => m.Type === 'volume' && m.Destination === source.root)?.Name;
    if (!volume) throw new RestoreError(`container '${target}' has no volume at ${source.root}, where ${path} belongs.`);
    const plan = plans.get(source.root) ?? { source, volume, paths: [] };
    plan.paths.push(path);
    plans.set(source.root, plan);
  }
  return [...plans.values()];
}

/**
 * The restore with `paths`: only those paths, from the set's volumes, written into the volumes of
 * the existing containers (by name, after `rename`), which keep running; each container takes the
 * paths `pathsPerContainer` gives it. Everything is checked
 * before anything is written: each path lies in a volume of the container in the set and has content
 * there (read in full, its digests checked); the existing container has a volume at that mount
 * point; and, without `replace`, nothing exists there at the path. The snapshot's files are
 * written over what is there; files made since below a restored directory stay.
 */
export async function restorePaths(opts: RestoreOptions, ctx: RestoreContext & { helperImage?: string }): Promise<RestoreResult> {
  const set = await findSet(ctx.source, opts.snapshot);
  const results: RestoredContainer[] = [];
  for (const { c, paths } of pathsPerContainer(chooseContainers(set, opts), opts)) {
    const target = opts.rename.get(c.name) ?? c.name;
    const progress: PathsProgress = { written: [], writing: [] };
    try {
      results.push(await restoreContainerPaths(c, target, paths, opts, ctx, progress));
    } catch (err) {
      const partly = partlyWritten(paths, progress);
      if (partly) ctx.log.warning(`${c.name}: ${partly}`);
      else ctx.log.info(`${c.name}: paths not restored`);
      results.push({
        name: target,
        from: c.name,
        id: '',
        state: '',
        status: 'failed',
        error: partly ? `${(err as Error).message}; ${partly}` : (err as Error).message,
      });
    }
  }
  return { tag: set.tag, containers: results, failed: results.filter((r) => r.status === 'failed').length };
}

/** The paths of one container written into its live volumes so far, and those whose write had begun when it failed. */
interface PathsProgress {
  written: string[];
  writing: string[];
}

/**
 * In words, when a failure came after the first write into a live volume (nothing is put back):
 * which paths were written in full, which were being written (some of their files may be), which not at
 * all; undefined when no write had begun.
 */
export function partlyWritten(paths: string[], progress: PathsProgress): string | undefined {
  if (progress.written.length === 0 && progress.writing.length === 0) return undefined;
  const untouched = paths.filter((p) => !progress.written.includes(p) && !progress.writing.includes(p));
  const parts = [
    `written: ${progress.written.join(', ') || 'none'}`,
    ...(progress.writing.length ? [`interrupted while writing: ${progress.writing.join(', ')}`] : []),
    ...(untouched.length ? [`not written: ${untouched.join(', ')}`] : []),
  ];
  return `paths partly written into the live volumes, not undone (${parts.join('; ')})`;
}

/**
 * Which paths each container takes: all of them for containers named in `containers`; without it,
 * each container of the set the paths that lie in its mounts (those with none are left alone).
 * Throws RestoreError when, without `containers`, a path lies in no container's mount.
 */
export function pathsPerContainer(
  chosen: ContainerRecord[],
  opts: Pick<RestoreOptions, 'containers' | 'paths'>,
): Array<{ c: ContainerRecord; paths: string[] }> {
  if (opts.containers.length > 0) return chosen.map((c) => ({ c, paths: opts.paths }));
  const inMounts = (c: ContainerRecord, p: string) => (ownerOf(p, sourcesOf(c))?.kind ?? 'layer') !== 'layer';
  const stray = opts.paths.filter((p) => !chosen.some((c) => inMounts(c, p)));
  if (stray.length > 0)
    throw new RestoreError(`No container of the set has a mount at ${stray.join(', ')}. Expected paths inside a volume of a container of the set.`);
  return chosen.map((c) => ({ c, paths: opts.paths.filter((p) => inMounts(c, p)) })).filter((x) => x.paths.length > 0);
}

async function restoreContainerPaths(
  c: ContainerRecord,
  target: string,
  paths: string[],
  opts: RestoreOptions,
  ctx: RestoreContext,
  progress: PathsProgress,
): Promise<RestoredContainer> {
  const { engine, log } = ctx;
  const w = opts.words ?? ACTION_WORDS;
  const info = await engine.findContainer(target);
  if (!info)
    throw new RestoreError(`${w.name('paths')} restores into an existing container; '${target}' does not exist (restore it without ${w.name('paths')} first).`);
  const plans = planFor(c, target, info, paths);
  const filler = new Filler(engine, info.Image, ctx.txn?.pending.run ?? runLabelValue(), log, ctx.txn?.signal);
  const found: string[] = [];
  for (const plan of plans) {
    const present = new Set<string>();
    await visitSource(
      ctx.source,
      c,
      plan.source,
      async (entry) => void plan.paths.filter((p) => within(entry.path, p)).forEach((p) => present.add(p)),
      () => undefined,
    );
    const missing = plan.paths.filter((p) => !present.has(p));
    if (missing.length > 0) throw new RestoreError(`snapshot ${opts.snapshot}: ${c.name} has nothing at ${missing.join(', ')} in ${plan.source.label}.`);
    for (const p of plan.paths)
      if (!opts.replace && (await filler.volumePathExists(plan.volume, plan.source.root, p, mountedSubpath(c, plan.source.root))))
        found.push(`${p} exists in volume '${plan.volume}'`);
  }
  if (found.length > 0) throw new RestoreError(`refused: ${found.join('; ')} (${w.enable('replace')} writes the snapshot's over it)`);
  for (const plan of plans) {
    log.info(`${target}: writing ${plan.paths.join(', ')} into volume '${plan.volume}'`);
    await filler.fillVolume(
      plan.volume,
      plan.source.root,
      async () => {
        progress.writing = plan.paths;
        return keepOnly(await volumeContent(c, plan.source, ctx), plan.source.root, plan.paths);
      },
      async () => sparseWithin(await sideRecord(c, plan.source, ctx), plan.source.root, plan.paths),
      undefined,
      mountedSubpath(c, plan.source.root),
    );
    progress.written.push(...plan.paths);
    progress.writing = [];
  }
  const now = await engine.inspectContainer(info.Id);
  return { name: target, from: c.name, id: info.Id, state: now.State.Paused ? 'paused' : now.State.Status, status: 'ok' };
}

/** A volume's side record of what the archive drops, when the set has one. */
async function sideRecord(c: ContainerRecord, source: Source, ctx: RestoreContext): Promise<MetadataRecord | undefined> {
  const v = c.volumes.find((x) => x.destination === source.root)!;
  return v.metadata?.record && (await readMetadataRecord(ctx.source, v.metadata.record, `${c.name} volume ${v.name || v.destination}`));
}

/** The recorded sparse files (see `sparseOf`) that lie within the container paths `paths` of a volume mounted at `root`. */
export function sparseWithin(record: MetadataRecord | undefined, root: string, paths: string[]): SparseFiles {
  const all = sparseOf(record);
  return Array.isArray(all) ? all.filter((f) => paths.some((p) => within(posix.join(root, f), p))) : all;
}

/** A volume's content, its digests checked as it streams, with its side record of dropped metadata merged in. */
async function volumeContent(c: ContainerRecord, source: Source, ctx: RestoreContext): Promise<Readable> {
  const v = c.volumes.find((x) => x.destination === source.root)!;
  const what = `${c.name} volume ${v.name || v.destination}`;
  const record = v.metadata?.record && (await readMetadataRecord(ctx.source, v.metadata.record, what));
  const stream = await openContent(ctx.source, SET_SCOPE, v.blob, what);
  return record ? mergedWith(stream, record) : stream;
}
