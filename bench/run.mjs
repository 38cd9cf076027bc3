#!/usr/bin/env node
// Benchmark: container-snapshot (node dist/cli.js) against the docker CLI, side by side, in one run.
// It prints seconds, bytes on disk and peak memory with ratios; it never asserts a speed.
//
//   node bench/run.mjs [--quick] [--mb 300] [--volume-mb 100] [--runs 1]
//   env: BENCH_MB, BENCH_VOLUME_MB, BENCH_RUNS (flags win)
//
// Everything it makes (containers, volumes, images, temp dirs) carries a random prefix and is
// removed at the end, also on failure or Ctrl-C.
import { spawn, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync, lstatSync, mkdtempSync, openSync, closeSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pauseAndParallel } from './pause.mjs';
import { sparseVolume } from './sparse.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'dist/cli.js');
const MB = 1024 * 1024;
const PAYLOAD_ROOTS = ['/usr/lib/x86_64-linux-gnu', '/usr/share'];
const GNU_TIME = '/usr/bin/time';
const POLL_MS = 100;
// Same levels container-snapshot uses (src/snapshot/blobs.ts), so sizes compare like for like.
const ZSTD = 'zstd -q -T0 -3';
const GZIP = 'gzip -1';

// ---------------------------------------------------------------- options

function parseOptions(argv) {
  const opts = {
    layerMB: Number(process.env.BENCH_MB ?? 300),
    volumeMB: Number(process.env.BENCH_VOLUME_MB ?? 100),
    runs: Number(process.env.BENCH_RUNS ?? 1),
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') Object.assign(opts, { layerMB: 30, volumeMB: 10, quick: true });
    else if (a === '--mb') opts.layerMB = Number(argv[++i]);
    else if (a === '--volume-mb') opts.volumeMB = Number(argv[++i]);
    else if (a === '--runs') opts.runs = Number(argv[++i]);
    else if (a === '--help' || a === '-h') {
      console.log('usage: node bench/run.mjs [--quick] [--mb N] [--volume-mb N] [--runs N]   (env: BENCH_MB, BENCH_VOLUME_MB, BENCH_RUNS)');
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  for (const k of ['layerMB', 'volumeMB', 'runs']) {
    if (!(opts[k] > 0)) throw new Error(`${k} must be a positive number, got ${opts[k]}`);
  }
  return opts;
}

// ---------------------------------------------------------------- processes

/** A command as the progress lines show it: temp paths shortened, token values (even the local artifact service's) hidden. */
function shown(cmd, ctx) {
  return cmd
    .replaceAll(ctx.tmp, '$TMP')
    .replaceAll(CLI, 'dist/cli.js')
    .replace(/\b([A-Z_]*TOKEN)='[^']*'/g, "$1='***'");
}

const q = (s) => `'${String(s).replaceAll("'", `'\\''`)}'`;

/** Runs a shell command, untimed; returns stdout. */
function sh(cmd) {
  try {
    return execFileSync('sh', ['-c', cmd], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * MB });
  } catch (err) {
    throw new Error(`${cmd}\n${err.stderr || err.message}`);
  }
}

/** Best-effort variant for cleanup. */
function shQuiet(cmd) {
  try {
    return sh(cmd);
  } catch {
    return '';
  }
}

function vmKB(pid, field) {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

function descendants(pid) {
  const kids = [];
  try {
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      kids.push(...readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').split(' ').filter(Boolean).map(Number));
    }
  } catch {
    return [];
  }
  return kids.concat(kids.flatMap(descendants));
}

// The engine does the export/import work for the docker CLI (in dockerd and in the
// docker-tar/docker-untar helpers it spawns), so that tree's memory is watched too.
function findDockerd() {
  const comm = (p) => {
    try {
      return readFileSync(`/proc/${p}/comm`, 'utf8').trim();
    } catch {
      return '';
    }
  };
  const pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p) && comm(p) === 'dockerd');
  return pids.length === 1 ? Number(pids[0]) : null;
}

// PSS, not RSS: the docker-tar/untar helpers are re-executed dockerd binaries whose pages
// are shared with dockerd; summing RSS would count them twice.
function pssKB(pid) {
  try {
    return Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

function engineKB(dockerd) {
  if (!dockerd) return 0;
  return [dockerd, ...descendants(dockerd)].reduce((sum, p) => sum + pssKB(p), 0);
}

// BENCH_NO_GNU_TIME=1 forces the polling fallback (to check it).
const HAVE_GNU_TIME = existsSync(GNU_TIME) && !process.env.BENCH_NO_GNU_TIME;
const RSS_METHOD = HAVE_GNU_TIME
  ? `${GNU_TIME} -f %M: max RSS of the largest process of the step (sh, docker, zstd or node)`
  : `polling /proc/<pid>/status VmHWM of the step's process tree every ${POLL_MS} ms (no /usr/bin/time)`;

/**
 * Runs one shell command, timed: wall seconds, peak RSS (KB) of its process tree and the peak
 * growth of the engine's PSS (KB) while it ran. Output goes to a log that is shown on failure.
 */
function measure(ctx, cmd) {
  const log = join(ctx.tmp, 'step.log');
  const rssFile = join(ctx.tmp, 'step.rss');
  // Flush earlier steps' dirty pages first, so no step pays for another's writeback.
  execFileSync('sync');
  const fd = openSync(log, 'w');
  const argv = HAVE_GNU_TIME ? [GNU_TIME, '-f', '%M', '-o', rssFile, 'sh', '-c', cmd] : ['sh', '-c', cmd];
  const engineStart = engineKB(ctx.dockerd);
  let enginePeak = engineStart;
  let treePeak = 0;
  const start = process.hrtime.bigint();
  const child = spawn(argv[0], argv.slice(1), { cwd: ROOT, stdio: ['ignore', fd, fd], detached: true });
  ctx.running = child;
  const poll = setInterval(() => {
    if (ctx.dockerd) enginePeak = Math.max(enginePeak, engineKB(ctx.dockerd));
    if (!HAVE_GNU_TIME) for (const p of [child.pid, ...descendants(child.pid)]) treePeak = Math.max(treePeak, vmKB(p, 'VmHWM'));
  }, POLL_MS);
  return new Promise((resolvePromise, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      ctx.running = null;
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      clearInterval(poll);
      closeSync(fd);
      if (code !== 0) {
        const tail = readFileSync(log, 'utf8').split('\n').slice(-25).join('\n');
        return reject(new Error(`step failed (exit ${code}): ${cmd}\n${tail}`));
      }
      const rssKB = HAVE_GNU_TIME ? Number(readFileSync(rssFile, 'utf8').trim().split('\n').pop()) : treePeak;
      progress(`   ${seconds.toFixed(2).padStart(6)} s ${(rssKB / 1024).toFixed(0).padStart(4)} MB  ${shown(cmd, ctx)}`);
      resolvePromise({ seconds, rssKB, engineKB: Math.max(0, enginePeak - engineStart) });
    });
  });
}

/** Several steps run one after the other count as one: summed time, the largest peaks. */
function combine(steps) {
  return {
    seconds: steps.reduce((s, x) => s + x.seconds, 0),
    rssKB: Math.max(...steps.map((x) => x.rssKB)),
    engineKB: Math.max(...steps.map((x) => x.engineKB)),
  };
}

// ---------------------------------------------------------------- sizes and payload

function sizeOf(path) {
  const st = lstatSync(path, { throwIfNoEntry: false });
  if (!st) return 0;
  if (!st.isDirectory()) return st.size;
  return readdirSync(path).reduce((sum, name) => sum + sizeOf(join(path, name)), 0);
}

// Hard links are taken once (the dri drivers are one 25 MB file under 13 names): tar and the
// layer store them once, so they would inflate the payload without adding bytes.
function listFiles(dir, out = [], seen = new Set()) {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1));
  } catch {
    return out;
  }
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.isDirectory()) listFiles(path, out, seen);
    else if (e.isFile()) {
      try {
        accessSync(path, constants.R_OK);
        const st = statSync(path);
        const inode = `${st.dev}:${st.ino}`;
        if (!seen.has(inode)) out.push({ path, size: st.size });
        seen.add(inode);
      } catch {
        // unreadable: skip
      }
    }
  }
  return out;
}

/**
 * Real files from the host (shared libraries and /usr/share: binaries, text, already
 * compressed docs), mixed by bytes so the payload compresses like a real container's.
 * The layer takes the first files, the volume the next ones: no content shared.
 */
function pickPayload(layerBytes, volumeBytes) {
  const seen = new Set();
  const sources = PAYLOAD_ROOTS.map((r) => ({ files: listFiles(r, [], seen), next: 0, taken: 0 }));
  const take = (budget) => {
    const picked = { files: [], bytes: 0 };
    while (picked.bytes < budget) {
      const open = sources.filter((s) => s.next < s.files.length);
      if (open.length === 0) throw new Error(`not enough files under ${PAYLOAD_ROOTS.join(', ')} for the payload`);
      const src = open.reduce((a, b) => (b.taken < a.taken ? b : a));
      const f = src.files[src.next++];
      // A 100 MB library would blow a 30 MB budget: files that overshoot by > 1 MB are skipped.
      if (f.size > budget - picked.bytes + MB) continue;
      src.taken += f.size;
      picked.files.push(f.path);
      picked.bytes += f.size;
    }
    return picked;
  };
  return { layer: take(layerBytes), volume: take(volumeBytes) };
}

function tarList(ctx, name, files) {
  const list = join(ctx.tmp, `${name}.list`);
  writeFileSync(list, files.map((f) => f.slice(1)).join('\n') + '\n');
  return list;
}

// ---------------------------------------------------------------- fixture

async function makeFixture(ctx, opts) {
  ctx.image = sh(`${q(join(ROOT, 'scripts/demo-image.sh'))} ${q(`${ctx.prefix}-base:busybox`)}`).trim();
  ctx.container = `${ctx.prefix}-app`;
  ctx.volume = `${ctx.prefix}-data`;
  ctx.containerId = sh(`docker run -d --name ${ctx.container} -v ${ctx.volume}:/data ${ctx.image} sleep 2147483647`).trim();

  const payload = pickPayload(opts.layerMB * MB, opts.volumeMB * MB);
  // Paths in the tar are relative to /: the layer's land in /usr, the volume's in /data/usr.
  sh(`tar -C / -cf - -T ${tarList(ctx, 'layer', payload.layer.files)} | docker cp - ${ctx.container}:/`);
  sh(`tar -C / -cf - -T ${tarList(ctx, 'volume', payload.volume.files)} | docker cp - ${ctx.container}:/data`);

  // Untimed: a container's first commit runs markedly faster than the later ones here, which
  // would favour whichever variant happens to go first.
  sh(`docker commit ${ctx.container} ${ctx.prefix}-warmup:commit >/dev/null && docker rmi ${ctx.prefix}-warmup:commit`);

  ctx.payload = payload;
  ctx.sizeRw = Number(sh(`docker inspect --size -f '{{.SizeRw}}' ${ctx.container}`).trim());
  ctx.counts = contentCounts(ctx);
}

// File counts in the layer and the volume: a restore that misses data is caught, not timed.
function contentCounts(ctx) {
  const count = (dir) => Number(sh(`docker exec ${ctx.container} sh -c 'ls -laR ${dir} | wc -l'`).trim());
  return { layer: count('/usr'), volume: count('/data') };
}

function checkRestored(ctx, what) {
  const got = contentCounts(ctx);
  if (got.layer !== ctx.counts.layer || got.volume !== ctx.counts.volume) {
    throw new Error(`${what}: restored ${JSON.stringify(got)} entries, expected ${JSON.stringify(ctx.counts)}`);
  }
}

function removeContainerAndVolume(ctx) {
  shQuiet(`docker rm -f ${ctx.container}`);
  shQuiet(`docker volume rm ${ctx.volume}`);
}

const lines = (cmd) => shQuiet(cmd).split('\n').filter(Boolean);

/** Images named with our prefix, and untagged commits of our container (a backup's, interrupted). */
function removeOurImages(ctx) {
  let removed = 0;
  for (const ref of lines(`docker images --format '{{.Repository}}:{{.Tag}}'`).filter((r) => r.includes(ctx.prefix))) {
    removed += shQuiet(`docker rmi -f ${q(ref)}`) ? 1 : 0;
  }
  for (const img of lines('docker images -q --no-trunc -f dangling=true')) {
    if (ctx.containerId && shQuiet(`docker image inspect -f '{{.Container}}' ${img}`).trim() === ctx.containerId) {
      removed += shQuiet(`docker rmi ${img}`) ? 1 : 0;
    }
  }
  return removed;
}

function cleanup(ctx) {
  if (ctx.cleaned) return;
  ctx.cleaned = true;
  // The running step first: it is a process group of its own (spawned detached).
  const interrupted = ctx.running;
  if (interrupted) {
    try {
      process.kill(-interrupted.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const c of lines(`docker ps -aq --filter name=^${ctx.prefix}-`)) shQuiet(`docker rm -f ${c}`);
  for (const v of lines(`docker volume ls -q --filter name=^${ctx.prefix}-`)) shQuiet(`docker volume rm ${v}`);
  removeOurImages(ctx);
  // A commit the killed step asked for finishes in the engine regardless; wait for it a while.
  if (interrupted) {
    console.error('waiting up to 20 s for an interrupted commit to land, to remove it');
    for (let i = 0; i < 20 && removeOurImages(ctx) === 0; i++) execFileSync('sleep', ['1']);
  }
  rmSync(ctx.tmp, { recursive: true, force: true });
}

// ---------------------------------------------------------------- scenarios

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/**
 * Runs every variant once per round, in reverse order on odd rounds so that no variant
 * always goes first or last (the machine is shared and drifts). Keeps, per variant and row,
 * the median time and size and the largest peaks.
 */
async function rounds(runs, variants) {
  const samples = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
  for (let i = 0; i < runs; i++) {
    const order = Object.keys(variants);
    if (i % 2 === 1) order.reverse();
    for (const key of order) samples[key].push(await variants[key](i));
  }
  const summary = (rows) => ({
    seconds: median(rows.map((r) => r.seconds)),
    bytes: median(rows.map((r) => r.bytes)),
    rssKB: Math.max(...rows.map((r) => r.rssKB)),
    engineKB: Math.max(...rows.map((r) => r.engineKB)),
  });
  return Object.fromEntries(
    Object.entries(samples).map(([key, runsOf]) => [key, Object.fromEntries(Object.keys(runsOf[0]).map((row) => [row, summary(runsOf.map((s) => s[row]))]))]),
  );
}

const COMPRESSORS = { raw: null, zstd: ZSTD, gzip: GZIP };
const EXT = { raw: '', zstd: '.zst', gzip: '.gz' };

/** docker commit + docker save (+ docker cp of the volume), one compression. */
function dockerBackup(ctx, comp) {
  return async (i) => {
    const img = `${ctx.prefix}-commit-${comp}:run${i}`;
    const layerFile = join(ctx.tmp, `layer-${comp}-${i}.tar${EXT[comp]}`);
    const volFile = join(ctx.tmp, `volume-${comp}-${i}.tar${EXT[comp]}`);
    const z = COMPRESSORS[comp];
    const commit = await measure(ctx, `docker commit ${ctx.container} ${img} >/dev/null`);
    const save = await measure(ctx, z ? `docker save ${img} | ${z} > ${layerFile}` : `docker save -o ${layerFile} ${img}`);
    const vol = await measure(ctx, `docker cp ${ctx.container}:/data - ${z ? `| ${z}` : ''} > ${volFile}`);
    sh(`docker rmi ${img}`);
    if (i === 0) ctx.saved[comp] = { img, layerFile, volFile };
    const layerBytes = sizeOf(layerFile);
    return {
      layer: { ...combine([commit, save]), bytes: layerBytes },
      all: { ...combine([commit, save, vol]), bytes: layerBytes + sizeOf(volFile) },
    };
  };
}

function csBackupCmd(ctx, dir, tag, extra = '') {
  return `node ${q(CLI)} backup --containers ${ctx.container} --destination dir:${dir} --tag ${tag} ${extra}`;
}

/** container-snapshot to a fresh directory, then again into the same one (warm: all reused). */
function csBackupColdWarm(ctx) {
  return async (i) => {
    const dir = join(ctx.tmp, `cs-zstd-${i}`);
    const cold = await measure(ctx, csBackupCmd(ctx, dir, 'cold'));
    const coldBytes = sizeOf(dir);
    const warm = await measure(ctx, csBackupCmd(ctx, dir, 'warm'));
    if (i === 0) ctx.csDir = dir;
    return { cold: { ...cold, bytes: coldBytes }, warm: { ...warm, bytes: sizeOf(dir) - coldBytes } };
  };
}

/**
 * The local stand-in for GitHub's artifact service the tests use (test/support/artifact-service.ts),
 * transpiled here, so @actions/artifact runs its real upload and download code over loopback.
 */
async function startArtifacts(ctx) {
  const ts = (await import('typescript')).default;
  const source = readFileSync(join(ROOT, 'test/support/artifact-service.ts'), 'utf8');
  const { outputText } = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } });
  const file = join(ctx.tmp, 'artifact-service.mjs');
  writeFileSync(file, outputText);
  ctx.artifacts = await (await import(file)).startArtifactService();
  ctx.runnerTemp = mkdtempSync(join(ctx.tmp, 'runner-temp-'));
}

/** Runs the CLI as a step of workflow run `runId` would: the runner's artifact variables set. */
function inRun(ctx, runId, cmd) {
  const vars = { ...ctx.artifacts.env({ runId, repository: 'bench/bench' }), RUNNER_TEMP: ctx.runnerTemp };
  return `env ${Object.entries(vars).map(([k, v]) => `${k}=${q(v)}`).join(' ')} ${cmd}`;
}

/** container-snapshot to workflow artifacts (a blob per artifact, streamed through a pipe). */
function csBackupArtifact(ctx) {
  return async (i) => {
    const runId = 9000 + i;
    const r = await measure(ctx, inRun(ctx, runId, `node ${q(CLI)} backup --containers ${ctx.container} --destination artifact:bench --tag cold`));
    if (i === 0) ctx.artifactRun = runId;
    const bytes = ctx.artifacts.artifacts().filter((a) => a.runId === runId && a.finalized).reduce((n, a) => n + a.size, 0);
    return { cold: { ...r, bytes } };
  };
}

function csRestoreArtifact(ctx) {
  return async () => {
    removeContainerAndVolume(ctx);
    const r = await measure(ctx, inRun(ctx, ctx.artifactRun, `node ${q(CLI)} restore --source artifact:bench --snapshot cold`));
    checkRestored(ctx, 'container-snapshot restore from artifacts');
    if (readdirSync(ctx.runnerTemp).length > 0) throw new Error(`restore left files in RUNNER_TEMP: ${readdirSync(ctx.runnerTemp).join(', ')}`);
    removeContainerAndVolume(ctx);
    shQuiet(`docker rmi container-snapshot/${ctx.container}:cold`);
    const bytes = ctx.artifacts.artifacts().filter((a) => a.runId === ctx.artifactRun && a.finalized).reduce((n, a) => n + a.size, 0);
    return { cold: { ...r, bytes } };
  };
}

function csBackupGzip(ctx) {
  return async (i) => {
    const dir = join(ctx.tmp, `cs-gzip-${i}`);
    const r = await measure(ctx, csBackupCmd(ctx, dir, 'cold', '--compression gzip'));
    return { cold: { ...r, bytes: sizeOf(dir) } };
  };
}

/** docker load (+ create, volume fill, start), from the files dockerBackup saved. */
function dockerRestore(ctx, comp) {
  const { img, layerFile, volFile } = ctx.saved[comp];
  const z = COMPRESSORS[comp];
  return async () => {
    removeContainerAndVolume(ctx);
    const load = await measure(ctx, z ? `zstd -dc ${layerFile} | docker load >/dev/null` : `docker load -i ${layerFile} >/dev/null`);
    const create = await measure(ctx, `docker create --name ${ctx.container} -v ${ctx.volume}:/data ${img} >/dev/null`);
    const fill = await measure(ctx, z ? `zstd -dc ${volFile} | docker cp - ${ctx.container}:/` : `docker cp - ${ctx.container}:/ < ${volFile}`);
    const start = await measure(ctx, `docker start ${ctx.container} >/dev/null`);
    checkRestored(ctx, `docker restore (${comp})`);
    removeContainerAndVolume(ctx);
    sh(`docker rmi ${img}`);
    const layerBytes = sizeOf(layerFile);
    return {
      layer: { ...load, bytes: layerBytes },
      all: { ...combine([load, create, fill, start]), bytes: layerBytes + sizeOf(volFile) },
    };
  };
}

function csRestore(ctx) {
  return async () => {
    removeContainerAndVolume(ctx);
    const r = await measure(ctx, `node ${q(CLI)} restore --source dir:${ctx.csDir} --snapshot cold`);
    checkRestored(ctx, 'container-snapshot restore');
    removeContainerAndVolume(ctx);
    shQuiet(`docker rmi container-snapshot/${ctx.container}:cold`);
    return { cold: { ...r, bytes: sizeOf(ctx.csDir) } };
  };
}

// ---------------------------------------------------------------- output

const fmt = (n, d = 1) => n.toFixed(d);
const fmtMB = (bytes) => fmt(bytes / MB, bytes > 0 && bytes < MB ? 3 : 1);
const ratio = (a, b) => (b > 0 ? `x${fmt(a / b, 2)}` : '-');

function table(title, sizeHeader, rows) {
  console.log(`\n${title}`);
  const head = ['', '', 'seconds', sizeHeader, 'peak RSS MB', 'engine +MB', 'time', 'size', 'RSS', 'ratios vs'];
  const body = rows.map(({ name, part, r, vs }) => [
    name,
    part,
    fmt(r.seconds, 2),
    fmtMB(r.bytes),
    fmt(r.rssKB / 1024),
    fmt(r.engineKB / 1024),
    vs ? ratio(r.seconds, vs.r.seconds) : '',
    vs ? ratio(r.bytes, vs.r.bytes) : '',
    vs ? ratio(r.rssKB, vs.r.rssKB) : '',
    vs ? `${vs.name} ${vs.part}` : '',
  ]);
  const widths = head.map((_, c) => Math.max(...[head, ...body].map((row) => row[c].length)));
  for (const row of [head, ...body]) {
    console.log('  ' + row.map((cell, c) => (c <= 1 || c === row.length - 1 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ').trimEnd());
  }
}

const loadAverage = () => readFileSync('/proc/loadavg', 'utf8').split(' ')[0];

function printFacts(ctx, opts) {
  const engine = sh(`docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})'`).trim();
  const driver = sh(`docker info --format '{{.Driver}}'`).trim();
  const dist = shQuiet(`git -C ${q(ROOT)} log -1 --format='%h %cs' -- dist`).trim();
  const distDirty = shQuiet(`git -C ${q(ROOT)} status --porcelain -- dist`).trim() ? ' (dist/ modified locally)' : '';
  console.log('container-snapshot benchmark — docker CLI vs node dist/cli.js, side by side in one run');
  console.log(`  machine   nproc ${availableParallelism()}, ${cpus()[0]?.model ?? '?'}, ${fmt(totalmem() / 1024 ** 3)} GiB RAM`);
  console.log(`  engine    Docker ${engine}, storage driver ${driver}; node ${process.version}; dist ${dist || '?'}${distDirty}`);
  console.log(`  payload   layer ${fmt(ctx.payload.layer.bytes / MB)} MB in ${ctx.payload.layer.files.length} files (SizeRw ${fmt(ctx.sizeRw / MB)} MB), ` +
    `volume ${fmt(ctx.payload.volume.bytes / MB)} MB in ${ctx.payload.volume.files.length} files; from ${PAYLOAD_ROOTS.join(' + ')}`);
  console.log(`  runs      ${opts.runs} per variant${opts.runs > 1 ? ' (order reversed every other round; median time and size, largest peaks)' : ''}`);
  console.log(`  peak RSS  ${RSS_METHOD}`);
  console.log(`  engine    ${ctx.dockerd ? `peak growth of the summed PSS of dockerd (pid ${ctx.dockerd}) and its children (containerd, docker-tar/untar) during the step, polled every ${POLL_MS} ms` : 'dockerd not visible from here: column is 0'}`);
  console.log(`  levels    docker side: ${ZSTD} (multi-threaded) / ${GZIP}; container-snapshot: zstd 3 / gzip 1 in-process`);
}

function printNotes(ctx) {
  console.log(`
Notes
  - docker commit+save keeps only the writable layer (and the base image); "+volume" adds a docker cp of
    the volume's archive, which is what a container-snapshot set also holds (plus the container's config).
  - "MB written" is the resulting file(s) or directory; for warm it is what the second backup added.
  - container-snapshot fsyncs every blob; docker save -o and the shell redirections do not (an untimed
    sync runs before every step, so no step pays for an earlier one's writeback).
  - One untimed docker commit runs before the first variant: a container's first commit is faster than
    the next ones on this engine. Every variant, container-snapshot included, commits the container.
  - Restore rows: the volume-less "docker load" has no container; "+volume" also creates the container,
    fills the volume with docker cp and starts it, as container-snapshot restore does.
  - "artifacts" rows: the same backup and restore through @actions/artifact against the tests' local stand-in
    for GitHub's artifact service on loopback (its own memory is not counted; "MB written" is what it stored).
    A restore downloads one blob at a time into RUNNER_TEMP; the bench checks that nothing is left there.
  - MB = 2^20 bytes. Load average (1 min) at start ${ctx.loadStart}, at end ${loadAverage()}: others may share the machine.`);
}

// ---------------------------------------------------------------- main

async function main() {
  const opts = parseOptions(process.argv.slice(2));
  if (!existsSync(CLI)) throw new Error(`${CLI} not found: run npm run build`);
  const ctx = {
    opts,
    prefix: `csbench-${randomBytes(3).toString('hex')}`,
    tmp: mkdtempSync(join(tmpdir(), 'csbench-')),
    dockerd: findDockerd(),
    saved: {},
    loadStart: loadAverage(),
  };
  // Cleanup is synchronous, so it also runs from 'exit': after signals, uncaught errors, EPIPE.
  process.on('exit', () => cleanup(ctx));
  const onSignal = (sig) => {
    console.error(`\n${sig}: cleaning up`);
    process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.stdout.on('error', () => process.exit(1));
  try {
    await makeFixture(ctx, opts);
    await startArtifacts(ctx);
    printFacts(ctx, opts);
    progress('backup');
    // Matching pairs run back to back, so drift on a shared machine hits both alike.
    const b = await rounds(opts.runs, {
      dZstd: dockerBackup(ctx, 'zstd'),
      cs: csBackupColdWarm(ctx),
      dGzip: dockerBackup(ctx, 'gzip'),
      csGz: csBackupGzip(ctx),
      csArt: csBackupArtifact(ctx),
      dRaw: dockerBackup(ctx, 'raw'),
    });
    const d = { raw: b.dRaw, zstd: b.dZstd, gzip: b.dGzip };
    const [cs, csGz, csArt] = [b.cs, b.csGz, b.csArt];
    // Before the restores, which remove the fixture container.
    progress('pause and parallel containers');
    const pauses = await pauseAndParallel(ctx, { measure, rounds, combine, sh, q, csBackupCmd, CLI });
    progress('sparse volume');
    const sparse = await sparseVolume(ctx);
    progress('restore');
    const r = await rounds(opts.runs, { zstd: dockerRestore(ctx, 'zstd'), cs: csRestore(ctx), csArt: csRestoreArtifact(ctx), raw: dockerRestore(ctx, 'raw') });
    const dr = { raw: r.raw, zstd: r.zstd };
    const cr = r.cs;

    const row = (name, part, r, vs) => ({ name, part, r, vs });
    const dz = row('docker commit+save | zstd', '+volume', d.zstd.all);
    const dg = row('docker commit+save | gzip', '+volume', d.gzip.all);
    table('Backup (wall clock; ratios = container-snapshot / docker CLI)', 'MB written', [
      row('docker commit+save -o', 'layer', d.raw.layer),
      row('docker commit+save -o', '+volume', d.raw.all),
      row('docker commit+save | zstd', 'layer', d.zstd.layer),
      dz,
      row('docker commit+save | gzip', 'layer', d.gzip.layer),
      dg,
      row('container-snapshot zstd', 'cold', cs.cold, dz),
      row('container-snapshot zstd', 'warm', cs.warm, dz),
      row('container-snapshot gzip', 'cold', csGz.cold, dg),
      row('container-snapshot zstd', 'artifacts', csArt.cold, dz),
    ]);
    const rr = row('docker load -i', '+volume', dr.raw.all);
    const rz = row('zstd -dc | docker load', '+volume', dr.zstd.all);
    table('Restore (container and volume removed first)', 'MB read', [
      row('docker load -i', 'layer', dr.raw.layer),
      rr,
      row('zstd -dc | docker load', 'layer', dr.zstd.layer),
      rz,
      row('container-snapshot restore', 'zstd set', cr.cold, rz),
      row('container-snapshot restore', 'zstd set', cr.cold, rr),
      row('container-snapshot restore', 'artifacts', r.csArt.cold, rz),
    ]);
    pauses.print();
    sparse.print();
    printNotes(ctx);
  } finally {
    await ctx.artifacts?.stop();
    cleanup(ctx);
  }
}

function progress(msg) {
  process.stderr.write(`.. ${msg}\n`);
}

main().catch((err) => {
  console.error(`bench failed: ${err.stack || err.message}`);
  process.exit(1);
});
