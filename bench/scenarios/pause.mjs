// B6b and B8 of issue 12: how long a backup keeps its container paused against `docker commit -p`
// alone, and many small containers in one run against one run each. Medians; asserts nothing.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { combine, measure, rounds } from '../lib/measure.mjs';
import { CLI, MB, csBackupCmd, q, sh } from '../lib/process.mjs';

/** The paused time a backup's log reports (`<name>: paused for N ms`), in seconds. */
export function pausedSeconds(ctx) {
  const m = /paused for (\d+) ms/.exec(readFileSync(join(ctx.tmp, 'step.log'), 'utf8'));
  if (!m) throw new Error('the backup reported no pause');
  return Number(m[1]) / 1000;
}

/** B6b: the fixture container's full backup (a fresh directory each round), paused window vs `docker commit -p`. */
async function pauseVsCommit(ctx) {
  const r = await rounds(ctx.opts.runs, {
    commit: async (i) => {
      const img = `${ctx.prefix}-b6b:run${i}`;
      const step = await measure(ctx, `docker commit -p ${ctx.container} ${img} >/dev/null`);
      sh(`docker rmi ${img}`);
      return { paused: { ...step, bytes: 0 } };
    },
    cs: async (i) => {
      const step = await measure(ctx, csBackupCmd(ctx, join(ctx.tmp, `b6b-${i}`), 'b6b'));
      return { paused: { ...step, seconds: pausedSeconds(ctx), bytes: 0 } };
    },
  });
  return { ours: r.cs.paused.seconds, theirs: r.commit.paused.seconds, rssKB: r.cs.paused.rssKB };
}

/** Files for one small container's volume: half random, half text, `mb` MB in all. */
function smallPayload(ctx, mb) {
  const dir = join(ctx.tmp, 'b8-payload');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'random'), randomBytes((mb * MB) / 2));
  const line = 'the quick brown fox jumps over the lazy dog 0123456789\n';
  writeFileSync(join(dir, 'text'), line.repeat(Math.ceil((mb * MB) / 2 / line.length)));
  return dir;
}

/** Makes `count` running containers of ~`mb` MB each (a volume), named `<prefix>-b8-NN`; returns their names. */
export function makeSmallContainers(ctx, count, mb) {
  const payload = smallPayload(ctx, mb);
  const names = [];
  for (let i = 0; i < count; i++) {
    const name = `${ctx.prefix}-b8-${String(i).padStart(2, '0')}`;
    sh(`docker run -d --name ${name} -v ${name}:/data ${ctx.image} sleep 2147483647 >/dev/null`);
    sh(`tar -C ${q(payload)} -cf - . | docker cp - ${name}:/data`);
    names.push(name);
  }
  return names;
}

/** B8's timed step: one backup run of every `<prefix>-b8-*` container into a fresh directory (round `i`). */
export function backupAllInOneRun(ctx, i) {
  return measure(ctx, `node ${q(CLI)} backup --containers '${ctx.prefix}-b8-*' --destination dir:${join(ctx.tmp, `b8-one-${i}`)} --tag one`);
}

/** B8: `count` containers of ~`mb` MB each (a volume), one backup run of all against one run each (summed). */
async function manyContainers(ctx, count, mb) {
  const names = makeSmallContainers(ctx, count, mb);
  const r = await rounds(ctx.opts.runs, {
    one: async (i) => ({ all: { ...(await backupAllInOneRun(ctx, i)), bytes: 0 } }),
    each: async (i) => {
      const steps = [];
      for (const name of names)
        steps.push(await measure(ctx, `node ${q(CLI)} backup --containers ${name} --destination dir:${join(ctx.tmp, `b8-each-${i}`)} --tag ${name.slice(-2)}`));
      return { all: { ...combine(steps), bytes: 0 } };
    },
  });
  return { ours: r.one.all.seconds, theirs: r.each.all.seconds, count, mb, rssKB: r.one.all.rssKB };
}

/**
 * B6b and B8 (ctx.opts.b8 says how many containers of how many MB). Needs the fixture container,
 * so it runs before the restores. Returns { b6b, b8 }, each { ours, theirs } in seconds and our peak RSS.
 */
export async function runPauseAndParallel(ctx) {
  const b6b = await pauseVsCommit(ctx);
  const b8 = await manyContainers(ctx, ctx.opts.b8.count, ctx.opts.b8.mb);
  return { b6b, b8 };
}
