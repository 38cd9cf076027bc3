/**
 * Extended attributes of a directory tree on this host, read with `getfattr` (Debian package `attr`),
 * less the one the engine's archive keeps (`security.capability`).
 */
import { execFile } from 'node:child_process';

const KEPT_BY_ARCHIVE = new Set(['security.capability']);

/** getfattr escapes bytes of a file name as `\ooo` and a backslash as `\\`. */
function unescapeName(raw: string): string {
  const bytes: number[] = [];
  const src = Buffer.from(raw, 'latin1');
  for (let i = 0; i < src.length; i++) {
    if (src[i] === 0x5c && src[i + 1] === 0x5c) {
      bytes.push(0x5c);
      i++;
    } else if (src[i] === 0x5c && /^[0-7]{3}$/.test(src.subarray(i + 1, i + 4).toString('latin1'))) {
      bytes.push(parseInt(src.subarray(i + 1, i + 4).toString('latin1'), 8));
      i += 3;
    } else bytes.push(src[i]);
  }
  return Buffer.from(bytes).toString('utf8');
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

/**
 * The output of `getfattr --absolute-names -R -P -d -m - -e base64 root` (for parseGetfattr), also when
 * some files could not be read. Rejects with ENOENT when getfattr is not installed, and when it failed
 * printing nothing.
 */
export function getfattr(root: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('getfattr', ['--absolute-names', '-R', '-P', '-d', '-m', '-', '-e', 'base64', root], { maxBuffer: 1 << 30, encoding: 'latin1' }, (err, stdout) => {
      // It exits 1 when some file could not be read, after printing the others.
      if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') reject(err);
      else if (err && !stdout) reject(err);
      else resolve(Buffer.from(stdout, 'latin1').toString('latin1'));
    });
  });
}
