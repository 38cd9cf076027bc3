import { execFile } from 'node:child_process';
import { link, lstat, mkdir, readdir, rm, symlink } from 'node:fs/promises';
import { join, posix, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import type { Destination } from '../destinations/types.js';
import type { SnapshotSet } from '../snapshot/manifest.js';
import type { Vocabulary } from '../core/words.js';
import type { FileEntry } from './entries.js';
import { fileAt, ownDirectory, ownName, parents, writeFile, Written } from './extract-fs.js';
import type { Source } from './sources.js';
import { within } from './paths.js';
import { BrowseError, containerOf, visitUnder } from './view.js';

const run = promisify(execFile);
/** setuid and setgid (S_ISUID | S_ISGID). */
const SET_ID = 0o6000;

export interface ExtractOptions {
  /** The host directory written into; made when missing, its own attributes never changed. */
  to: string;
  /** Replace what exists in `to` (a directory stays and is merged into). */
  overwrite: boolean;
  /** Make devices (when run as root) and keep setuid/setgid bits of files; else (the default) devices are left out and those bits dropped. */
  keepSpecial?: boolean;
  words: Vocabulary;
  /** Told of each entry left out or changed, and why. */
  warn: (message: string) => void;
}

/** What `extract` wrote under `to`: counts by kind, and what it left out. */
export interface ExtractResult {
  snapshot: string;
  container: string;
  path: string;
  to: string;
  written: { files: number; directories: number; links: number; special: number };
  skipped: string[];
  /** Files written without the setuid/setgid bits the set gives them (without keepSpecial). */
  stripped: string[];
}

/** An entry's name below `to`: its path relative to the parent of the path asked for (`docker cp`'s naming). */
function relativeName(path: string, top: string): string {
  const rel = posix.relative(posix.dirname(top), path);
  if (rel.startsWith('..') || posix.isAbsolute(rel)) throw new BrowseError(`Entry ${path} is outside ${top}; not written.`);
  return rel;
}

/**
 * Writes one file or directory of a set's container to `opts.to`, named as `docker cp` names it
 * (`/v/sub` lands at `TO/sub`), from the archive that holds it (a mount, else the writable layer),
 * read and checked as it streams. Keeps modes and mtimes, and owners when run as root; devices and
 * setuid/setgid bits only with `keepSpecial` (else left out, dropped, with a warning). Never
 * writes outside `to`: entry names that climb are left out, nothing is written through a symlink,
 * files are created exclusively (an existing symlink is never followed). Throws BrowseError
 * when something exists (without `overwrite`) or nothing of the container lies at the path.
 */
export async function extractPath(
  dest: Destination,
  set: SnapshotSet,
  target: { container: string; path: string },
  opts: ExtractOptions,
): Promise<ExtractResult> {
  const c = containerOf(set, target.container);
  const top = target.path;
  const to = resolve(opts.to);
  if (!opts.overwrite) await refuseExisting(dest, set, c.name, top, to, opts.words);
  await mkdir(to, { recursive: true });
  const result: ExtractResult = {
    snapshot: set.tag,
    container: c.name,
    path: top,
    to,
    written: { files: 0, directories: 0, links: 0, special: 0 },
    skipped: [],
    stripped: [],
  };
  const skip = (why: string) => {
    result.skipped.push(why);
    opts.warn(why);
  };
  const strip = (path: string) => {
    result.stripped.push(path);
    opts.warn(`${path}: setuid/setgid bits dropped (${opts.words.enable('keep-special')} keeps them)`);
  };
  const made = new Written();
  const asRoot = process.getuid?.() === 0;
  let seen = 0;
  await visitUnder(
    dest,
    c,
    top,
    async (entry, source, content) => {
      if (entry.type === 'deleted' || entry.type === 'opaque') return;
      seen++;
      const rel = relativeName(entry.path, top);
      if (rel === '') return;
      await parents(to, rel);
      const abs = join(to, rel);
      const existing = await lstat(abs).catch(() => undefined);
      if (existing && !(existing.isDirectory() && entry.type === 'directory')) {
        if (!opts.overwrite) throw clash(abs, entry, source, made.has(rel), opts.words);
        made.drop(rel);
        await rm(abs, { recursive: true, force: true });
      }
      const kind = await writeEntry(entry, abs, content, { to, top, asRoot, keepSpecial: opts.keepSpecial ?? false, words: opts.words, made, skip, strip });
      if (kind) result.written[kind]++;
      if (kind === 'directories') {
        // A directory that was there keeps its own attributes unless overwriting.
        const keep = existing && !opts.overwrite && !made.has(rel);
        made.record(rel, 'directory', await lstat(abs, { bigint: true }), keep ? undefined : entry);
      } else if (kind) made.record(rel, entry.type === 'file' || entry.type === 'link' ? 'file' : 'other', await lstat(abs, { bigint: true }));
    },
    (name, source) => skip(`${source.label}: entry '${name}' climbs out of its archive; not written`),
  );
  if (seen === 0)
    throw new BrowseError(`Snapshot ${set.tag}: ${c.name} has nothing at ${top} in its writable layer or mounts (files of its image are not in the set).`);
  for (const [rel, d] of made.directories()) {
    if (!(await ownDirectory(join(to, rel), d, asRoot))) skip(`${join(to, rel)} is no longer the directory extract made; its attributes are not set`);
  }
  return result;
}

/** The error for an entry that lands on something, without overwrite: the archive's own earlier entry, or what was in `to`. */
function clash(abs: string, e: FileEntry, source: Source, twice: boolean, words: Vocabulary): BrowseError {
  if (twice) {
    return new BrowseError(
      `${source.label}: the archive names ${e.path} twice; ${abs} is its first entry. Expected ${words.enable('overwrite')} to let the later entry replace it.`,
    );
  }
  return new BrowseError(`${abs} exists. Expected a ${words.name('to')} directory without it, or ${words.enable('overwrite')}.`);
}

interface WriteContext {
  to: string;
  top: string;
  asRoot: boolean;
  keepSpecial: boolean;
  words: Vocabulary;
  made: Written;
  skip: (why: string) => void;
  strip: (why: string) => void;
}

/** Where a hard link's target is under `to` when this extract wrote it as a file (the same inode still there); else undefined. */
async function ownFile(target: string, ctx: WriteContext): Promise<string | undefined> {
  if (!within(target, ctx.top)) return undefined;
  const rel = relativeName(target, ctx.top);
  const made = ctx.made.get(rel);
  const found = made?.kind === 'file' ? await fileAt(ctx.to, rel) : undefined;
  return found && found.st.dev === made!.dev && found.st.ino === made!.ino ? found.abs : undefined;
}

async function writeEntry(e: FileEntry, abs: string, content: Readable, ctx: WriteContext): Promise<keyof ExtractResult['written'] | undefined> {
  switch (e.type) {
    case 'directory':
      await mkdir(abs, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      });
      return 'directories';
    case 'file':
      if (e.mode & SET_ID && !ctx.keepSpecial) ctx.strip(e.path);
      await writeFile(abs, content, e, ctx.keepSpecial ? e.mode : e.mode & ~SET_ID, ctx.asRoot);
      return 'files';
    case 'symlink':
      await symlink(e.linkname ?? '', abs);
      await ownName(abs, e, ctx.asRoot);
      return 'links';
    case 'link': {
      const target = e.linkname ?? '';
      const from = await ownFile(target, ctx);
      if (!from) {
        ctx.skip(`${e.path}: a hard link to ${target}, which this extract did not write; not written`);
        return undefined;
      }
      await link(from, abs);
      return 'links';
    }
    case 'fifo':
      await run('mkfifo', ['-m', (e.mode & 0o777).toString(8), abs]);
      await ownName(abs, e, ctx.asRoot);
      return 'special';
    case 'character-device':
    case 'block-device':
      if (!ctx.keepSpecial || !ctx.asRoot) {
        ctx.skip(`${e.path}: a device, made only with ${ctx.words.enable('keep-special')} when run as root; not written`);
        return undefined;
      }
      await run('mknod', [
        '-m',
        (e.mode & 0o777).toString(8),
        abs,
        e.type === 'character-device' ? 'c' : 'b',
        String(e.device?.major ?? 0),
        String(e.device?.minor ?? 0),
      ]);
      await ownName(abs, e, ctx.asRoot);
      return 'special';
    default:
      ctx.skip(`${e.path}: a ${e.type} entry; not written`);
      return undefined;
  }
}

/** Without overwrite: fails before writing anything when an entry would land on something that exists (a directory on a directory is fine). */
async function refuseExisting(dest: Destination, set: SnapshotSet, container: string, top: string, to: string, words: Vocabulary): Promise<void> {
  const present = await readdir(to).then(
    (names) => names.length > 0,
    () => false,
  );
  if (!present) return;
  const c = containerOf(set, container);
  const clashes: string[] = [];
  await visitUnder(
    dest,
    c,
    top,
    async (entry) => {
      const rel = relativeName(entry.path, top);
      if (rel === '' || entry.type === 'deleted' || entry.type === 'opaque') return;
      const st = await lstat(join(to, rel)).catch(() => undefined);
      if (st && !(st.isDirectory() && entry.type === 'directory')) clashes.push(join(to, rel));
    },
    () => undefined,
  );
  if (clashes.length > 0) {
    const more = clashes.length > 3 ? ` and ${clashes.length - 3} more` : '';
    throw new BrowseError(
      `${clashes.slice(0, 3).join(', ')}${more} ${clashes.length === 1 ? 'exists' : 'exist'}. Expected a ${words.name('to')} directory without ${clashes.length === 1 ? 'it' : 'them'}, or ${words.enable('overwrite')}.`,
    );
  }
}
