/**
 * Extended attributes of a directory tree on this host, read with `getfattr` (Debian package `attr`),
 * less the one the engine's archive keeps (`security.capability`).
 */
import { execFile } from 'node:child_process';

const KEPT_BY_ARCHIVE = new Set(['security.capability']);

/** getfattr's file name (latin1 text, bytes escaped as `\ooo`, a backslash as `\\`) as its bytes, in latin1. */
function unescapeBytes(raw: string): string {
  return raw.replace(/\\\\|\\([0-7]{3})/g, (_m, oct: string | undefined) => (oct ? String.fromCharCode(parseInt(oct, 8)) : '\\'));
}

/** getfattr's file name as UTF-8 text. */
function unescapeName(raw: string): string {
  return Buffer.from(unescapeBytes(raw), 'latin1').toString('utf8');
}

/**
 * Parses `getfattr --absolute-names -R -P -d -m - -e base64` output into path → (name → base64),
 * paths relative to `root`; the attributes the archive keeps are left out.
 */
export function parseGetfattr(output: string, root: string): Map<string, Record<string, string>> {
  const out = new Map<string, Record<string, string>>();
  let current: Record<string, string> | undefined;
  for (const line of output.split('\n')) {
    if (line.startsWith('# file: ')) {
      const abs = unescapeName(line.slice(8));
      const rel = abs === root ? '.' : abs.startsWith(`${root}/`) ? abs.slice(root.length + 1) : undefined;
      current = rel === undefined ? undefined : {};
      if (current && rel !== undefined) out.set(rel, current);
      continue;
    }
    const eq = line.indexOf('=');
    if (!current || eq <= 0) continue;
    const name = line.slice(0, eq);
    const value = line.slice(eq + 1);
    if (KEPT_BY_ARCHIVE.has(name)) continue;
    current[name] = value.startsWith('0s') ? value.slice(2) : Buffer.from(value.replace(/^"|"$/g, ''), 'latin1').toString('base64');
  }
  for (const [path, attrs] of out) if (Object.keys(attrs).length === 0) out.delete(path);
  return out;
}

/** The environment getfattr runs in where its messages are read: this process's, in the C locale (engine-scratch.ts vanishedScratchOnly). */
export function cLocale(): NodeJS.ProcessEnv {
  return { ...process.env, LC_ALL: 'C' };
}

/** What one run of `getfattr -R -h -d -m -` printed, and how it failed, if it did. */
export interface GetfattrRun {
  /** Its output (latin1 text); what it printed before failing, when it failed. */
  output: string;
  /** Set when it exited non-zero (1: some file could not be read, the others printed) or could not start (ENOENT: not installed). */
  failed?: NodeJS.ErrnoException;
}

/**
 * Most bytes of getfattr output read (256 MiB, about two million files with an attribute each):
 * beyond it getfattr is stopped and its run failed. Node cannot make a string past ~512 MiB:
 * execFile's decoding of a larger output threw out of its callback (an uncaught exception, which
 * cancels the whole run), and the run never answered, so the container stayed held until the
 * cancelled run's undo gave up waiting (30 s).
 */
export const GETFATTR_MAX = 1 << 28;

/** execFile's error when an output passed its `maxBuffer` (the child is killed, the output cut). */
const OUTPUT_CUT = 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER';

/**
 * Runs `getfattr --absolute-names -R -P -h -d -m - -e base64 root`: every extended attribute of
 * every file under `root`, values in base64; a symbolic link's own (`-h`: without it getfattr gives
 * a link its target's attributes, and fails on a dangling one). Never rejects: a failure is in
 * `failed`, an output past `maxBuffer` bytes (GETFATTR_MAX) too, and a run `signal` stopped (its
 * process killed: an AbortError).
 */
export function runGetfattr(root: string, maxBuffer = GETFATTR_MAX, signal?: AbortSignal): Promise<GetfattrRun> {
  return new Promise((resolve) => {
    execFile(
      'getfattr',
      ['--absolute-names', '-R', '-P', '-h', '-d', '-m', '-', '-e', 'base64', root],
      { maxBuffer, encoding: 'latin1', ...(signal ? { signal } : {}) },
      (err, stdout) => resolve({ output: stdout ?? '', ...(err ? { failed: err as NodeJS.ErrnoException } : {}) }),
    );
  });
}

/**
 * What getfattr's run gives the side record (for parseGetfattr): its output, also when some files
 * could not be read (getfattr exits 1 after printing the others); the error when it is not
 * installed (ENOENT), failed printing nothing, or printed more than it may (its output cut: what
 * it would leave out is not known).
 */
export function xattrOutput(run: GetfattrRun): string | Error {
  if (run.failed && (run.failed.code === 'ENOENT' || run.failed.code === OUTPUT_CUT || !run.output)) return run.failed;
  return run.output;
}

/** Why a getfattr run failed, as one clause: not installed (ENOENT), else the first line of its error. */
export function getfattrClause(err: NodeJS.ErrnoException): string {
  return err.code === 'ENOENT' ? 'getfattr not found (Debian package attr)' : `getfattr failed (${err.message.split('\n')[0]})`;
}

/**
 * The `security.capability` values in getfattr's base64 output (`-d -e base64`, latin1 text: a
 * runGetfattr run, or volume-tar.ts readCapabilities') for files under `root`, keyed by path
 * relative to `root` ('.' the root) as bytes in latin1. Other attributes in the output are passed over.
 */
export function capabilitiesFrom(stdout: string, root: string): Map<string, Buffer> {
  // Paths compared as bytes (latin1), as getfattr's unescaped output is read.
  const top = Buffer.from(root, 'utf8').toString('latin1');
  const caps = new Map<string, Buffer>();
  let file: string | undefined;
  for (const line of stdout.split('\n')) {
    if (line.startsWith('# file: ')) {
      const abs = unescapeBytes(line.slice(8));
      file = abs === top ? '.' : abs.startsWith(`${top}/`) ? abs.slice(top.length + 1) : undefined;
    } else if (file !== undefined && line.startsWith('security.capability=0s')) caps.set(file, Buffer.from(line.slice(22), 'base64'));
  }
  return caps;
}
