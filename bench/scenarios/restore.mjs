// Restores: docker load + create + docker cp of the volume + start, against container-snapshot
// restore from dir: and from artifact:. Each removes the fixture's container and volume first.
import { readdirSync } from 'node:fs';
import { inRun, storedBytes } from '../lib/artifacts.mjs';
import { checkRestored, removeContainerAndVolume, sizeOf } from '../lib/fixture.mjs';
import { combine, measure, rounds } from '../lib/measure.mjs';
import { CLI, q, sh, shQuiet } from '../lib/process.mjs';
import { COMPRESSORS } from './backup.mjs';

/** docker load (+ create, volume fill, start), from the files the docker backups saved. */
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

function csRestoreArtifact(ctx) {
  return async () => {
    removeContainerAndVolume(ctx);
    const r = await measure(ctx, inRun(ctx, ctx.artifactRun, `node ${q(CLI)} restore --source artifact:bench --snapshot cold`));
    checkRestored(ctx, 'container-snapshot restore from artifacts');
    if (readdirSync(ctx.runnerTemp).length > 0) throw new Error(`restore left files in RUNNER_TEMP: ${readdirSync(ctx.runnerTemp).join(', ')}`);
    removeContainerAndVolume(ctx);
    shQuiet(`docker rmi container-snapshot/${ctx.container}:cold`);
    return { cold: { ...r, bytes: storedBytes(ctx, ctx.artifactRun) } };
  };
}

/** Every restore variant, in rounds: { docker: { raw, zstd } (rows layer, all), cs, csArt (cold) }. Run after the backups. */
export async function runRestores(ctx) {
  const r = await rounds(ctx.opts.runs, {
    zstd: dockerRestore(ctx, 'zstd'),
    cs: csRestore(ctx),
    csArt: csRestoreArtifact(ctx),
    raw: dockerRestore(ctx, 'raw'),
  });
  return { docker: { raw: r.raw, zstd: r.zstd }, cs: r.cs, csArt: r.csArt };
}
