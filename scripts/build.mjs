#!/usr/bin/env node
// Builds the committed bundles with ncc (ESM, not minified, no source maps, with a
// licenses file), each started by a small loader (scripts/loader.mjs) at the entry's path:
//
//   src/backup/index.ts  → dist/backup/index.js (loader) → dist/backup/bundle.js
//                          (+ package.json, licenses.txt, assets in dist/backup/)
//   src/restore/index.ts → dist/restore/index.js (loader) → dist/restore/bundle.js (+ the same)
//   src/cli.ts           → dist/cli.js (loader) → dist/cli/bundle.js (+ licenses.txt and
//                          assets in dist/cli/; the {"type":"module"} in dist/package.json)
//   src/destinations/artifact/sdk-entry.ts → dist/artifact/bundle.js (+ its licenses.txt):
//                          @actions/artifact, a library bundle the three above import only
//                          when an artifact: destination is used (artifact/sdk.ts says why)
//   node_modules/ssh2      → dist/ssh2/bundle.cjs (+ dist/ssh2/index.cjs, scripts/ssh2-lazy.cjs):
//                          the entry bundles' `require('ssh2')` (docker-modem's, ssh-agent.ts's)
//                          gets index.cjs, which reads the package on the first SSH connection
//                          only (~20 MB less peak RSS for every run not on an ssh:// engine)
//   scripts/buildkit-absent.cjs → dist/<entry>/buildkit-absent.cjs: what the entry bundles'
//                          `require('@grpc/grpc-js')`, `require('@grpc/proto-loader')` and
//                          `require('protobufjs')` get (dockerode's BuildKit support, never
//                          used; any use throws): each entry bundle ~1.2 MB smaller, ~5.9 MB
//                          less peak RSS and ~0.15 s less start-up for every run
//
// Usage (run it with Node 24: `npm run build` puts node_modules/.bin first on PATH):
//   node scripts/build.mjs                  rebuild all of dist/ (stale files disappear)
//   node scripts/build.mjs backup cli       rebuild only the named bundles
//   node scripts/build.mjs ENTRY.ts=OUT.js  build any entry (e.g. a scratch file): its loader
//                                            at OUT.js under dist/ or .tmp/, the bundle and
//                                            side files in OUT/ (or beside an OUT index.js)
//   BUILD_ONLY="backup cli" node scripts/build.mjs   same as naming bundles
//
// Everything is first written to .tmp/ncc-out/ and moved into place only when every
// bundle built, so a failed build leaves dist/ as it was.
//
// Output is deterministic (CI rebuilds and diffs dist/): no ncc cache, no absolute
// paths in the output (checked), files written in sorted order with modes 644/755.
//
// Why it is done this way:
// - Type checking: ncc's ts-loader type-checks every file of the tsconfig.json it finds
//   next to the entry — the whole project, tests included — and its transpile-only mode
//   compiles `module: NodeNext` sources to CommonJS, which breaks the ESM-only @actions
//   packages and top-level await. So each entry is compiled through a generated stub in
//   .tmp/ncc/<name>/ whose tsconfig extends the project's but lists only the stub: the
//   type check covers exactly the code that goes into the bundle.
// - Native addons: ssh2 (under dockerode) optionally loads `sshcrypto.node` and
//   `cpu-features`, both compiled by node-gyp during `npm ci` — for whichever Node ran
//   the install, and only when a compiler is there. Bundling them would make dist/
//   depend on the machine that built it. They stay plain runtime requires, which fail
//   inside ssh2's own try/catch, so ssh2 uses its pure-JS code (as on a machine where
//   the addons did not build).
// - Bundles are pure ASCII (scripts/ascii.mjs: escapes, same behaviour): Node keeps a
//   module's source in memory, and V8 holds a non-ASCII one as UTF-16, 9 MB more per process.
// - The loader: Node's compile cache (scripts/loader.mjs says where it is kept) spares every
//   run but the first the compilation of the 9 MB bundle. Measured here (Node 24, 2 busy cores,
//   `node dist/cli.js --version`, CPU user+system by hyperfine, peak RSS by /usr/bin/time): the
//   bundle started directly 0.29 s, 101 MB; through the loader, first run (writes the cache)
//   0.33 s, 103 MB; every later run 0.17 s, 87 MB. (A backup's peak RSS is set later, by its
//   data path: B8's stayed where it was, the parser's freed memory being reused there.)
// - A bundle lives in the directory of its side files, so ncc's asset base
//   (`__nccwpck_require__.ab`, "the bundle's directory") is where they are. Every asset path
//   the bundle uses is checked to exist.
import { createRequire } from 'node:module';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { asciiOnly } from './ascii.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
process.chdir(root); // ncc resolves assets, tsconfig and module ids relative to the cwd

const require = createRequire(import.meta.url);
const ncc = require('@vercel/ncc');

const BUNDLES = {
  backup: { entry: 'src/backup/index.ts', out: 'dist/backup/index.js' },
  restore: { entry: 'src/restore/index.ts', out: 'dist/restore/index.js' },
  cli: { entry: 'src/cli.ts', out: 'dist/cli.js' },
  // A library bundle (no loader; its entry's exports kept): imported by the others on first use
  // (src/destinations/artifact/sdk.ts), so that they leave out what it holds.
  artifact: { entry: 'src/destinations/artifact/sdk-entry.ts', out: 'dist/artifact/bundle.js', library: true },
};

// Requests left to Node at run time, unchanged (see above). ncc reads a key written as
// /…/ as a RegExp and substitutes $1 in its value.
const EXTERNALS = { 'cpu-features': 'cpu-features', '/^(.+\\.node)$/': '$1' };

// The entry bundles' `require('ssh2')` gets scripts/ssh2-lazy.cjs (which reads the package on
// first use) from the side library <dir>/ssh2/ beside their own <dir>/<name>/: built with them.
const SSH2 = { entry: 'node_modules/ssh2/lib/index.js', shim: 'scripts/ssh2-lazy.cjs' };
// Their `require('@grpc/grpc-js')`, `require('@grpc/proto-loader')` and `require('protobufjs')`
// (dockerode's BuildKit support, never used) get scripts/buildkit-absent.cjs, written beside each
// entry bundle.
const BUILDKIT_ABSENT = { file: 'buildkit-absent.cjs', source: 'scripts/buildkit-absent.cjs' };
const ENTRY_EXTERNALS = {
  ...EXTERNALS,
  ssh2: '../ssh2/index.cjs',
  '@grpc/grpc-js': `./${BUILDKIT_ABSENT.file}`,
  '@grpc/proto-loader': `./${BUILDKIT_ABSENT.file}`,
  protobufjs: `./${BUILDKIT_ABSENT.file}`,
};

const STAGING = '.tmp/ncc'; // generated stub entries
const OUT_ROOT = '.tmp/ncc-out'; // outputs, before they are moved into place

function fail(message) {
  console.error(`build: ${message}`);
  rmSync(OUT_ROOT, { recursive: true, force: true }); // dist/ itself is left as it was
  try {
    rmdirSync(STAGING);
  } catch {
    /* absent or not empty */
  }
  process.exit(1);
}

function toPosix(p) {
  return p.split(sep).join('/');
}

function parseTargets(args) {
  const fromEnv = (process.env.BUILD_ONLY ?? '').split(/[\s,]+/).filter(Boolean);
  const wanted = [...args, ...fromEnv];
  if (wanted.length === 0) {
    return { full: true, targets: Object.entries(BUNDLES).map(([name, b]) => ({ name, ...b })) };
  }
  const targets = wanted.map((arg) => {
    if (Object.hasOwn(BUNDLES, arg)) return { name: arg, ...BUNDLES[arg] };
    const m = /^(.+\.[cm]?[tj]sx?)=(.+\.[cm]?js)$/.exec(arg);
    if (!m) fail(`unknown bundle "${arg}" (known: ${Object.keys(BUNDLES).join(', ')}, or ENTRY.ts=OUT.js)`);
    const entry = toPosix(relative(root, resolve(m[1])));
    const out = toPosix(relative(root, resolve(m[2])));
    // Its side-file directory gets replaced: keep custom outputs inside dist/ or .tmp/.
    if (!/^(dist|\.tmp)\/./.test(out) || out.startsWith(`${OUT_ROOT}/`) || out.startsWith(`${STAGING}/`)) {
      fail(`output ${out} must be under dist/ or .tmp/ (not ${STAGING}/ or ${OUT_ROOT}/)`);
    }
    return { name: entry.replace(/[^A-Za-z0-9]+/g, '_'), entry, out };
  });
  return { full: false, targets };
}

/** Where a bundle and its side files go: beside an index.js or a library's bundle.js, else in OUT/ (dist/cli.js → dist/cli/). */
function assetDirOf(out, library = false) {
  return library || out === 'index.js' || out.endsWith('/index.js') ? dirname(out) : out.replace(/\.[cm]?js$/, '');
}

const LOADER = readFileSync(join(root, 'scripts/loader.mjs'), 'utf8');
const LOADER_IMPORT = "await import('./bundle.js');";

/** The loader written at `out`, importing `bundle` (both relative to the repo); a bundle's shebang moves to it. */
function loaderFor(out, bundle, shebang) {
  if (LOADER.split(LOADER_IMPORT).length !== 2) fail(`scripts/loader.mjs must end with exactly one ${LOADER_IMPORT}`);
  const spec = `./${toPosix(relative(dirname(out), bundle))}`;
  return `${shebang ? `${shebang}\n` : ''}${LOADER.replace(LOADER_IMPORT, `await import(${JSON.stringify(spec).replaceAll('"', "'")});`)}`;
}

/** Writes a stub entry + tsconfig so that ncc type-checks only what the bundle contains. */
function stage(target) {
  const dir = join(STAGING, target.name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const spec = toPosix(relative(dir, target.entry)).replace(/\.([cm]?)tsx?$/, '.$1js');
  // ncc keeps the shebang of its entry file only (and then the bundle is made executable).
  const shebang = /^#![^\r\n]*/.exec(readFileSync(target.entry, 'utf8'))?.[0];
  // A library's stub passes its entry's exports on; an entry bundle's only runs its entry.
  writeFileSync(join(dir, 'entry.ts'), `${shebang ? `${shebang}\n` : ''}${target.library ? `export * from '${spec}'` : `import '${spec}'`};\n`);
  const tsconfig = {
    extends: toPosix(relative(dir, 'tsconfig.json')),
    // ncc hands these options to ts-loader as they are: relative to this file.
    compilerOptions: { rootDir: toPosix(relative(dir, '.')) },
    include: [],
    files: ['entry.ts'],
  };
  writeFileSync(join(dir, 'tsconfig.json'), `${JSON.stringify(tsconfig, null, 2)}\n`);
  return resolve(dir, 'entry.ts');
}

function writeOut(rel, content, mode) {
  const path = join(OUT_ROOT, rel);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, content);
  chmodSync(path, mode);
}

/** Builds one bundle into OUT_ROOT; returns the paths (relative to the repo) it wrote. */
async function build(target) {
  const started = Date.now();
  // The ssh2 side library is the package's own CommonJS, bundled as it is (nothing of ours to type-check).
  const stub = target.commonjs ? resolve(target.entry) : stage(target);
  let result;
  let error;
  try {
    result = await ncc(stub, {
      minify: false,
      sourceMap: false,
      sourceMapRegister: false,
      license: 'licenses.txt',
      cache: false,
      quiet: true,
      transpileOnly: false,
      externals: target.library ? EXTERNALS : ENTRY_EXTERNALS,
    });
  } catch (err) {
    error = err;
  }
  rmSync(join(STAGING, target.name), { recursive: true, force: true });
  // ncc's error carries the compiler's messages; never let Node dump ncc's own source.
  if (error) fail(`${target.entry}: ncc failed:\n${error?.message ?? String(error)}`);
  const { assets, symlinks = {} } = result;
  let code = result.code;

  const out = target.out;
  const outDir = dirname(out);
  const assetDir = assetDirOf(out, target.library);
  const bundle = join(assetDir, target.commonjs ? 'bundle.cjs' : 'bundle.js');

  const shebang = /^#![^\r\n]*\r?\n/.exec(code)?.[0];
  if (shebang) code = code.slice(shebang.length);
  code = asciiOnly(code, bundle);
  const written = [bundle];
  if (target.shim) {
    writeOut(join(assetDir, 'index.cjs'), readFileSync(target.shim, 'utf8'), 0o644);
    written.push(join(assetDir, 'index.cjs'));
  }
  if (!target.library) {
    writeOut(out, asciiOnly(loaderFor(out, bundle, shebang?.trimEnd()), out), shebang ? 0o755 : 0o644);
    written.unshift(out);
    writeOut(join(assetDir, BUILDKIT_ABSENT.file), readFileSync(BUILDKIT_ABSENT.source, 'utf8'), 0o644);
    written.push(join(assetDir, BUILDKIT_ABSENT.file));
  }
  writeOut(bundle, code, 0o644);
  for (const name of Object.keys(assets).sort()) {
    const asset = assets[name];
    // ncc's {"type":"module"} marker belongs beside the loader (it covers the bundle too).
    const rel = name === 'package.json' ? join(outDir, name) : join(assetDir, name);
    if (written.includes(rel)) fail(`${out}: ncc's asset ${name} would overwrite ${rel}`);
    writeOut(rel, asset.source, (asset.permissions ?? 0o644) & 0o111 ? 0o755 : 0o644);
    written.push(rel);
  }
  for (const name of Object.keys(symlinks).sort()) {
    const rel = join(assetDir, name);
    mkdirSync(dirname(join(OUT_ROOT, rel)), { recursive: true });
    symlinkSync(symlinks[name], join(OUT_ROOT, rel));
    written.push(rel);
  }

  // Self-checks: every asset the bundle refers to is where the bundle will look for it,
  // and nothing machine-specific leaked into the code.
  const missing = new Set();
  for (const m of code.matchAll(/__nccwpck_require__\.ab \+ "([^"]+)"/g)) {
    if (!existsSync(join(OUT_ROOT, assetDir, m[1]))) missing.add(m[1]);
  }
  if (missing.size) fail(`${out}: the bundle refers to missing assets: ${[...missing].join(', ')}`);
  for (const leak of [join(root, 'node_modules'), join(root, 'src'), join(root, '.tmp')]) {
    if (code.includes(leak)) fail(`${out}: the bundle contains the absolute path ${leak}: it would not be reproducible`);
  }

  const kib = (Buffer.byteLength(code) / 1024).toFixed(0);
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  const sides = written.length - (target.library ? 1 : 2);
  console.log(`build: ${target.entry} → ${target.library ? bundle : `${out} → ${bundle}`} (${kib} KiB + ${sides} side files, ${secs} s)`);
  return written;
}

/** Moves a file from OUT_ROOT to its place in the repo. */
function place(rel) {
  mkdirSync(dirname(rel), { recursive: true });
  renameSync(join(OUT_ROOT, rel), rel);
}

function countFiles(dir) {
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((d) => !d.isDirectory()).length;
}

const { full, targets } = parseTargets(process.argv.slice(2));
if (Number(process.versions.node.split('.')[0]) < 24) {
  console.warn(`build: warning: Node ${process.version}; the bundles target Node 24 (npm run build uses it)`);
}
// Every entry bundle's side library ssh2 (ENTRY_EXTERNALS), once per directory: dist/ssh2/ for all of dist/.
for (const dir of new Set(targets.filter((t) => !t.library).map((t) => dirname(assetDirOf(t.out))))) {
  targets.push({ name: `ssh2_${dir.replace(/[^A-Za-z0-9]+/g, '_')}`, out: join(dir, 'ssh2', 'bundle.cjs'), library: true, commonjs: true, ...SSH2 });
}
const absent = targets.filter((t) => !existsSync(t.entry)).map((t) => t.entry);
if (absent.length) fail(`missing entry file(s): ${absent.join(', ')}`);

rmSync(OUT_ROOT, { recursive: true, force: true });
const written = [];
for (const target of targets) written.push(...(await build(target)));

if (full) {
  rmSync('dist', { recursive: true, force: true });
  renameSync(join(OUT_ROOT, 'dist'), 'dist');
} else {
  for (const target of targets) {
    rmSync(target.out, { force: true });
    rmSync(assetDirOf(target.out, target.library), { recursive: true, force: true });
  }
  for (const rel of written) place(rel);
}
rmSync(OUT_ROOT, { recursive: true, force: true });
try {
  rmdirSync(STAGING); // only if empty
} catch {
  /* absent or not empty */
}
if (full) console.log(`build: dist/ rebuilt (${countFiles('dist')} files)`);
