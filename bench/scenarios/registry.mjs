// B4 of issue 12: B2's change backed up to a registry, against `docker commit` + `docker push` of
// the same change to the same registry (bench/lib/registry.mjs). Both sides first store the state
// before the change (measured, not part of the ratio), so the base is already there for each;
// then each round makes B2's change (a new 1 MB random file in the layer, 1 MB rewritten in the
// middle of the volume's largest file) and runs both, the order reversed every other round.
// Bytes are the growth of the registry's storage (`du -sb`). Asserts nothing.
import { randomBytes } from 'node:crypto';
import { combine, measure, median } from '../lib/measure.mjs';
import { CLI, MB, q, sh } from '../lib/process.mjs';
import { largest, put, rewriteMiddle } from './incremental.mjs';
import { pausedSeconds } from './pause.mjs';

/** A step's growth of the registry's storage: { ...step, bytes }. */
async function pushed(ctx, run) {
  const before = ctx.registry.storedBytes();
  const step = await run();
  return { ...step, bytes: ctx.registry.storedBytes() - before };
}

/**
 * Needs ctx.registry (startRegistry) and the fixture container; changes the fixture as B2 does,
 * so it runs after the scenarios that need it as built. Leaves nothing: the docker side's local
 * images are removed (the registry goes with ctx.tmp).
 * Returns { ours, docker }: each { full, change } as { seconds, bytes, rssKB, engineKB },
 * ours with paused (s), the docker side's change with commit and push seconds apart; change rows
 * are medians of ctx.opts.runs rounds (largest peaks).
 */
export async function runRegistry(ctx) {
  const { host, dockerConfig } = ctx.registry;
  const env = `DOCKER_CONFIG=${q(dockerConfig)}`;
  const destination = `registry:${host}/${ctx.prefix}/snap`;
  const repo = `${host}/${ctx.prefix}/docker-b4`;
  const tags = [];
  const ours = async (tag) => {
    const step = await pushed(ctx, () => measure(ctx, `${env} node ${q(CLI)} backup --containers ${ctx.container} --destination ${destination} --tag ${tag}`));
    return { ...step, paused: pausedSeconds(ctx) };
  };
  const docker = (tag) =>
    pushed(ctx, async () => {
      tags.push(`${repo}:${tag}`);
      const commit = await measure(ctx, `docker commit ${ctx.container} ${repo}:${tag} >/dev/null`);
      const push = await measure(ctx, `${env} docker push ${repo}:${tag} >/dev/null`);
      return { ...combine([commit, push]), commit: commit.seconds, push: push.seconds };
    });

  const full = { ours: await ours('b4-full'), docker: await docker('full') };
  const volFile = largest(ctx.payload.volume, '/data');
  const samples = { ours: [], docker: [] };
  for (let i = 0; i < ctx.opts.runs; i++) {
    put(ctx, '', `usr/bench-b4-${i}`, randomBytes(MB));
    rewriteMiddle(ctx, volFile);
    const order = i % 2 === 0 ? ['ours', 'docker'] : ['docker', 'ours'];
    for (const side of order) samples[side].push(side === 'ours' ? await ours(`b4-change-${i}`) : await docker(`change-${i}`));
  }
  for (const tag of tags) sh(`docker rmi ${q(tag)} >/dev/null`);
  const summary = (rows) => {
    const out = {
      seconds: median(rows.map((r) => r.seconds)),
      bytes: median(rows.map((r) => r.bytes)),
      rssKB: Math.max(...rows.map((r) => r.rssKB)),
      engineKB: Math.max(...rows.map((r) => r.engineKB)),
    };
    for (const k of ['paused', 'commit', 'push']) if (rows[0][k] !== undefined) out[k] = median(rows.map((r) => r[k]));
    return out;
  };
  return { ours: { full: full.ours, change: summary(samples.ours) }, docker: { full: full.docker, change: summary(samples.docker) } };
}
