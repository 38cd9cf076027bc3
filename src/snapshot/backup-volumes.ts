/** The volume path of a container's backup: plan, spool, chunk budget, store (whole blob or content-defined chunks). */
import { Readable } from 'node:stream';
import type { BackupOptions } from '../core/options.js';
import { SET_SCOPE } from '../destinations/types.js';
import { Digester } from '../oci/digest.js';
import { drain } from '../util/streams.js';
import { formatBytes } from '../util/format.js';
import { TarChecker } from '../util/tar-check.js';
import { allHave, openContent, storeBlob, type StoreTarget } from './blobs.js';
import { splicedArchive, storeChunked, type ArchiveRanges } from './chunked.js';
import { CHUNK_SIZES } from './chunker.js';
import { isChunked, volumeMediaType, volumeMetadataMediaType, type ChunkedBlob, type Compression, type BlobDescriptor, type VolumeRecord } from './manifest.js';
import {
  buildFileIndex,
  FileWalk,
  indexedChunks,
  racyMarginNs,
  readFileIndex,
  storeFileIndex,
  untrustedFs,
  type FileIndex,
  type FileIndexEntry,
} from './file-index.js';
import { Spool, type Spooled } from './spool.js';
import type { Meter } from '../util/progress.js';
import type { MountToTake } from './volumes.js';
import { keepVolumeMetadata, matchedScan, MetadataCollector, scanVolumeMetadata, walkedOf, type MetadataScan } from './volume-metadata.js';
import { capabilitiesFrom, GETFATTR_MAX, runGetfattr, xattrOutput, type GetfattrRun } from './getfattr.js';
import type { ContainerInspect } from '../engine/containers.js';
import { archiveRoot, rootStatFrom } from './volume-root.js';
import { hostTar, writeRunHeaders } from './volume-tar.js';
import { DeferredReads, readDeferred } from './deferred-read.js';
import { atDir, hostReadBlocker, mountedPaths, mountsSubpath, trustHostDir, type HostDir } from './volume-host.js';
import { SpoolError } from './spool.js';
import { posix } from 'node:path';
import { closeSync, fstatSync, lstatSync, statfsSync, type BigIntStats } from 'node:fs';
import { errorMessage } from '../core/log.js';
import { KeyError } from '../crypto/keyring.js';
import { forEachLimited } from '../util/pool.js';
import { closeQuietly } from '../util/open-flags.js';
import { runMeter, runTargets, type BackupContext } from './backup-context.js';
import { type History, volumeKey } from './backup-history.js';

/** Chunks of the set before checked at once in every destination before files are left unread (a stat in `dir:`, a HEAD in a registry when not known present). */
const INDEX_CHECKS = 16;

/** Set-scope blobs kept out of the chunk budget (Destination.setBlobLimit): side records, image configs, layer indexes. */
export const SET_BLOB_HEADROOM = 256;

/**
 * The set before's chunks (`chunks`, its archive's chunk list) of each file of `entries` (member
 * number → its entry in that set's file index), by member number: for a file left unread, what
 * stands for its data (chunked.ts UnreadRuns); for one read again, the chunker's hints (ChunkHints).
 */
function earlierRuns(entries: ReadonlyMap<number, FileIndexEntry>, chunks: readonly BlobDescriptor[]): Map<number, BlobDescriptor[]> {
  return new Map([...entries].map(([member, e]) => [member, chunks.slice(e.first, e.first + e.count)]));
}

/** A container's volumes: planned before it is held, read into the spool while held, stored (whole or in chunks) after; one per run, for the set's chunk budget. */
export class VolumePath {
  constructor(
    private readonly ctx: BackupContext,
    private readonly opts: BackupOptions,
    private readonly history: History,
    private readonly compression: Compression,
    private readonly spool: Spool,
  ) {}

  /** Chunks planned for this set so far, against the destinations' setBlobLimit (all volumes of all containers: one worker per set). */
  private chunksPlanned = 0;

  /** The tightest setBlobLimit among the destinations, less SET_BLOB_HEADROOM; undefined when none limits. */
  private chunkLimit(): { label: string; limit: number } | undefined {
    const limits = this.ctx.destinations.flatMap((d) => (d.setBlobLimit === undefined ? [] : [{ label: d.label, limit: d.setBlobLimit - SET_BLOB_HEADROOM }]));
    return limits.sort((x, y) => x.limit - y.limit)[0];
  }

  /**
   * Plans `chunks` more chunks for the set: undefined when they fit (then counted as planned), else
   * why not. `less`: chunks planned before (an estimate now replaced by the count), taken back first.
   */
  private planChunks(chunks: number, less = 0): string | undefined {
    this.chunksPlanned -= less;
    const tight = this.chunkLimit();
    if (tight && this.chunksPlanned + chunks > tight.limit) {
      return `${chunks} chunks, and ${tight.label} takes ${tight.limit + SET_BLOB_HEADROOM} blobs per set (${this.chunksPlanned} already planned, ${SET_BLOB_HEADROOM} kept for other records)`;
    }
    this.chunksPlanned += chunks;
    return undefined;
  }

  /** Volumes are stored as content-defined chunks, except for an artifact: destination (one artifact per chunk would be absurd): then each is one blob. */
  private get chunking(): boolean {
    return !this.opts.destinations.some((d) => d.kind === 'artifact');
  }

  private get meter(): Meter {
    return runMeter(this.ctx);
  }

  private targets(scope: StoreTarget['scope']): StoreTarget[] {
    return runTargets(this.ctx, scope);
  }

  /** What is known of a mount before the hold: its record so far, where it is on the host, and an earlier set's blob it may turn out to equal. */
  async planVolume(container: string, mount: MountToTake): Promise<VolumePlan> {
    const { engine, signal } = this.ctx;
    const record: Omit<VolumeRecord, 'blob'> = { type: mount.type, name: mount.name, anonymous: mount.anonymous, destination: mount.destination };
    let hostPath = mount.source;
    if (mount.type === 'bind') record.source = mount.source;
    else {
      const v = await engine.inspectVolume(mount.name, signal);
      if (v) {
        record.driver = v.Driver;
        record.driverOptions = (v.Options as Record<string, string> | null) ?? {};
        record.labels = (v.Labels as Record<string, string> | null) ?? {};
        hostPath = v.Mountpoint;
      }
    }
    const previous = this.history.volumes.get(volumeKey(container, mount.destination));
    const reusable = previous && previous.mediaType === volumeMediaType(this.compression) && (await allHave(this.targets(SET_SCOPE), previous.digest));
    const unread = previous && isChunked(previous) ? await this.earlierIndex(container, mount, previous) : undefined;
    return { mount, record, hostPath, ...(reusable ? { previous } : {}), ...(unread ? { unread } : {}) };
  }

  /**
   * The file index of the set before (its blob read from the first destination) when this backup
   * may leave that set's unchanged files unread: it stores chunks, the set before's chunks fit in
   * the chunk budget, and every destination holds every chunk the index names (asked CHECKS at
   * once). Undefined otherwise; a failure to read the index is logged and leaves every file read.
   */
  private async earlierIndex(container: string, mount: MountToTake, previous: ChunkedBlob): Promise<VolumePlan['unread']> {
    // Files are left unread only where this host reads the volume (volume-host.ts hostReadBlocker says the rest at the hold).
    if (!this.chunking || !previous.files || process.getuid?.() !== 0 || !this.ctx.engine.describe().startsWith('unix://')) return undefined;
    const tight = this.chunkLimit();
    if (tight && this.chunksPlanned + Math.ceil(1.25 * previous.chunks.length) > tight.limit) return undefined;
    try {
      const index = await readFileIndex(this.ctx.destinations[0], previous.files, previous.chunks);
      const named = new Set(indexedChunks(index).map((i) => previous.chunks[i].digest));
      const targets = this.targets(SET_SCOPE);
      let missing = false;
      await forEachLimited(
        [...named],
        INDEX_CHECKS,
        async (digest) => {
          if (!(await allHave(targets, digest))) missing = true;
        },
        () => missing,
      );
      return missing ? undefined : { index, chunks: previous.chunks };
    } catch (err) {
      this.ctx.signal?.throwIfAborted();
      // An encrypting run without an identity cannot read it: every file is read, as in the first backup.
      if (err instanceof KeyError) return undefined;
      this.ctx.log.info(
        `${container}: ${mount.name || mount.destination}: the set before's file index could not be read (${errorMessage(err)}); every file is read`,
      );
      return undefined;
    }
  }

  /**
   * Reads a mount while the container is held, touching no destination and compressing nothing:
   * its archive into the spool, made on this host from its directory when that may be trusted
   * (`takeOnHost`), else as the engine sends it; and a scan of what the archive drops. The spooled
   * file is also pushed to `pending`, for the caller to remove whatever happens. `xattrs`: this
   * mount's getfattr run, started earlier in the same hold (earlyGetfattr); started here when not given.
   * `defer`: settled files may be left for a read once the container is back (deferred-read.ts;
   * the caller then calls readLater, and takes the container again if it throws DeferredChange).
   */
  async takeVolume(
    id: string,
    container: string,
    plan: VolumePlan,
    pending: Spooled[],
    xattrs?: Promise<GetfattrRun>,
    defer = false,
    prepared?: PreparedRead,
  ): Promise<TakenVolume> {
    const { engine, signal } = this.ctx;
    const { mount, hostPath } = plan;
    await this.spool.ready();
    const label = `${container}: reading ${mount.name || mount.destination}`;
    // Files changed since shortly before now are read again next time (racyMarginNs); the container is held already.
    const margin = this.opts.settleSeconds !== undefined ? BigInt(this.opts.settleSeconds) * 1_000_000_000n : racyMarginNs();
    const cutoff = margin === undefined ? undefined : BigInt(Date.now()) * 1_000_000n - margin;
    const walkFiles = () => (this.chunking ? new FileWalk(CHUNK_SIZES.min, cutoff, plan.unread?.index) : undefined);
    let files = walkFiles();
    const first = await this.takeOnHost(id, plan, label, files, xattrs, defer ? cutoff : undefined, prepared);
    let onHost: Awaited<ReturnType<typeof this.takeOnHost>>;
    if (typeof first === 'symbol') {
      this.ctx.log.info(
        `${label}: ${first === STALE_CAPABILITIES ? "a file's security.capability changed between the read before the hold and the hold: read again, with the held ones" : `${first.description}: read again, its large files not settled read while held`}`,
      );
      files = walkFiles();
      // Held copies stay on after a change of capabilities (a copy not made then ends it: the engine reads the volume).
      const again = await this.takeOnHost(id, plan, label, files, xattrs, defer ? cutoff : undefined, undefined, first === STALE_CAPABILITIES);
      onHost = typeof again === 'symbol' ? 'it could not be read on this host in two walks' : again;
    } else onHost = first;
    if (typeof onHost !== 'string') {
      pending.push(onHost.spooled);
      // Its held copies go with the spooled file whatever happens (each read one is removed at once).
      for (const r of onHost.deferred?.reads ?? []) if (r.copy) pending.push({ path: r.copy, bytes: 0 });
      this.ctx.log.info(`${label}: read on this host from ${hostPath}`);
      if (files?.unread.size)
        this.ctx.log.info(`${label}: ${files.unread.size} file(s) unchanged since the set before, not read (${formatBytes(files.unreadBytes)})`);
      if (files?.runFilesUnread)
        this.ctx.log.info(
          `${label}: ${files.runFilesUnread} small file(s) in ${files.runs.filter((r) => r.earlier).length} run(s) unchanged since the set before, not read (${formatBytes(files.runBytesUnread)})`,
        );
      if (files?.off && plan.unread) this.ctx.log.info(`${label}: every file read, none left unread: ${files.off}`);
      // The directory was compared with the engine's archive of it before it was read (trustHostDir).
      const deferred = onHost.deferred?.reads.length ? onHost.deferred : undefined;
      return { plan, spooled: onHost.spooled, scan: onHost.scan, readOnHost: true, ...(files ? { files } : {}), ...(deferred ? { deferred } : {}) };
    }
    this.ctx.log.info(`${label}: read through the engine: ${onHost}`);
    // The engine's archive drops such paths without a word (and this host could not read them either).
    const incomplete = /ENAMETOOLONG/.test(onHost)
      ? `${mount.name || mount.destination} holds paths longer than 4096 bytes (PATH_MAX), which are not in the set: neither this host's read nor the engine's archive takes them`
      : undefined;
    if (incomplete) this.ctx.log.warning(`${container}: ${incomplete}`);
    // Beside the engine's archive, while held: a cancel stops it too.
    const scanning = scanVolumeMetadata(hostPath, signal);
    const archive = await engine.getArchive(id, mount.destination, signal);
    const archived = archiveRoot(archive);
    // take() destroys the archive if it fails: one left open keeps the container locked in the engine (never unpaused).
    const spooled = await this.spool.take(archive, this.meter(label));
    pending.push(spooled);
    const scan = await scanning;
    signal?.throwIfAborted();
    return { plan, spooled, scan: matchedScan(scan, await archived, hostPath), readOnHost: false, ...(incomplete ? { incomplete } : {}) };
  }

  /**
   * The getfattr run a read of `plan`'s mount on this host needs (takeVolume's `xattrs`), started
   * once its container is held (`atRest`: paused, stopped, or not running), so that it runs beside
   * the writable layer's read: a process of its own, asking the engine nothing. Undefined when
   * `info` (its container's inspect) already rules out a read here (hostReadBlocker).
   */
  earlyGetfattr(info: ContainerInspect, plan: VolumePlan, atRest: boolean): Promise<GetfattrRun> | undefined {
    // A cancel kills it: the container is held until its read (this run included) ends.
    return this.hostBlocker(info, plan, !atRest, false) ? undefined : runGetfattr(plan.hostPath!, GETFATTR_MAX, this.ctx.signal);
  }

  /**
   * Before the hold, for a mount the held read will make on this host (`atRest`: the container
   * will be paused or stopped, or is not running): its directory opened and checked against the
   * engine's view (trustHostDir and its owner check: ~4 engine requests and an archive started,
   * which took ~60–170 ms of each hold), and a getfattr run whose capabilities the held walk writes
   * at once instead of waiting for the held run (~85 ms for 12,000 files) — checked against the
   * held run's after the walk (takeOnHost). Undefined where either cannot be had here (the hold then
   * does both, as without it). Throws only the signal's reason (a cancel stops its getfattr run too).
   */
  async prepareHostRead(info: ContainerInspect, plan: VolumePlan, atRest: boolean): Promise<PreparedRead | undefined> {
    if (this.hostBlocker(info, plan, !atRest, false)) return undefined;
    // A cancel stops this getfattr too (before any hold: a large volume's run takes seconds).
    const hint = runGetfattr(plan.hostPath!, GETFATTR_MAX, this.ctx.signal);
    const dir = await trustHostDir(this.ctx.engine, info.Id, plan.mount.destination, plan.hostPath!, this.ctx.signal);
    const run = await hint;
    if (typeof dir === 'string') {
      this.ctx.signal?.throwIfAborted();
      return undefined;
    }
    if ((await dir.owner) !== undefined || run.failed) {
      closeSync(dir.fd);
      this.ctx.signal?.throwIfAborted();
      return undefined;
    }
    return new PreparedRead(dir, run);
  }

  /** hostReadBlocker for `plan`'s mount of `info`'s container, `running` and `paused` as given. */
  private hostBlocker(info: ContainerInspect, plan: VolumePlan, running: boolean, paused: boolean): string | undefined {
    return hostReadBlocker({
      address: this.ctx.engine.describe(),
      running,
      paused,
      mount: plan.mount,
      driver: plan.record.driver,
      hostPath: plan.hostPath,
      mounted: mountedPaths(info),
      uid: process.getuid?.(),
      subpath: mountsSubpath(info, plan.mount.destination),
    });
  }

  /**
   * The mount's archive made on this host (volume-tar.ts) into the spool, with the scan of what
   * that archive drops made by the same walk (one getfattr for the side record's attributes and
   * the archive's capabilities), or why not (a sentence): hostReadBlocker, then trustHostDir, then
   * anything the host could not read as the engine would (the spooled file is then removed).
   * `deferBefore`: files whose ctime is before it (ns) may be left for later (DeferredReads), on a
   * file system whose ctime the file index trusts. Throws a SpoolError (the disk), or the signal's reason.
   */
  private async takeOnHost(
    id: string,
    plan: VolumePlan,
    label: string,
    files?: FileWalk,
    early?: Promise<GetfattrRun>,
    deferBefore?: bigint,
    prepared?: PreparedRead,
    copies = true,
  ): Promise<{ spooled: Spooled; scan: MetadataScan; deferred?: DeferredReads } | string | symbol> {
    const { engine, signal } = this.ctx;
    const { mount, hostPath } = plan;
    const info = await engine.inspectContainer(id, signal);
    const why = this.hostBlocker(info, plan, !!info.State?.Running, !!info.State?.Paused);
    if (why) return why;
    // Prepared before the hold: the directory checked then, used if its path still leads to it (held); the walk
    // starts at once with the capabilities read then, the held getfattr going on beside it. Else the walk waits
    // for the held run.
    const pre = prepared?.take(hostPath!);
    const xattrs = early ?? runGetfattr(hostPath!, GETFATTR_MAX, signal);
    const dir: HostDir | string = pre ? pre.dir : await trustHostDir(engine, id, mount.destination, hostPath!, signal);
    const first = pre ? undefined : await xattrs;
    // A run the cancel killed is no getfattr failure to fall back from.
    if (signal?.aborted) {
      if (typeof dir !== 'string') {
        closeSync(dir.fd);
        await dir.owner;
      }
      signal.throwIfAborted();
    }
    if (typeof dir === 'string') return dir;
    let caps: Map<string, Buffer>;
    let deferred: DeferredReads | undefined;
    let collector: MetadataCollector;
    let tar: Readable;
    try {
      // Every capability must be known: a getfattr that could not read some file (exit 1) leaves it to the engine.
      const failed = first && getfattrFailure(first);
      if (failed) {
        closeSync(dir.fd);
        await dir.owner;
        return failed;
      }
      caps = capabilitiesFrom((first ?? pre!.hint).output, hostPath!);
      const untrusted = untrustedFs(statfsSync(atDir(dir.fd)).type);
      if (files) {
        files.off ??= untrusted;
        files.dev = dir.root.dev;
      }
      // Held copies go in the spool's directory (removed with it), never when the spool encrypts.
      const held = this.spool.encrypting || !copies ? undefined : this.spool.dir;
      deferred = deferBefore !== undefined && !untrusted ? new DeferredReads(deferBefore, { path: hostPath!, dev: dir.root.dev }, held) : undefined;
      const c = (collector = new MetadataCollector(rootStatFrom(dir.root)));
      const observe = (rel: string, st: BigIntStats) => c.visit(rel === '.' ? rel : Buffer.from(rel, 'latin1').toString('utf8'), walkedOf(st));
      // The walk owns the directory's descriptor from here (closed when it ends).
      tar = hostTar(dir, posix.basename(posix.normalize(mount.destination)), caps, { files, defer: deferred, observe, signal });
    } catch (err) {
      closeSync(dir.fd);
      throw err;
    }
    let spooled: Spooled;
    try {
      spooled = await this.spool.take(tar, this.meter(label));
    } catch (err) {
      await deferred?.abandon();
      await dir.owner;
      signal?.throwIfAborted();
      if (err instanceof SpoolError) throw err;
      // Capabilities read before the hold that the held run does not have (one that is not text, say) fail the walk: walked again.
      if (pre && staleCapabilities(caps, await xattrs, hostPath!)) return STALE_CAPABILITIES;
      return `the host could not read it as the engine would (${errorMessage(err)})`;
    }
    // The held copies end before the container is back; one not made leaves its file's data nowhere.
    const uncopied = await deferred?.copiesDone();
    // A copy killed by a cancel is no copy not made: the run stops.
    if (uncopied !== undefined) {
      signal?.throwIfAborted();
      deferred!.discard();
      await dir.owner;
      await this.spool.release(spooled);
      return Symbol(`the copy of ${Buffer.from(uncopied, 'latin1').toString('utf8')} while held was not made`);
    }
    const owner = await dir.owner;
    const dump = first ?? (await xattrs);
    if (signal?.aborted) {
      deferred?.discard();
      await this.spool.release(spooled);
      signal.throwIfAborted();
    }
    // The capabilities written are the held ones: read held, or read before and the same as the held run's.
    const after = owner ?? (first ? undefined : (getfattrFailure(dump) ?? (staleCapabilities(caps, dump, hostPath!) ? STALE_CAPABILITIES : undefined)));
    if (!after) return { spooled, scan: collector.finish(hostPath!, xattrOutput(dump)), ...(deferred ? { deferred } : {}) };
    deferred?.discard();
    await this.spool.release(spooled);
    return after;
  }

  /**
   * Once the container is back, before storeVolume: the files the host read left for later read
   * into the spooled archive (deferred-read.ts), each checked unchanged since the hold. Throws
   * DeferredChange when one changed (the caller takes the container again, `defer` off), the
   * signal's reason, or a read's or the spool's error.
   */
  async readLater(container: string, taken: TakenVolume): Promise<void> {
    const { deferred, spooled, plan } = taken;
    if (!deferred) return;
    const patch = this.spool.patch(spooled);
    try {
      await readDeferred(plan.hostPath!, deferred, patch, this.ctx.signal);
    } finally {
      patch.close();
      deferred.discard();
    }
    const copies = deferred.copied > 0 ? `; ${deferred.copied} of them (${formatBytes(deferred.copiedBytes)}) not settled, copied while held` : '';
    this.ctx.log.info(
      `${container}: reading ${plan.mount.name || plan.mount.destination}: ${deferred.reads.length} file(s) read once the container was back (${formatBytes(deferred.bytes)}), each checked unchanged since the hold${copies}`,
    );
  }

  /**
   * Once the container is back: the spooled archive checked (a whole tar) and digested; the
   * earlier set's blob when the content is the same, else compressed into every destination.
   * Then the side record of what the archive dropped.
   */
  async storeVolume(container: string, taken: TakenVolume, stats: { written: number; reused: number }): Promise<VolumeRecord> {
    const { plan, spooled } = taken;
    const what = `${container}: ${plan.mount.type === 'bind' ? `bind mount ${plan.mount.source}` : `volume ${plan.mount.name}`}`;
    // The headers of the runs left unread as holes while held go in first: the archive is read whole from here.
    if (taken.files?.runs.some((r) => r.later)) {
      const patch = this.spool.patch(spooled);
      try {
        await writeRunHeaders(taken.files.runs, patch, this.ctx.signal);
      } finally {
        patch.close();
      }
      for (const r of taken.files.runs) delete r.later;
    }
    const checked = () => {
      // Files left unread are zeros the chunker skips: not a sparse archive to read past the page cache.
      const file = this.spool.read(spooled, (taken.files?.unreadBytes ?? 0) + (taken.files?.runBytesUnread ?? 0));
      const tar = file.pipe(new TarChecker(`${container}: ${plan.mount.name || plan.mount.destination}`));
      file.on('error', (err) => tar.destroy(err));
      // A failed check (or a reader that stops) leaves the file open otherwise: pipe() only unpipes.
      tar.on('close', () => file.destroy());
      return tar;
    };
    // Counted before chunking (the archive's size is known), a little above the average: a count past it is caught after.
    const estimate = Math.ceil((1.25 * spooled.bytes) / CHUNK_SIZES.avg) + 1;
    let whole = this.chunking ? this.planChunks(estimate) : undefined;
    // Files left unread are zeros in the spool: only their chunks from the set before can stand for them.
    const unread = taken.files?.unread.size ? earlierRuns(taken.files.unread, plan.unread!.chunks) : undefined;
    const ranges = taken.files ? this.runRanges(taken.files, plan) : [];
    const anyUnread = unread !== undefined || ranges.some((r) => r.reused);
    let blob = !anyUnread && (!this.chunking || whole) && plan.previous && (await this.sameContent(spooled, plan.previous)) ? plan.previous : undefined;
    if (blob) stats.reused++;
    else if (this.chunking && !whole) {
      const left = (taken.files?.unreadBytes ?? 0) + (taken.files?.runBytesUnread ?? 0);
      this.ctx.log.info(`${what}: storing the new chunks of ${formatBytes(spooled.bytes - left)} (before compression)`);
      const targets = this.targets(SET_SCOPE);
      const meter = this.meter(`${what}: chunking`, spooled.bytes);
      const hints = taken.files?.changed.size && plan.unread ? earlierRuns(taken.files.changed, plan.unread.chunks) : undefined;
      const chunked = await storeChunked(checked(), targets, this.compression, this.history.chunks, meter, unread, ranges, hints);
      this.ctx.log.info(`${what}: ${chunked.blob.chunks.length} chunk(s): ${chunked.written} stored, ${chunked.reused} already there`);
      whole = this.planChunks(chunked.blob.chunks.length, estimate);
      const index =
        !whole && taken.files ? await storeFileIndex(buildFileIndex(taken.files, chunked.runs, chunked.ranges), targets, this.compression) : undefined;
      if (index) chunked.blob.files = index;
      blob = whole ? undefined : chunked.blob;
      stats.written += chunked.written;
      stats.reused += chunked.reused;
    }
    if (whole) this.ctx.log.info(`${what}: stored whole, not as chunks: ${formatBytes(spooled.bytes)} would take ${whole}`);
    if (!blob) {
      this.ctx.log.info(`${what}: storing ${formatBytes(spooled.bytes)} (before compression)`);
      // Files left unread are read back from the set before's chunks (in every destination: planVolume saw them).
      const source = this.targets(SET_SCOPE)[0].dest;
      const read = (chunk: BlobDescriptor) => openContent(source, SET_SCOPE, chunk, `${what} (a file left unread)`);
      const archive = anyUnread ? Readable.from(splicedArchive(checked(), unread ?? new Map(), read, ranges)) : checked();
      blob = await storeBlob(archive, this.targets(SET_SCOPE), volumeMediaType(this.compression), this.meter(`${what}: storing`, spooled.bytes));
      stats.written++;
    }
    await this.spool.release(spooled);
    return this.withMetadata(what, { ...plan.record, blob }, taken.scan);
  }

  /** The runs of small files the walk wrote (ascending), each left unread with the set before's chunks of it (chunked.ts ArchiveRanges). */
  private runRanges(files: FileWalk, plan: VolumePlan): ArchiveRanges {
    // (A run is left unread only against plan.unread's index: its chunks are there; none would fail the store, never store zeros.)
    const chunks = plan.unread?.chunks ?? [];
    return files.runs.map(({ start, end, earlier }) => ({
      start,
      end,
      ...(earlier ? { reused: chunks.slice(earlier.first, earlier.first + earlier.count) } : {}),
    }));
  }

  /** True when the spooled archive's content is `previous`'s (its sha256). */
  private async sameContent(spooled: Spooled, previous: BlobDescriptor): Promise<boolean> {
    const digester = new Digester();
    const file = this.spool.read(spooled);
    file.on('error', (err) => digester.destroy(err));
    await drain(file.pipe(digester));
    return digester.digest === previous.contentDigest;
  }

  /** Keeps the side record of what the archive dropped, and says what it kept and what not (a warning). */
  private async withMetadata(what: string, volume: VolumeRecord, scan: MetadataScan): Promise<VolumeRecord> {
    const store = (content: Readable) => storeBlob(content, this.targets(SET_SCOPE), volumeMetadataMediaType(this.compression));
    const { metadata, kept } = await keepVolumeMetadata(scan, store);
    if (kept) this.ctx.log.info(`${what}: ${kept}`);
    if (metadata.notKept) this.ctx.log.warning(`${what}: not kept: ${metadata.notKept}`);
    return { ...volume, metadata };
  }
}

/** What is known of a mount before its container is held (VolumePath.planVolume). */
export interface VolumePlan {
  mount: MountToTake;
  record: Omit<VolumeRecord, 'blob'>;
  hostPath: string | undefined;
  previous?: BlobDescriptor;
  /** The set before's file index and chunk list, when its unchanged files may be left unread (every destination holds their chunks). */
  unread?: { index: FileIndex; chunks: BlobDescriptor[] };
}

/** A mount read while held: its plan, its archive in the spool, the scan of what the archive drops, and whether this host made the archive. */
export interface TakenVolume {
  plan: VolumePlan;
  spooled: Spooled;
  scan: MetadataScan;
  /** True when the archive was made here from the host directory (volume-tar.ts), false when the engine sent it. */
  readOnHost: boolean;
  /** What the host read saw of large files and left unread (file-index.ts); absent when the engine sent the archive or volumes are not chunked. */
  files?: FileWalk;
  /** Files the host read left as zeros, to read once the container is back (readLater); absent when none. */
  deferred?: DeferredReads;
  /** What of the mount is not in its archive (a sentence; the container's outcome notes it); absent when all of it is. */
  incomplete?: string;
}

/**
 * takeOnHost's answer when the capabilities read before the hold are not the held ones (the volume
 * is walked again with the held ones); a symbol of its own (described) when a held copy was not
 * made (walked again without held copies).
 */
const STALE_CAPABILITIES = Symbol('stale capabilities');

/** Why a getfattr run cannot give every capability (it could not read some file, exit 1, or could not run): the engine reads the volume then. */
function getfattrFailure(run: GetfattrRun): string | undefined {
  if (!run.failed) return undefined;
  // Its walk stops at a path longer than PATH_MAX, as this host's own read would: said so (takeVolume notes what the engine then drops).
  const tooLong = /File name too long|ENAMETOOLONG/i.test(run.failed.message) ? ', ENAMETOOLONG: a path longer than PATH_MAX' : '';
  return run.failed.code === 'ENOENT'
    ? 'getfattr not found (Debian package attr) to read security.capability'
    : `getfattr failed (${run.failed.message.split('\n')[0]}${tooLong})`;
}

/** Whether the held getfattr run `held` (of `hostPath`) gives capabilities other than `caps`, the ones written (when it failed: no). */
function staleCapabilities(caps: ReadonlyMap<string, Buffer>, held: GetfattrRun, hostPath: string): boolean {
  if (held.failed) return false;
  const now = capabilitiesFrom(held.output, hostPath);
  if (now.size !== caps.size) return true;
  for (const [path, value] of caps) if (!now.get(path)?.equals(value)) return true;
  return false;
}

/**
 * A mount's host read made ready before the hold (VolumePath.prepareHostRead): its directory, open
 * and checked, and a getfattr run of it. Taken once, by the first hold; `close` closes the directory
 * when no hold took it.
 */
export class PreparedRead {
  private taken = false;

  constructor(
    private readonly dir: HostDir,
    private hint: GetfattrRun | undefined,
  ) {}

  /**
   * While held, the first time: the directory (its root stat'ed again, held) and the run, when
   * `hostPath` still leads to that directory (lstat: same device and inode; a volume mounted again
   * since — a tmpfs one whose container restarted —, a bind source replaced, would be another, which
   * the engine archives). The caller owns the descriptor then. Undefined otherwise (the descriptor
   * closed), and every time after: the hold checks and reads again.
   */
  take(hostPath: string): { dir: HostDir; hint: GetfattrRun } | undefined {
    if (this.taken) return undefined;
    this.taken = true;
    const hint = this.hint!;
    this.hint = undefined;
    let root: BigIntStats;
    let named: BigIntStats;
    try {
      root = fstatSync(this.dir.fd, { bigint: true });
      named = lstatSync(hostPath, { bigint: true });
    } catch {
      closeQuietly(this.dir.fd);
      return undefined;
    }
    if (!named.isDirectory() || named.dev !== root.dev || named.ino !== root.ino) {
      closeQuietly(this.dir.fd);
      return undefined;
    }
    return { dir: { ...this.dir, root, owner: Promise.resolve(undefined) }, hint };
  }

  /** Closes the directory unless a hold took it (the walk closes it then). Throws nothing. */
  close(): void {
    if (!this.taken) closeQuietly(this.dir.fd);
    this.taken = true;
    this.hint = undefined;
  }
}
