// Side-effect module: MUST be the first import of every bundle entry
// (src/backup/index.ts, src/restore/index.ts, src/cli.ts).
//
// ncc compiles the entries to ES modules, where the CommonJS free variables
// `__dirname`, `__filename` and `require` do not exist. Some bundled CommonJS code
// still reads them as free variables at load time — notably ssh2 (pulled in by
// dockerode → docker-modem), whose emscripten module reads `__dirname` and crashes
// the bundle with `ReferenceError: __dirname is not defined`. Defining them on
// globalThis, from this module's own URL (i.e. the bundle file's location once
// bundled), makes those lookups succeed. Values already present are left alone.
//
// ES module imports are evaluated in order, so as long as this is the entry's first
// import it runs before any module that needs the globals.
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';

const g = globalThis as Record<string, unknown>;
const filename = fileURLToPath(import.meta.url);

if (typeof g.__filename === 'undefined') g.__filename = filename;
if (typeof g.__dirname === 'undefined') g.__dirname = dirname(filename);
if (typeof g.require === 'undefined') g.require = createRequire(import.meta.url);

// Memory: V8 lets the young generation grow to 64 MB (2 × --scavenger-max-new-space-capacity-mb
// without pointer compression), and streaming blobs keeps it full of short-lived objects. Kept at
// its initial size, a backup peaked 20–35 MB lower here (dir: 121–126 MB instead of 126–155 MB,
// artifact: 146–172 MB instead of 173–199 MB) in about the same time. The factor is read when the
// space would grow, so setting it here, before the bundle's modules load, is early enough.
setFlagsFromString('--semi-space-growth-factor=1');

export {};
