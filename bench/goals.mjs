// The goals of issue 12, one function each: from the run's results to a measured value, or null
// while the scenario that measures it does not exist yet (the row then says "not measured").
// To add a goal's measure: write its scenario under scenarios/, add its results in run.mjs, and
// return { value, detail, met } here.
const MB = 1024 * 1024;
const x = (a, b) => a / b;
const s = (seconds) => `${seconds.toFixed(2)} s`;

/** B1: full backup to dir: vs docker commit + save -o + a tar of the volume; and stored bytes. */
function b1({ backup }) {
  const ours = backup.cs.cold;
  const cli = backup.docker.raw.all;
  const fewer = cli.bytes / ours.bytes;
  const value = x(ours.seconds, cli.seconds);
  return { value, detail: `${s(ours.seconds)} vs ${s(cli.seconds)}; ${fewer.toFixed(2)}x fewer bytes`, met: value <= 0.7 && fewer >= 1.5 };
}

/** B3: restore from dir: vs docker load -i + create + docker cp into the volume + start. */
function b3({ restore }) {
  const ours = restore.cs.cold;
  const cli = restore.docker.raw.all;
  const value = x(ours.seconds, cli.seconds);
  return { value, detail: `${s(ours.seconds)} vs ${s(cli.seconds)}`, met: value <= 0.8 };
}

/** B5: the largest peak RSS of any container-snapshot step of this scenario (the 2 GiB layer is not run). */
function b5({ backup, restore, pause, registry }) {
  const peaks = {
    'backup cold': backup.cs.cold.rssKB,
    'backup warm': backup.cs.warm.rssKB,
    'backup gzip': backup.csGz.cold.rssKB,
    'backup artifact': backup.csArt.cold.rssKB,
    restore: restore.cs.cold.rssKB,
    'restore artifact': restore.csArt.cold.rssKB,
    'B8 one run': pause.b8.rssKB,
    ...(registry ? { 'registry full': registry.ours.full.rssKB, 'registry change': registry.ours.change.rssKB } : {}),
  };
  const [worst, kb] = Object.entries(peaks).reduce((a, b) => (b[1] > a[1] ? b : a));
  const value = (kb * 1024) / MB;
  return { value, unit: 'MB', detail: `largest: ${worst}`, met: value <= 150 };
}

/** B6b: paused window of the full backup vs docker commit -p alone. */
function b6b({ pause }) {
  const value = x(pause.b6b.ours, pause.b6b.theirs);
  return { value, detail: `${s(pause.b6b.ours)} vs ${s(pause.b6b.theirs)}`, met: value <= 1.2 };
}

/** B7: backup to artifact: (the tests' local service) vs to dir:. */
function b7({ backup }) {
  const value = x(backup.csArt.cold.seconds, backup.cs.cold.seconds);
  return { value, detail: `${s(backup.csArt.cold.seconds)} vs ${s(backup.cs.cold.seconds)}`, met: value <= 1.5 };
}

/** B8: N small containers in one run vs the sum of N single runs. */
function b8({ pause }) {
  const value = x(pause.b8.ours, pause.b8.theirs);
  return { value, detail: `${pause.b8.count} x ${pause.b8.mb} MB: ${s(pause.b8.ours)} vs ${s(pause.b8.theirs)}`, met: value <= 0.5 };
}

/** B9: a volume with a sparse file (4 GiB, 4 MB of data; 0.25 GiB with --quick): paused window, and the restored file sparse again. */
function b9({ sparse }) {
  const sparseAgain = sparse.allocated < sparse.apparent / 2;
  const detail = `restored ${(sparse.allocated / MB).toFixed(1)} MB allocated of ${(sparse.apparent / MB).toFixed(0)} MB`;
  return { value: sparse.paused, unit: 's', detail, met: sparse.paused <= 5 && sparseAgain };
}

/** B2: the backup after a new 1 MB file in the layer and 1 MB rewritten in the volume vs the full one before it (same dir:). */
function b2({ incremental }) {
  const { full, file } = incremental;
  const value = x(file.seconds, full.seconds);
  const share = (100 * file.bytes) / full.bytes;
  const detail = `new-file case: ${s(file.seconds)} vs ${s(full.seconds)}; ${(file.bytes / MB).toFixed(2)} MB new = ${share.toFixed(2)} % of ${(full.bytes / MB).toFixed(1)} MB`;
  const rw = incremental.rewrite;
  const also = `; 1 MB rewritten inside a layer file instead: ${s(rw.seconds)}, ${(rw.bytes / MB).toFixed(2)} MB new (the whole file)`;
  return { value, detail: detail + also, met: value <= 0.15 && share <= 2 };
}

/** B6: paused window of that backup vs the full backup's (both from the backup's log). */
function b6({ incremental }) {
  const { full, file } = incremental;
  const value = x(file.paused, full.paused);
  return { value, detail: `${s(file.paused)} vs ${s(full.paused)}`, met: value <= 0.25 };
}

/** B4: B2's change backed up to a registry vs docker commit + docker push of it (bytes: growth of the registry's storage). */
function b4({ registry }) {
  if (!registry) return null;
  const { ours, docker } = registry;
  const o = ours.change;
  const d = docker.change;
  const value = x(o.seconds, d.seconds);
  const mb = (bytes) => `${(bytes / MB).toFixed(2)} MB`;
  const detail =
    `${s(o.seconds)} (paused ${s(o.paused)}) vs ${s(d.seconds)} (commit ${s(d.commit)} + push ${s(d.push)}); ` +
    `pushed ${mb(o.bytes)} vs ${mb(d.bytes)} (the docker side has no volume); ` +
    `the full backups before: ${s(ours.full.seconds)}, ${mb(ours.full.bytes)} vs ${s(docker.full.seconds)}, ${mb(docker.full.bytes)}`;
  return { value, detail, met: value <= 0.3 };
}

/** The goals in the order: id, what is measured, the goal, and its measure. */
export const GOALS = [
  { id: 'B1', needs: ['backup'], measure: 'full backup to dir: vs docker commit + save -o + tar of the volume', goal: '<= 0.7x; >= 1.5x fewer bytes', of: b1 },
  {
    id: 'B2',
    needs: ['incremental'],
    measure: 'next backup after 1 MB changed in the layer and 1 MB in the volume',
    goal: '<= 0.15x of B1; new bytes <= 2 % of B1',
    of: b2,
  },
  { id: 'B3', needs: ['restore'], measure: 'restore from dir: vs docker load + run + untar into the volume', goal: '<= 0.8x', of: b3 },
  { id: 'B4', needs: ['registry'], measure: 'B2 to a registry vs docker commit + push of the same change', goal: '<= 0.3x', of: b4 },
  { id: 'B5', needs: ['backup', 'restore', 'pause'], measure: 'peak RSS of the process (this scenario)', goal: '<= 150 MB', of: b5 },
  { id: 'B6', needs: ['incremental'], measure: 'paused window of B2 vs paused window of B1', goal: '<= 0.25x', of: b6 },
  { id: 'B6b', needs: ['pause'], measure: 'paused window of B1 vs docker commit -p alone', goal: '<= 1.2x', of: b6b },
  { id: 'B7', needs: ['backup'], measure: 'backup to artifact: (local service) vs to dir:', goal: '<= 1.5x', of: b7 },
  { id: 'B8', needs: ['pause'], measure: 'small containers in one run vs the sum of single runs', goal: '<= 0.5x', of: b8 },
  { id: 'B9', needs: ['sparse'], measure: 'a volume with a sparse 4 GiB file (4 MB of data)', goal: 'paused <= 5 s; restored sparse', of: b9 },
];

/**
 * Each goal's row: { id, measure, goal, value (null: not measured), unit ('x', 'MB' or 's'), detail, met }.
 * A goal whose scenarios did not run (`--only`) is not measured.
 */
export function evaluate(results) {
  return GOALS.map(({ id, needs, measure, goal, of }) => {
    const r = needs.every((n) => results[n]) ? of(results) : null;
    return { id, measure, goal, value: r?.value ?? null, unit: r?.unit ?? 'x', detail: r?.detail ?? '', met: r ? r.met : null };
  });
}
