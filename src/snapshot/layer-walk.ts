/**
 * The writable layer's paths from a walk of the container's overlay2 upper directory on this host,
 * instead of the engine's `GET /containers/{id}/changes`. The engine answers that request by
 * diffing the upper directory against every lower layer (moby pkg/archive OverlayChanges; ~1.1 s
 * for the 14,000 paths of the benchmark's layer, measured here on Engine 20.10), while the
 * container is held; the walk lstats each path of the upper directory once (~0.1 s for the same
 * layer). It lists what the upper directory holds, which is more than the engine lists: every
 * directory a change was made below (the engine leaves out those whose mode, size and mtime equal
 * a lower layer's), whiteouts (deletions) where the kernel made them, and opaque directories
 * (a directory removed and made again: nothing of the lower layers shows through it; kernel
 * overlayfs.rst "whiteouts and opaque directories") marked as such instead of a deletion per lower
 * path below them.
 *
 * The walk is made by GNU find in a child process where it can be run (findUpperDir: measured on
 * the benchmark's layer of 14,000 paths, ~65 ms of find's own time and ~20 ms here to read its
 * records, where an lstat per path here took 130–300 ms of this thread; the container is held
 * meanwhile, and this thread walks its volumes beside it), else here (walkUpperDir).
 */
import { spawn } from 'node:child_process';
import { lstatSync, readdirSync, type BigIntStats } from 'node:fs';
import { join } from 'node:path';
import { isEngineScratch, scratchToDrop, vanishedScratchOnly } from './engine-scratch.js';
import { goFileMode, goUtcTime, goUtcTimeOf, hostEntry, type HostStat } from './layer-upper.js';

/** What the walk found: host stats and whiteouts by absolute path, and the paths to ask the engine. */
export interface UpperWalk {
  /** Paths stat'ed here (`HostStat`) or found to be whiteouts (a character device 0:0), by absolute container path. */
  entries: Map<string, HostStat | 'whiteout'>;
  /** Paths the engine must stat: under a mount (`shadowed`), or a time the host cannot say as the engine would (hostEntry). */
  toEngine: string[];
  /** Set when the walk stopped at more than its `maxTotal` paths: the lists are then incomplete. */
  truncated?: true;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The walk of the upper directory `root`: findUpperDir's, else (find cannot be run here)
 * walkUpperDir's, with the same answers.
 */
export async function walkUpper(root: string, shadowed: (path: string) => boolean, maxTotal: number, signal?: AbortSignal): Promise<UpperWalk | string> {
  return (await findUpperDir(root, shadowed, maxTotal, signal)) ?? walkUpperDir(root, shadowed, maxTotal);
}

/**
 * Walks the upper directory `root` (depth first; only real directories are entered, never a
 * symlink) and lstats each path below it. `shadowed(path)`: the engine's stat would see something
 * mounted there instead (layer-upper.ts UpperDir.shadowed): such paths go to `toEngine`. Returns
 * why the walk cannot stand for the engine's list (a clause) when a name is not UTF-8 (the
 * engine's JSON could not name it either) or a path cannot be read; stops, `truncated`, past
 * `maxTotal` paths (the caller then keeps no index). The engine's own directory of a moment at the
 * root (engine-scratch.ts) is left out, gone or empty. Synchronous: a local lstat (~5 µs) costs less than
 * a turn through the thread pool, and the container is held meanwhile.
 */
export function walkUpperDir(root: string, shadowed: (path: string) => boolean, maxTotal: number): UpperWalk | string {
  const walk: UpperWalk = { entries: new Map(), toEngine: [] };
  let count = 0;
  const dirs: string[] = [''];
  try {
    for (let dir = dirs.pop(); dir !== undefined; dir = dirs.pop()) {
      for (const raw of readdirGone(join(root, dir), isEngineScratch(dir))) {
        let name: string;
        try {
          name = utf8.decode(raw);
        } catch {
          return `a name in ${dir || '/'} is not UTF-8`;
        }
        const path = `${dir}/${name}`;
        if (++count > maxTotal) return { ...walk, truncated: true };
        const st = lstatGone(join(root, path), isEngineScratch(path));
        // The engine's own directory of a moment (engine-scratch.ts), gone since it was listed.
        if (!st) continue;
        if (st.isDirectory()) dirs.push(path);
        addStat(walk, path, st, shadowed);
      }
    }
  } catch (err) {
    return `${(err as NodeJS.ErrnoException).code ?? (err as Error).message} while walking it`;
  }
  return withoutScratch(walk);
}

/** `dir`'s names; none when it is gone and `mayGo` (an engine's directory of a moment). Throws otherwise. */
function readdirGone(dir: string, mayGo: boolean): Buffer[] {
  try {
    return readdirSync(dir, { encoding: 'buffer' });
  } catch (err) {
    if (mayGo && (err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** `path`'s lstat; undefined when it is gone and `mayGo` (an engine's directory of a moment). Throws otherwise. */
function lstatGone(path: string, mayGo: boolean): BigIntStats | undefined {
  try {
    return lstatSync(path, { bigint: true });
  } catch (err) {
    if (mayGo && (err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** `walk` without the engine's directories of a moment it met (engine-scratch.ts scratchToDrop: the name, nothing below). */
function withoutScratch(walk: UpperWalk): UpperWalk {
  const drop = scratchToDrop([...[...walk.entries].flatMap(([path, e]) => (e === 'whiteout' ? [] : [path])), ...walk.toEngine]);
  if (drop.size === 0) return walk;
  for (const path of drop) walk.entries.delete(path);
  return { ...walk, toEngine: walk.toEngine.filter((p) => !drop.has(p)) };
}

/** Adds a path's lstat to `walk`: a whiteout (a character device 0:0), its host stat, or a path for the engine (under a mount, or a time the host cannot say as the engine would). */
function addStat(walk: UpperWalk, path: string, st: BigIntStats, shadowed: (path: string) => boolean): void {
  const host = st.isCharacterDevice() && st.rdev === 0n ? 'whiteout' : shadowed(path) ? undefined : hostEntry(st);
  if (host) walk.entries.set(path, host);
  else walk.toEngine.push(path);
}

/** One record per path below the top: type letter, permission bits (octal, setuid/setgid/sticky included), size, mtime and ctime as seconds.nanoseconds, inode number, then the path (relative, raw bytes) and a NUL. */
const FORMAT = '%y %m %s %T@ %C@ %i %P\\0';
/** Fields of a FORMAT record before its path (ASCII, each followed by a space). */
const FIELDS = 6;

/** st_mode's file type bits by find's %y letter (sys/stat.h). */
const TYPE_BITS: Record<string, number> = { f: 0o100000, d: 0o040000, l: 0o120000, c: 0o020000, b: 0o060000, p: 0o010000, s: 0o140000 };

/**
 * walkUpperDir's answer from `find root -printf` (GNU findutils, which never follows a symlink
 * unless asked: `-P`): the same entries and paths for the engine, or why the walk cannot stand for
 * the engine's list (a clause: a name not UTF-8, find failing part-way — but not when it failed on
 * nothing but the engine's own directory of a moment gone, engine-scratch.ts, which is left out as
 * walkUpperDir leaves it); undefined when find cannot
 * be run here (not installed, or wrote nothing and failed, as one without -printf does): the caller
 * then walks the directory itself. A character device is lstat'ed here (a whiteout is one of 0:0).
 * Past `maxTotal` paths, find is stopped and the answer is `truncated`. An aborted `signal` kills it.
 */
export function findUpperDir(
  root: string,
  shadowed: (path: string) => boolean,
  maxTotal: number,
  signal?: AbortSignal,
): Promise<UpperWalk | string | undefined> {
  return new Promise((resolve) => {
    // The C locale: the decimal point of %T@ and find's messages as parsed here.
    const child = spawn('find', [root, '-mindepth', '1', '-printf', FORMAT], {
      stdio: ['ignore', 'pipe', 'pipe'],
      signal,
      env: { ...process.env, LC_ALL: 'C' },
    });
    const parts: Buffer[] = [];
    let records = 0;
    let truncated = false;
    let stderr = '';
    child.stdout.on('data', (part: Buffer) => {
      if (truncated) return;
      for (let at = part.indexOf(0); at >= 0; at = part.indexOf(0, at + 1)) records++;
      parts.push(part);
      // Past maxTotal paths the index is not kept: find need not go on.
      if (records > maxTotal) {
        truncated = true;
        child.kill();
      }
    });
    child.stderr.on('data', (part: Buffer) => (stderr += part.toString('utf8')));
    child.on('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ENOENT' ? undefined : `find: ${err.message}`));
    child.on('close', (code) => {
      if (truncated) return resolve({ entries: new Map(), toEngine: [], truncated: true });
      // Nothing written: find could not walk at all (not GNU find, no -printf): the walk here says what it finds.
      // Exit 1 for nothing but an engine's directory of a moment gone mid-walk (engine-scratch.ts): the other records stand.
      if (code !== 0 && !(code === 1 && vanishedScratchOnly(stderr, root))) {
        return resolve(records === 0 ? undefined : `find exited with ${code} while walking it: ${stderr.trim().split('\n')[0]}`);
      }
      resolve(parseRecords(Buffer.concat(parts), root, shadowed));
    });
  });
}

/** The entries of find's output (FORMAT records); a clause when a name is not UTF-8 or a record cannot be read. */
function parseRecords(out: Buffer, root: string, shadowed: (path: string) => boolean): UpperWalk | string {
  const walk: UpperWalk = { entries: new Map(), toEngine: [] };
  let at = 0;
  while (at < out.length) {
    const end = out.indexOf(0, at);
    if (end < 0) return 'find’s output ended inside a record';
    // The fields are ASCII; the path, after the last field's space, is raw bytes.
    let field = at;
    const fields: string[] = [];
    for (let i = 0; i < FIELDS; i++) {
      const space = out.indexOf(0x20, field);
      if (space < 0 || space >= end) return 'find wrote a record it was not asked for';
      fields.push(out.toString('latin1', field, space));
      field = space + 1;
    }
    let rel: string;
    try {
      rel = utf8.decode(out.subarray(field, end));
    } catch {
      return `a name in /${out.subarray(field, end).toString('latin1').split('/').slice(0, -1).join('/')} is not UTF-8`;
    }
    at = end + 1;
    const path = `/${rel}`;
    const [type, perm, size, mtime, ctime, ino] = fields;
    if (type === 'c') {
      // A whiteout (0:0) or a device: its device numbers are not in find's record.
      let st: BigIntStats;
      try {
        st = lstatSync(join(root, rel), { bigint: true });
      } catch (err) {
        return `${(err as NodeJS.ErrnoException).code ?? (err as Error).message} while walking it`;
      }
      addStat(walk, path, st, shadowed);
      continue;
    }
    const bits = TYPE_BITS[type];
    const m = findTime(mtime);
    const c = findTime(ctime);
    if (bits === undefined || m === undefined || c === undefined || !/^[0-7]+$/.test(perm) || !/^\d+$/.test(size) || !/^\d+$/.test(ino)) {
      return `find wrote a record it was not asked for (${fields.join(' ')})`;
    }
    const time = shadowed(path) ? undefined : typeof m === 'bigint' ? goUtcTime(m) : goUtcTimeOf(m.seconds, m.nanos);
    if (time === undefined) walk.toEngine.push(path);
    else walk.entries.set(path, { mode: goFileMode(bits | Number.parseInt(perm, 8)), size: Number(size), mtime: time, ctimeNs: decimalNs(c), ino });
  }
  return withoutScratch(walk);
}

/** find's `%T@` of a time after the epoch, up to 15 digits of seconds (exact in a double): most of them. */
const EPOCH_TIME = /^(\d{1,15})\.(\d+)$/;

/**
 * find's `%T@` (seconds, a dot, then nanoseconds and more digits; the seconds signed, the fraction
 * added): its whole seconds and nanoseconds as numbers where they fit (no BigInt: a walk parses
 * two per path while the container is held), else (before the epoch, or beyond 15 digits of
 * seconds) in ns as a bigint; undefined when it is not such a time.
 */
export function findTime(text: string): { seconds: number; nanos: number } | bigint | undefined {
  const fast = EPOCH_TIME.exec(text);
  if (fast) return { seconds: Number(fast[1]), nanos: Number(fast[2].slice(0, 9).padEnd(9, '0')) };
  const m = /^(-?\d+)\.(\d+)$/.exec(text);
  if (!m) return undefined;
  return BigInt(m[1]) * 1_000_000_000n + BigInt(m[2].slice(0, 9).padEnd(9, '0'));
}

/** A findTime in ns since the epoch, in decimal. */
function decimalNs(t: { seconds: number; nanos: number } | bigint): string {
  if (typeof t === 'bigint') return String(t);
  return t.seconds > 0 ? `${t.seconds}${String(t.nanos).padStart(9, '0')}` : String(t.nanos);
}
