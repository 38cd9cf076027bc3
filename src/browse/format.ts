import { formatBytes } from '../util/format.js';
import type { FileEntry } from './entries.js';
import type { PathListing, SetListing } from './ls.js';
import type { SetDiff } from './compare.js';

const TYPE_CHAR: Record<string, string> = {
  file: '-',
  directory: 'd',
  symlink: 'l',
  link: 'h',
  fifo: 'p',
  'character-device': 'c',
  'block-device': 'b',
  other: '?',
};

/** `ls -l`'s mode column (`drwxr-xr-x`, with s/S and t/T), `h` for a hard link; `deleted` and `opaque` for whiteouts. */
export function modeString(e: Pick<FileEntry, 'type' | 'mode'>): string {
  if (e.type === 'deleted' || e.type === 'opaque') return e.type;
  const bits = ['r', 'w', 'x'];
  let s = TYPE_CHAR[e.type] ?? '?';
  for (let i = 8; i >= 0; i--) s += e.mode & (1 << i) ? bits[(8 - i) % 3] : '-';
  const special = (at: number, bit: number, on: string) => {
    if (!(e.mode & bit)) return;
    s = s.slice(0, at) + (s[at] === 'x' ? on : on.toUpperCase()) + s.slice(at + 1);
  };
  special(3, 0o4000, 's');
  special(6, 0o2000, 's');
  special(9, 0o1000, 't');
  return s;
}

/** Seconds since the epoch as `YYYY-MM-DD HH:MM:SS` UTC. */
export function timeString(seconds: number): string {
  return new Date(seconds * 1000)
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, '');
}

function columns(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const right = new Set([2]);
  return rows
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : right.has(i) ? c.padStart(widths[i]) : c.padEnd(widths[i])))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** One line per entry: mode, uid:gid, size in bytes, mtime (UTC), source, path (and `-> target` for links). */
export function pathListingText(l: PathListing): string {
  const rows = l.entries.map((e) => {
    const whiteout = e.type === 'deleted' || e.type === 'opaque';
    const size = e.device ? `${e.device.major},${e.device.minor}` : whiteout ? '' : String(e.size);
    const target = e.linkname ? ` -> ${e.linkname}` : '';
    return [modeString(e), whiteout ? '' : `${e.uid}:${e.gid}`, size, whiteout ? '' : timeString(e.mtime), e.source, `${e.path}${target}`];
  });
  const warn = l.unsafe.map((n) => `(left out: entry '${n}' climbs out of its archive)`);
  return [columns([['MODE', 'OWNER', 'SIZE', 'MTIME (UTC)', 'FROM', 'PATH'], ...rows]), ...warn].join('\n');
}

/** One line per archive of each container: container, what it is, where it lands, its size. */
export function setListingText(l: SetListing): string {
  const rows = l.containers.flatMap((c) => c.sources.map((s) => [c.name, s.label, formatBytes(s.size), s.path]));
  if (rows.length === 0) return `Snapshot ${l.snapshot} has no containers.`;
  return columns([['CONTAINER', 'FROM', 'SIZE', 'PATH'], ...rows]);
}

const MARK = { added: '+', changed: '~', removed: '-' } as const;

/**
 * Per container and archive a heading with its counts, then one line per change: `+ PATH`,
 * `~ PATH (size, content)`, `- PATH`. Containers and archives in one set only are one line each.
 */
export function diffText(d: SetDiff): string {
  const lines = [`Snapshot ${d.from} -> ${d.to}:`];
  for (const c of d.containers) {
    if (c.status !== 'compared') {
      lines.push(`${c.name}: container ${c.status} (only in ${c.status === 'added' ? d.to : d.from})`);
      continue;
    }
    for (const s of c.sources) {
      const where = s.path === '/' ? s.label : `${s.label} at ${s.path}`;
      if (s.status !== 'changed') {
        lines.push(`${c.name} ${where}: ${s.status}`);
        continue;
      }
      const count = (k: keyof typeof MARK) => s.changes.filter((x) => x.change === k).length;
      lines.push(`${c.name} ${where}: ${count('added')} added, ${count('changed')} changed, ${count('removed')} removed`);
      for (const x of s.changes) lines.push(`  ${MARK[x.change]} ${x.path}${x.fields ? ` (${x.fields.join(', ')})` : ''}`);
    }
  }
  return lines.join('\n');
}
