import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import tar from 'tar-stream';

/**
 * A layer tar's entries, one line each: name, type, mode bits, owner, size, link target, mtime
 * (seconds; none for an opaque marker), content digest, `security.capability` (a PAX record).
 */
export async function layerEntries(layer: Readable): Promise<string[]> {
  const extract = tar.extract();
  layer.pipe(extract);
  const out: string[] = [];
  for await (const entry of extract) {
    const h = entry.header;
    const hash = createHash('sha256');
    for await (const chunk of entry) hash.update(chunk as Buffer);
    const name = h.name.replace(/\/$/, '');
    const mtime = name.endsWith('.wh..wh..opq') ? '' : Math.floor((h.mtime?.getTime() ?? 0) / 1000);
    const cap = (h.pax as Record<string, string> | undefined)?.['SCHILY.xattr.security.capability'] ?? '';
    out.push([name, h.type, ((h.mode ?? 0) & 0o7777).toString(8), h.uid, h.gid, h.size, h.linkname ?? '', mtime, hash.digest('hex'), cap].join(' '));
  }
  return out;
}
