import { posix } from 'node:path';
import { Readable, pipeline } from 'node:stream';
import tar from 'tar-stream';
import { errorMessage, type Logger } from '../core/log.js';
import { type Engine } from '../engine/engine.js';
import { NotFoundError } from '../engine/errors.js';
import { HoleFinder, holePlan, type HolePlan } from './holes.js';
import { scanSparseFiles, type SparseFiles } from './volume-metadata.js';
import { archiveRoot, sameRoot, type RootStat } from './volume-root.js';

/**
 * The label every container and volume a restore makes for its own use carries (helpers, volumes
 * holding an old content aside); its value names the run (see `runLabelValue`), so the recovery of
 * an interrupted restore finds what that run left.
 */
export const RUN_LABEL = 'container-snapshot.run';

/**
 * Punches the holes back into one file: util-linux ≥ 2.25 `fallocate --dig-holes` replaces its
 * aligned all-zero blocks by holes, in place, content unchanged. Run as the entrypoint itself, not
 * through a shell: a busybox shell may prefer its own applet of that name, which cannot.
 */
const DIG_HOLES = ['fallocate', '--dig-holes', '--'];
/** How long one hole-punching helper may run (it reads each file once). */
const DIG_TIMEOUT_MS = 30 * 60_000;

/** What a helper runs when it is started (never-started helpers name a command that does not exist). */
interface HelperRun {
  entrypoint: string[];
  /** `User` of the helper: the image's own when not given. */
  user?: string;
}

/** A mount of a never-started helper: a volume by name (or a subpath of it, Engine API 1.45), or a host path. */
export type HelperMount = { volume: string; target: string; subpath?: string } | { bind: string; target: string; create?: boolean };

/** What a host path holds, seen through the engine. */
export interface PathProbe {
  exists: boolean;
  kind?: 'directory' | 'file' | 'other';
  /** True for a directory with at least one entry, or any file. */
  hasData: boolean;
  /** Owner, mode and modification time of what is there, as the engine's archive gives them. */
  root?: RootStat;
}

/** Reads a tar stream's entries up to `limit`: how many, and the first one's type and header. */
async function peekTar(stream: Readable, limit: number): Promise<{ count: number; first?: string; header?: tar.Header }> {
  const extract = tar.extract();
  stream.on('error', (err: Error) => extract.destroy(err));
  stream.pipe(extract);
  let count = 0;
  let first: string | undefined;
  let header: tar.Header | undefined;
  for await (const entry of extract) {
    header ??= entry.header;
    first ??= entry.header.type;
    entry.resume();
    if (++count >= limit) break;
  }
  extract.destroy();
  stream.destroy();
  return { count, first, header };
}

/**
 * An image with nothing in it, for the helpers that write a volume or directory at `/<basename>`:
 * in the snapshot's own image that path may be a symlink (`/lib -> usr/lib` in merged-/usr
 * images), which would take the content into the helper's layer instead of the volume.
 */
export const EMPTY_IMAGE = { repo: 'container-snapshot/helper', tag: 'empty' };

async function emptyImage(engine: Engine): Promise<string> {
  const ref = `${EMPTY_IMAGE.repo}:${EMPTY_IMAGE.tag}`;
  // An empty tar: two zero blocks.
  if (!(await engine.imageExists(ref))) await engine.importImage(Readable.from([Buffer.alloc(1024)]), EMPTY_IMAGE.repo, EMPTY_IMAGE.tag);
  return ref;
}

/** Renames the single top entry of a tar (a file's archive) to `name`. */
function renamedFileArchive(content: Readable, name: string): Readable {
  const extract = tar.extract();
  const pack = tar.pack();
  content.on('error', (err: Error) => pack.destroy(err));
  extract.on('entry', (header, stream, next) => {
    const rest = header.name.includes('/') ? header.name.slice(header.name.indexOf('/')) : '';
    stream.pipe(pack.entry({ ...header, name: `${name}${rest}` }, (err) => (err ? pack.destroy(err) : next())));
  });
  extract.on('finish', () => pack.finalize());
  extract.on('error', (err: Error) => pack.destroy(err));
  content.pipe(extract);
  return pack as unknown as Readable;
}

/**
 * Fills and reads volumes and host paths through never-started helper containers that mount only
 * what they serve: the result depends on nothing of the restored container (its read-only flags,
 * its other mounts) and on none of the archive API's path checks. A volume's archive (entries under
 * the basename of its mount point, as `GET /containers/{id}/archive` wrote it) is mounted at
 * `/<basename>` and written at `/`, so symlinks that climb above the mount point's parent, which the
 * engine refuses when extracting below `/` ("invalid symlink", moby pkg/archive breakoutError), are
 * written as they were.
 */
export class Filler {
  constructor(
    private readonly engine: Engine,
    /** The image hole punching runs from (the restored container's: the only one at hand with tools); other helpers use an empty one. */
    private readonly image: string,
    /** This run's label value (`RUN_LABEL`). */
    private readonly run: string,
    /** Where a volume's sparse files are reported (made sparse again, or why not). */
    private readonly log?: Logger,
    /** Stops hole punching: the running helper is removed (killed) and the signal's reason thrown. */
    private readonly signal?: AbortSignal,
    /**
     * Settles once `image` is in the engine (a restore loads it while volumes are filled): only
     * hole punching runs from it, after this; its rejection is thrown from there.
     */
    private readonly imageReady: Promise<unknown> = Promise.resolve(),
  ) {}

  /**
   * Runs `fn` with a helper that mounts `mounts`, from `image` (an empty one when not given: a
   * never-started helper needs nothing of its image); the helper is removed after, whatever happens.
   * With `later`, a helper whose `fn` succeeded is removed without waiting: the removal (which
   * rejects with the engine's error) is handed to `later`, whose owner must await it.
   */
  async withHelper<T>(
    mounts: HelperMount[],
    fn: (id: string) => Promise<T>,
    image?: string,
    run: HelperRun = { entrypoint: ['/csx-helper'] },
    later?: (removal: Promise<void>) => void,
  ): Promise<T> {
    const Mounts = mounts.flatMap((m) =>
      'volume' in m
        ? [{ Type: 'volume', Source: m.volume, Target: m.target, VolumeOptions: { NoCopy: true, ...(m.subpath ? { Subpath: m.subpath } : {}) } }]
        : m.create
          ? []
          : [{ Type: 'bind', Source: m.bind, Target: m.target }],
    );
    // The legacy bind syntax creates a missing host directory, as `docker run -v` did for the original.
    const Binds = mounts.flatMap((m) => ('bind' in m && m.create ? [`${m.bind}:${m.target}`] : []));
    const create = (from: string) =>
      this.engine.createContainer({
        Image: from,
        Entrypoint: run.entrypoint,
        Cmd: [],
        ...(run.user ? { User: run.user } : {}),
        Labels: { [RUN_LABEL]: this.run },
        NetworkDisabled: true,
        HostConfig: { Mounts, Binds, NetworkMode: 'none' },
      } as never);
    let id: string;
    if (image) id = await create(image);
    else {
      // The empty image is made only when the engine lacks it (one round trip less when it has it).
      try {
        id = await create(`${EMPTY_IMAGE.repo}:${EMPTY_IMAGE.tag}`);
      } catch (err) {
        if (!(err instanceof NotFoundError) || !/no such image/i.test(errorMessage(err))) throw err;
        id = await create(await emptyImage(this.engine));
      }
    }
    let result: T;
    try {
      result = await fn(id);
    } catch (err) {
      await this.engine.removeContainer(id, { force: true, volumes: true });
      throw err;
    }
    const removal = this.engine.removeContainer(id, { force: true, volumes: true });
    if (!later) await removal;
    else {
      // Its failure reaches whoever awaits it through `later`: never an unhandled rejection.
      removal.catch(() => undefined);
      later(removal);
    }
    return result;
  }

  /** Whether a volume holds anything (no image content is copied into it by looking). */
  async volumeHasData(volume: string): Promise<boolean> {
    return this.withHelper([{ volume, target: '/csx-probe' }], async (id) => (await peekTar(await this.engine.getArchive(id, '/csx-probe'), 2)).count > 1);
  }

  /** Whether anything is at `path` (a container path below `mountPoint`, which shows `subpath` of the volume when given) in the volume; nothing is copied into it by looking. */
  async volumePathExists(volume: string, mountPoint: string, path: string, subpath?: string): Promise<boolean> {
    const inside = posix.join('/csx-probe', subpath ?? '', posix.relative(mountPoint, path));
    return this.withHelper([{ volume, target: '/csx-probe' }], async (id) => {
      try {
        (await this.engine.getArchive(id, inside)).destroy();
        return true;
      } catch (err) {
        if (err instanceof NotFoundError) return false;
        throw err;
      }
    });
  }

  /** What a host path holds; a path that does not exist is reported so, and nothing is created. */
  async probeHostPath(path: string): Promise<PathProbe> {
    try {
      return await this.withHelper([{ bind: path, target: '/csx-probe' }], async (id) => {
        const { count, first, header } = await peekTar(await this.engine.getArchive(id, '/csx-probe'), 2);
        const kind = first === 'directory' ? 'directory' : first === 'file' ? 'file' : 'other';
        const root = header && {
          uid: header.uid ?? 0,
          gid: header.gid ?? 0,
          mode: (header.mode ?? 0) & 0o7777,
          mtime: Math.floor((header.mtime?.getTime() ?? 0) / 1000),
        };
        return { exists: true, kind, hasData: kind !== 'directory' || count > 1, root };
      });
    } catch (err) {
      if (/bind source path does not exist|no such file or directory/i.test((err as Error).message)) return { exists: false, hasData: false };
      throw err;
    }
  }

  /**
   * Writes a volume's archive (entries under `basename(mountPoint)`) into the volume `volume`. The
   * engine writes holes as zeros: the files `sparse()` names (the set's record, paths relative to
   * the volume's root) are made sparse again after, or, when it names none (undefined or `'many'`),
   * the files with long zero runs (see `digHoles`). With `later`, the helper that wrote the archive
   * is removed without waiting (see `withHelper`): nothing else of the restore needs it gone.
   */
  async fillVolume(
    volume: string,
    mountPoint: string,
    content: () => Promise<Readable>,
    sparse: () => Promise<SparseFiles> = async () => undefined,
    later?: (removal: Promise<void>) => void,
    subpath?: string,
  ): Promise<void> {
    const base = posix.basename(mountPoint);
    if (subpath) await this.makeSubpath(volume, subpath);
    // The side record is read while the helper is made.
    const reading = sparse();
    reading.catch(() => undefined);
    let recorded: SparseFiles;
    let finder: HoleFinder | undefined;
    await this.withHelper(
      [{ volume, target: `/${base}`, subpath }],
      async (id) => {
        recorded = await reading;
        finder = Array.isArray(recorded) ? undefined : new HoleFinder();
        await this.engine.putArchive(id, '/', finder ? pipeline(await content(), finder, () => undefined) : await content());
      },
      undefined,
      undefined,
      later,
    );
    await this.digHoles(volume, base, holePlan(recorded!, base, finder ?? { files: [], more: 0 }), subpath);
  }

  /**
   * Creates the directories of `subpath` (`a/b`) that the volume lacks, owned by root, mode 0755:
   * the engine mounts a subpath only once it exists. Those there already are left as they are;
   * the last one takes the set's owner and mode when the volume is filled.
   */
  private async makeSubpath(volume: string, subpath: string): Promise<void> {
    const parts = subpath.split('/').filter(Boolean);
    await this.withHelper([{ volume, target: '/v' }], async (id) => {
      const pack = tar.pack();
      let missing = 0;
      for (let i = 1; i <= parts.length; i++) {
        const rel = parts.slice(0, i).join('/');
        if (await this.engine.statPath(id, `/v/${rel}`)) continue;
        pack.entry({ name: `v/${rel}/`, type: 'directory', mode: 0o755, uid: 0, gid: 0 });
        missing++;
      }
      pack.finalize();
      if (missing > 0) await this.engine.putArchive(id, '/', pack as unknown as Readable);
    });
  }

  /**
   * Makes files of a filled volume sparse again, through helpers of the container's own image (the
   * only one at hand with tools) started as root without a network: `fallocate --dig-holes` on each
   * file (names as in the archive, `<base>/…`). Best effort: without a util-linux `fallocate` in
   * the image, the files stay as written (content intact, fully allocated) and a warning says so.
   * Throws only when the signal aborts (the helper at work is removed first).
   */
  private async digHoles(volume: string, base: string, plan: HolePlan, subpath?: string): Promise<void> {
    const { files, more, guessed } = plan;
    if (files.length === 0) return;
    await this.imageReady;
    let done = 0;
    try {
      for (const name of files) {
        this.signal?.throwIfAborted();
        const code = await this.withHelper(
          [{ volume, target: `/${base}`, subpath }],
          async (id) => {
            await this.engine.start(id);
            if (!(await this.engine.waitNotRunning(id, DIG_TIMEOUT_MS, this.signal))) return 'a timeout';
            return `exit code ${(await this.engine.inspectContainer(id)).State.ExitCode}`;
          },
          this.image,
          { entrypoint: [...DIG_HOLES, posix.join('/', name)], user: '0' },
        );
        if (code !== 'exit code 0') throw new Error(`fallocate --dig-holes ended with ${code} (util-linux's fallocate is needed)`);
        done++;
      }
      this.log?.info(
        `volume '${volume}': ${files.length} sparse file(s) made sparse again${more > 0 ? ` (${more} more left fully allocated)` : ''}${guessed ? `; ${guessed}` : ''}`,
      );
    } catch (err) {
      if (this.signal?.aborted) throw err;
      const why = /executable file not found|no such file or directory/i.test(errorMessage(err)) ? 'the image has no fallocate' : errorMessage(err);
      this.log?.warning(
        `volume '${volume}': ${files.length + more - done} file(s) with long runs of zeros (sparse files) were written fully allocated, content intact: ${why}`,
      );
    }
  }

  /**
   * Writes a bind mount's archive back to its host path, created if missing. A directory is
   * mounted like a volume; a single file is written into its host directory under its host name
   * (a file that is itself a mount point cannot be replaced).
   */
  async fillHostPath(source: string, mountPoint: string, content: () => Promise<Readable>): Promise<void> {
    const { first } = await peekTar(await content(), 1);
    if (first === 'directory') {
      await this.withHelper([{ bind: source, target: `/${posix.basename(mountPoint)}`, create: true }], async (id) =>
        this.engine.putArchive(id, '/', await content()),
      );
      return;
    }
    await this.withHelper([{ bind: posix.dirname(source), target: '/csx-parent', create: true }], async (id) =>
      this.engine.putArchive(id, '/csx-parent', renamedFileArchive(await content(), posix.basename(source))),
    );
  }

  /**
   * Copies one volume's whole content into another (empty) one, through the engine: read through
   * one helper, written through another (the engine holds a container's lock while its archive is
   * read, so a read and a write on one container wait for each other forever). The copy's files are
   * made sparse where the source's are (read on this host), or, when the source's directory cannot
   * be read here, where they hold long zero runs.
   */
  async copyVolume(from: string, to: string): Promise<void> {
    const scanning = this.engine.inspectVolume(from).then(
      (v) => scanSparseFiles(v?.Mountpoint),
      () => undefined,
    );
    const finder = new HoleFinder();
    const archived = await this.withHelper([{ volume: from, target: '/v' }], async (source) =>
      this.withHelper([{ volume: to, target: '/v' }], async (target) => {
        const archive = await this.engine.getArchive(source, '/v');
        const root = archiveRoot(archive);
        try {
          await this.engine.putArchive(
            target,
            '/',
            pipeline(archive, finder, () => undefined),
          );
        } finally {
          archive.destroy();
        }
        return root;
      }),
    );
    const scan = await scanning;
    const here = scan && sameRoot(scan.root, await archived) ? scan.sparse : undefined;
    const why = scan?.sparse === 'many' ? `volume '${from}' has too many sparse files to list` : `the files of volume '${from}' are not readable on this host`;
    await this.digHoles(to, 'v', holePlan(here, 'v', finder, why));
  }
}
