import { Transform, type TransformCallback } from 'node:stream';
import tar from 'tar-stream';
import { allZero } from '../util/zeros.js';

/**
 * A regular file holding a run of zeros at least this long (in whole 4 KiB pieces) is worth
 * making sparse after a restore: the engine writes every byte it extracts, holes included.
 */
export const HOLE_MIN = 64 << 10;
/** At most this many files are named (the first ones of the archive; each costs a helper container to punch): the rest are counted. */
export const MAX_HOLEY_FILES = 100;
const BLOCK = 4096;
const ZEROS = Buffer.alloc(BLOCK);

/** Follows one file's data: `run` is the length of the current zero run, in zero 4 KiB pieces of the chunks. */
class ZeroRuns {
  run = 0;
  found = false;

  add(chunk: Buffer): void {
    if (this.found) return;
    if (allZero(chunk)) {
      this.run += chunk.length;
    } else {
      for (let at = 0; at < chunk.length && !this.found; at += BLOCK) {
        const end = Math.min(chunk.length, at + BLOCK);
        if (ZEROS.compare(chunk, at, end, 0, end - at) === 0) this.run += end - at;
        else this.run = 0;
        this.found = this.run >= HOLE_MIN;
      }
    }
    this.found ||= this.run >= HOLE_MIN;
  }
}

/**
 * Passes a tar stream (a volume's archive, on its way to `PUT /containers/{id}/archive`) through
 * unchanged and notes the regular files that hold a zero run of HOLE_MIN or more: sparse files,
 * which the engine writes back in full (moby's extraction copies each entry with io.Copy; Go's
 * archive/tar seeks over holes only in its unexported Reader.writeTo, golang/go#22735; measured
 * on Engine 20.10 and 26.1 with a GNU tar sparse 1.0 archive: written fully allocated). Memory is
 * bounded: one chunk at a time and the names found. A stream it cannot parse passes on untouched
 * (the engine judges it); the names found until then stay.
 */
export class HoleFinder extends Transform {
  /** Entry names (as in the archive: `<basename of the mount point>/…`) of the files found, in archive order. */
  readonly files: string[] = [];
  /** Files found beyond MAX_HOLEY_FILES. */
  more = 0;
  private readonly extract = tar.extract();
  private broken = false;

  constructor() {
    super();
    this.extract.on('entry', (header, stream, next) => {
      const runs = header.type === 'file' || header.type === 'contiguous-file' ? new ZeroRuns() : undefined;
      if (runs && (header.size ?? 0) >= HOLE_MIN) stream.on('data', (chunk: unknown) => runs.add(chunk as Buffer));
      else stream.resume();
      stream.on('end', () => {
        if (runs?.found) this.note(header.name);
        next();
      });
    });
    this.extract.on('error', () => {
      this.broken = true;
    });
  }

  private note(name: string): void {
    if (this.files.length < MAX_HOLEY_FILES) this.files.push(name);
    else this.more++;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.push(chunk);
    if (this.broken || this.extract.write(chunk)) return done();
    const go = () => {
      this.extract.off('drain', go);
      this.extract.off('error', go);
      done();
    };
    this.extract.on('drain', go);
    this.extract.on('error', go);
  }

  override _flush(done: TransformCallback): void {
    if (this.broken) return done();
    const go = () => done();
    this.extract.once('finish', go);
    this.extract.once('error', go);
    this.extract.end(null);
  }
}

/** Which files of a filled volume to punch, and in whose words. */
export interface HolePlan {
  /** Archive entry names (`<base>/…`), at most MAX_HOLEY_FILES. */
  files: string[];
  /** Files left out beyond MAX_HOLEY_FILES. */
  more: number;
  /** Set when the files were found by their zero runs: why the set's record was not used. */
  guessed?: string;
}

/**
 * The files to punch after a fill: those the set recorded as sparse (`recorded`, paths relative to
 * the volume's root, written under `base`), so that files preallocated with zeros stay allocated;
 * else those `finder` saw with a zero run of HOLE_MIN or more, and `why` (or the set's reason) says so.
 */
export function holePlan(recorded: string[] | 'many' | undefined, base: string, finder: { files: string[]; more: number }, why?: string): HolePlan {
  if (Array.isArray(recorded)) {
    return { files: recorded.slice(0, MAX_HOLEY_FILES).map((p) => `${base}/${p}`), more: Math.max(0, recorded.length - MAX_HOLEY_FILES) };
  }
  const reason =
    why ??
    (recorded === 'many'
      ? 'the set names no sparse files (it had too many to list)'
      : "the set does not record which files were sparse (written before it did, or the volume's directory was not readable at backup)");
  return { files: finder.files, more: finder.more, guessed: `${reason}: files with zero runs of 64 KiB or more were punched` };
}
