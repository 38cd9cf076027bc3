// What the bench prints (stdout) and writes as JSON.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { PAYLOAD_ROOTS } from './fixture.mjs';
import { POLL_MS, RSS_METHOD } from './measure.mjs';
import { MB, ROOT, q, sh, shQuiet } from './process.mjs';
import { GZIP, ZSTD } from '../scenarios/backup.mjs';

const fmt = (n, d = 1) => n.toFixed(d);
const fmtMB = (bytes) => fmt(bytes / MB, bytes > 0 && bytes < MB ? 3 : 1);
const ratio = (a, b) => (b > 0 ? `x${fmt(a / b, 2)}` : '-');

/** The 1-minute load average. */
export const loadAverage = () => readFileSync('/proc/loadavg', 'utf8').split(' ')[0];

function printRows(head, body, left) {
  const widths = head.map((_, c) => Math.max(...[head, ...body].map((row) => row[c].length)));
  for (const row of [head, ...body]) {
    console.log(
      '  ' +
        row
          .map((cell, c) => (left(c, row.length) ? cell.padEnd(widths[c]) : cell.padStart(widths[c])))
          .join('  ')
          .trimEnd(),
    );
  }
}

/** A table of variants: rows { name, part, r: { seconds, bytes, rssKB, engineKB }, vs?: a row to compare with }. */
export function table(title, sizeHeader, rows) {
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
  printRows(head, body, (c, n) => c <= 1 || c === n - 1);
}

/** The goals' table (goals.mjs evaluate()). */
export function printGoals(goals) {
  console.log('\nGoals of issue 12 (ratio = container-snapshot / the other; medians)');
  const value = (g) => (g.value === null ? '-' : g.unit === 'x' ? `x${fmt(g.value, 2)}` : `${fmt(g.value, g.unit === 's' ? 2 : 1)} ${g.unit}`);
  const verdict = (g) => (g.met === null ? 'not measured' : g.met ? 'met' : 'not met');
  printRows(
    ['id', 'measure', 'goal', 'measured', 'verdict', ''],
    goals.map((g) => [g.id, g.measure, g.goal, value(g), verdict(g), g.detail]),
    (c) => c !== 3,
  );
}

/** The machine, engine, payload and methods of this run: printed, and kept in the JSON. */
export function facts(ctx) {
  return {
    machine: `nproc ${availableParallelism()}, ${cpus()[0]?.model ?? '?'}, ${fmt(totalmem() / 1024 ** 3)} GiB RAM`,
    engine: sh(`docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})'`).trim(),
    storageDriver: sh(`docker info --format '{{.Driver}}'`).trim(),
    node: process.version,
    dist: shQuiet(`git -C ${q(ROOT)} log -1 --format='%h %cs' -- dist`).trim() || '?',
    distModified: shQuiet(`git -C ${q(ROOT)} status --porcelain -- dist`).trim() !== '',
    payload: {
      baseBytes: ctx.payload.base.bytes,
      baseFiles: ctx.payload.base.files.length,
      layerBytes: ctx.payload.layer.bytes,
      layerFiles: ctx.payload.layer.files.length,
      sizeRw: ctx.sizeRw,
      volumeBytes: ctx.payload.volume.bytes,
      volumeFiles: ctx.payload.volume.files.length,
    },
    runs: ctx.opts.runs,
    quick: ctx.opts.quick,
    loadStart: ctx.loadStart,
  };
}

export function printFacts(ctx, f) {
  const p = f.payload;
  console.log('container-snapshot benchmark — docker CLI vs node dist/cli.js, side by side in one run');
  console.log(`  machine   ${f.machine}`);
  console.log(
    `  engine    Docker ${f.engine}, storage driver ${f.storageDriver}; node ${f.node}; dist ${f.dist}${f.distModified ? ' (dist/ modified locally)' : ''}`,
  );
  console.log(
    `  payload   base image +${fmt(p.baseBytes / MB)} MB in ${p.baseFiles} files, layer ${fmt(p.layerBytes / MB)} MB in ${p.layerFiles} files (SizeRw ${fmt(p.sizeRw / MB)} MB), ` +
      `volume ${fmt(p.volumeBytes / MB)} MB in ${p.volumeFiles} files; from ${PAYLOAD_ROOTS.join(' + ')}`,
  );
  console.log(`  runs      ${f.runs} per variant${f.runs > 1 ? ' (order reversed every other round; median time and size, largest peaks)' : ''}`);
  console.log(`  peak RSS  ${RSS_METHOD}`);
  console.log(
    `  engine    ${ctx.dockerd ? `peak growth of the summed PSS of dockerd (pid ${ctx.dockerd}) and its children (containerd, docker-tar/untar) during the step, polled every ${POLL_MS} ms` : 'dockerd not visible from here: column is 0'}`,
  );
  console.log(`  levels    docker side: ${ZSTD} (multi-threaded) / ${GZIP}; container-snapshot: zstd 3 / gzip 1 in-process`);
}

/** The backup and restore tables, and B4's registry table when it ran. */
export function printTables({ backup, restore, registry }) {
  const row = (name, part, r, vs) => ({ name, part, r, vs });
  if (backup) backupTable(backup, row);
  if (restore) restoreTable(restore, row);
  if (registry) registryTable(registry, row);
}

function backupTable(backup, row) {
  const d = backup.docker;
  const dz = row('docker commit+save | zstd', '+volume', d.zstd.all);
  const dg = row('docker commit+save | gzip', '+volume', d.gzip.all);
  table('Backup (wall clock; ratios = container-snapshot / docker CLI)', 'MB written', [
    row('docker commit+save -o', 'layer', d.raw.layer),
    row('docker commit+save -o', '+volume', d.raw.all),
    row('docker commit+save | zstd', 'layer', d.zstd.layer),
    dz,
    row('docker commit+save | gzip', 'layer', d.gzip.layer),
    dg,
    row('container-snapshot zstd', 'cold', backup.cs.cold, dz),
    row('container-snapshot zstd', 'warm', backup.cs.warm, dz),
    row('container-snapshot gzip', 'cold', backup.csGz.cold, dg),
    row('container-snapshot zstd', 'artifacts', backup.csArt.cold, dz),
  ]);
}

function restoreTable(restore, row) {
  const dr = restore.docker;
  const rr = row('docker load -i', '+volume', dr.raw.all);
  const rz = row('zstd -dc | docker load', '+volume', dr.zstd.all);
  table('Restore (container and volume removed first)', 'MB read', [
    row('docker load -i', 'layer', dr.raw.layer),
    rr,
    row('zstd -dc | docker load', 'layer', dr.zstd.layer),
    rz,
    row('container-snapshot restore', 'zstd set', restore.cs.cold, rz),
    row('container-snapshot restore', 'zstd set', restore.cs.cold, rr),
    row('container-snapshot restore', 'artifacts', restore.csArt.cold, rz),
  ]);
}

function registryTable(registry, row) {
  const dFull = row('docker commit+push', 'full', registry.docker.full);
  const dChange = row('docker commit+push', 'change', registry.docker.change);
  table('Backup to a registry (B4; local docker-registry on loopback, no volume on the docker side)', 'MB pushed', [
    dFull,
    dChange,
    row('container-snapshot registry:', 'full', registry.ours.full, dFull),
    row('container-snapshot registry:', 'change', registry.ours.change, dChange),
  ]);
}

export function printNotes(ctx, loadEnd) {
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
  - Registry rows (B4): both sides push the fixture as it is ("full"), then B2's change is made and each
    pushes it ("change"). "MB pushed" is the growth of the registry's storage (du -sb); the docker side
    commits the whole writable layer again as one new layer and pushes no volume.
  - B5 is the largest peak RSS of container-snapshot's steps here; the issue's 2 GiB layer is run with --mb 2048.
  - MB = 2^20 bytes. Load average (1 min) at start ${ctx.loadStart}, at end ${loadEnd}: others may share the machine.`);
}

/** Writes the whole result as JSON to `path` (directories made), and says where. */
export function writeJson(path, result) {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`\nresult as JSON: ${path}`);
}
