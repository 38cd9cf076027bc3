/**
 * A volume's root directory as seen on this host and as the engine archived it: the two are compared
 * before a host-side scan is trusted to describe the volume (another host's engine has other files there).
 */
import type { BigIntStats } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { Readable } from 'node:stream';

/** Owner, permission bits (`mode & 0o7777`) and modification time (whole seconds since the epoch) of a volume's root. */
export interface RootStat {
  uid: number;
  gid: number;
  mode: number;
  mtime: number;
}

/** A directory's RootStat from its lstat or fstat (BigInt fields). */
export function rootStatFrom(st: BigIntStats): RootStat {
  return { uid: Number(st.uid), gid: Number(st.gid), mode: Number(st.mode) & 0o7777, mtime: Number(st.mtimeNs / 1_000_000_000n) };
}

/**
 * The root directory's stat from the first header of a tar stream (the engine's archive of the
 * volume), read beside whoever else consumes the stream; undefined when the stream ends first.
 */
export function archiveRoot(archive: Readable): Promise<RootStat | undefined> {
  return new Promise((resolve) => {
    let head = Buffer.alloc(0);
    const octal = (from: number, len: number) =>
      parseInt(
        head
          .subarray(from, from + len)
          .toString('latin1')
          .replace(/\0.*$/s, '')
          .trim() || '0',
        8,
      );
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      if (head.length < 512) return;
      archive.off('data', onData);
      resolve({ mode: octal(100, 8) & 0o7777, uid: octal(108, 8), gid: octal(116, 8), mtime: octal(136, 12) });
    };
    archive.on('data', onData);
    archive.once('close', () => resolve(undefined));
  });
}

/** Whether a directory seen here is the one whose archive the engine sent (owner, mode and time alike); false when the archive had none. */
export function sameRoot(here: RootStat, archived: RootStat | undefined): boolean {
  return archived !== undefined && here.uid === archived.uid && here.gid === archived.gid && here.mode === archived.mode && here.mtime === archived.mtime;
}

/** The stat of a directory here (`root`, a volume's host path), or why it cannot be read (a sentence for a message). Never throws. */
export async function rootStatOf(root: string | undefined): Promise<RootStat | string> {
  if (!root) return 'the engine gives no host path for it';
  try {
    const st = await stat(root);
    if (!st.isDirectory()) return `${root} is not a directory here`;
    return { uid: st.uid, gid: st.gid, mode: st.mode & 0o7777, mtime: Math.floor(st.mtimeMs / 1000) };
  } catch (err) {
    return `${root} is not readable here (${(err as NodeJS.ErrnoException).code ?? String(err)}): an engine on another host, or not run as root`;
  }
}
