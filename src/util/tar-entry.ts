/**
 * One tar-stream pack entry whose data is given at once (tar-stream `pack.entry(header, buffer,
 * callback)`): the promise settles once the pack took it, or rejects with the error the pack was
 * destroyed with (its reader failed: a full disk, a closed request).
 */
import type tar from 'tar-stream';

/**
 * Adds an entry with `data` (none for a directory, link or device header) to `pack`; resolves once
 * taken. The entry's own 'error' is the pack's error, already given to the promise: it gets a
 * listener, since an uncaught one reaches the process, which a backup takes for a crash (the whole
 * run cancelled).
 */
export function putEntry(pack: tar.Pack, header: tar.Header, data?: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error | null) => (err ? reject(err) : resolve());
    const sink = data ? pack.entry(header, data, done) : pack.entry(header, done);
    sink.on('error', () => undefined);
  });
}
