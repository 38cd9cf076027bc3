// Backups: docker commit + save (+ the volume) in three compressions, container-snapshot to dir:
// (cold, then warm into the same directory), with gzip, and to artifact:.
import { join } from 'node:path';
import { inRun, storedBytes } from '../lib/artifacts.mjs';
import { sizeOf } from '../lib/fixture.mjs';
import { combine, measure, rounds } from '../lib/measure.mjs';
import { CLI, csBackupCmd, q, sh } from '../lib/process.mjs';

// Same levels container-snapshot uses (src/snapshot/blobs.ts), so sizes compare like for like.
export const ZSTD = 'zstd -q -T0 -3';
export const GZIP = 'gzip -1';
export const COMPRESSORS = { raw: null, zstd: ZSTD, gzip: GZIP };
const EXT = { raw: '', zstd: '.zst', gzip: '.gz' };

/** docker commit + docker save (+ docker cp of the volume), one compression; round 0's files are kept in ctx.saved for the restores. */
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

/** container-snapshot to workflow artifacts (a blob per artifact). */
function csBackupArtifact(ctx) {
  return async (i) => {
    const runId = 9000 + i;
    const r = await measure(ctx, inRun(ctx, runId, `node ${q(CLI)} backup --containers ${ctx.container} --destination artifact:bench --tag cold`));
    if (i === 0) ctx.artifactRun = runId;
    return { cold: { ...r, bytes: storedBytes(ctx, runId) } };
  };
}

function csBackupGzip(ctx) {
  return async (i) => {
    const dir = join(ctx.tmp, `cs-gzip-${i}`);
    const r = await measure(ctx, csBackupCmd(ctx, dir, 'cold', '--compression gzip'));
    return { cold: { ...r, bytes: sizeOf(dir) } };
  };
}

/**
 * Every backup variant, in rounds. Matching pairs run back to back, so drift on a shared machine
 * hits both alike. Returns { docker: { raw, zstd, gzip } (rows layer, all), cs (cold, warm), csGz, csArt (cold) }.
 */
export async function runBackups(ctx) {
  const b = await rounds(ctx.opts.runs, {
    dZstd: dockerBackup(ctx, 'zstd'),
    cs: csBackupColdWarm(ctx),
    dGzip: dockerBackup(ctx, 'gzip'),
    csGz: csBackupGzip(ctx),
    csArt: csBackupArtifact(ctx),
    dRaw: dockerBackup(ctx, 'raw'),
  });
  return { docker: { raw: b.dRaw, zstd: b.dZstd, gzip: b.dGzip }, cs: b.cs, csGz: b.csGz, csArt: b.csArt };
}
