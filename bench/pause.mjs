// B6b and B8 of issue 12, for bench/run.mjs: how long a backup keeps its container paused
// against `docker commit -p` alone, and many small containers in one run against one run each.
// Reports medians and ratios; asserts nothing.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

const MB = 1024 * 1024;

/** The paused time a backup's log reports (`<name>: paused for N ms`), in seconds. */
function pausedSeconds(ctx) {
  const m = /paused for (\d+) ms/.exec(readFileSync(join(ctx.tmp, 'step.log'), 'utf8'));
  if (!m) throw new Error('the backup reported no pause');
  return Number(m[1]) / 1000;
}

/** B6b: the fixture container's full backup (a fresh directory each round), paused window vs `docker commit -p`. */
async function pauseVsCommit(ctx, h) {
  const r = await h.rounds(ctx.opts.runs, {
    commit: async (i) => {
      const img = `${ctx.prefix}-b6b:run${i}`;
      const step = await h.measure(ctx, `docker commit -p ${ctx.container} ${img} >/dev/null`);
      h.sh(`docker rmi ${img}`);
      return { paused: { ...step, bytes: 0 } };
    },
    cs: async (i) => {
      const step = await h.measure(ctx, h.csBackupCmd(ctx, join(ctx.tmp, `b6b-${i}`), 'b6b'));
      return { paused: { ...step, seconds: pausedSeconds(ctx), bytes: 0 } };
    },
  });
  return { ours: r.cs.paused.seconds, theirs: r.commit.paused.seconds };
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

/** B8: `count` containers of ~`mb` MB each (a volume), one backup run of all against one run each (summed). */
async function manyContainers(ctx, h, count, mb) {
  const payload = smallPayload(ctx, mb);
  const names = [];
  for (let i = 0; i < count; i++) {
    const name = `${ctx.prefix}-b8-${String(i).padStart(2, '0')}`;
    h.sh(`docker run -d --name ${name} -v ${name}:/data ${ctx.image} sleep 2147483647 >/dev/null`);
    h.sh(`tar -C ${h.q(payload)} -cf - . | docker cp - ${name}:/data`);
    names.push(name);
  }
  const r = await h.rounds(ctx.opts.runs, {
    one: async (i) => ({ all: { ...(await h.measure(ctx, `node ${h.q(h.CLI)} backup --containers '${ctx.prefix}-b8-*' --destination dir:${join(ctx.tmp, `b8-one-${i}`)} --tag one`)), bytes: 0 } }),
    each: async (i) => {
      const steps = [];
      for (const name of names) steps.push(await h.measure(ctx, `node ${h.q(h.CLI)} backup --containers ${name} --destination dir:${join(ctx.tmp, `b8-each-${i}`)} --tag ${name.slice(-2)}`));
      return { all: { ...h.combine(steps), bytes: 0 } };
    },
  });
  return { ours: r.one.all.seconds, theirs: r.each.all.seconds };
}

/**
 * Runs B6b and B8; returns their medians and `print` for the table. `h`: run.mjs's helpers
 * (measure, rounds, combine, sh, q, csBackupCmd, CLI). With --quick, B8's containers hold 2 MB, not 20.
 */
export async function pauseAndParallel(ctx, h) {
  const b6b = await pauseVsCommit(ctx, h);
  const b8 = await manyContainers(ctx, h, 20, ctx.opts.quick ? 2 : 20);
  const row = (id, what, r, goal) => `  ${id.padEnd(4)} ${what.padEnd(56)} ${r.ours.toFixed(2).padStart(7)} s ${r.theirs.toFixed(2).padStart(7)} s  x${(r.ours / r.theirs).toFixed(2)}  (goal ${goal})`;
  const print = () => {
    console.log('\nPause and parallel containers (medians; ratio = container-snapshot / the other)');
    console.log(row('B6b', 'paused window of a full backup vs docker commit -p alone', b6b, '<= x1.2'));
    console.log(row('B8', '20 small containers in one run vs 20 single runs', b8, '<= x0.5'));
  };
  return { b6b, b8, print };
}
