// Every entry file of dist/ (dist/cli.js, dist/backup/index.js, dist/restore/index.js) is this
// file: scripts/build.mjs copies it with the specifier of the last line replaced by the path of
// the entry's ncc bundle, relative to the entry (./cli/bundle.js; ./bundle.js as it stands).
//
// Why: compiling the 4-5 MB bundle is most of a run's fixed cost. Node's compile cache
// (module.enableCompileCache, Node >= 22.1) keeps V8's code cache of the bundle on disk, so a
// later run loads compiled code instead of parsing the whole bundle again: faster, and the
// parser's memory is never taken (see scripts/build.mjs for the figures).
//
// Where: a directory of this user's own, container-snapshot-compile-cache-<uid>, in the OS
// temporary directory (TMPDIR). Not under RUNNER_TEMP: a run leaves nothing there, and a
// self-hosted runner keeps the cache warm from one job to the next. A shared /tmp is writable
// by everyone, so a directory that is not ours, is a symbolic link, or that others may write is
// not used (V8 would run what such a cache holds). Any failure only means no cache: the bundle
// starts all the same. NODE_COMPILE_CACHE (a directory of the user's choice) and
// NODE_DISABLE_COMPILE_CACHE (set to anything) are Node's own switches and win.
//
// node:module is imported whole: a Node without enableCompileCache (before 22.1) then starts the
// bundle without a cache, and the bundle refuses a Node older than it runs on in one clear line,
// instead of this file failing to link with a SyntaxError.
import * as nodeModule from 'node:module';
// The bundle is built for Node 24 (zlib's zstd among others): an older Node would fail while the
// bundle loads, with an error that says nothing of the cause. Refused here, in one line, exit 2.
const NODE_MAJOR = Number(process.versions.node.split('.')[0]);
if (NODE_MAJOR < 24) {
  console.error(`error: Node ${process.versions.node} is too old. Expected Node 24 or later: after npm ci, run node_modules/.bin/node dist/cli.js.`);
  process.exit(2);
}
import { lstatSync, mkdirSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';

function cacheDir() {
  const uid = process.getuid?.();
  const dir = join(tmpdir(), `container-snapshot-compile-cache-${uid ?? userInfo().username}`);
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch {
    // there already, or cannot be made: lstat tells
  }
  const st = lstatSync(dir, { throwIfNoEntry: false });
  if (!st?.isDirectory() || (uid !== undefined && st.uid !== uid) || (st.mode & 0o022) !== 0) return undefined;
  return dir;
}

try {
  if (process.env.NODE_DISABLE_COMPILE_CACHE === undefined && nodeModule.enableCompileCache && !nodeModule.getCompileCacheDir()) {
    const dir = cacheDir();
    if (dir) nodeModule.enableCompileCache(dir);
  }
} catch {
  // no cache, same run
}

await import('./bundle.js');
