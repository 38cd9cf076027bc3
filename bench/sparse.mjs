// B9 of issue 12, for bench/run.mjs or alone (`node bench/sparse.mjs [--quick] [--gib N]`): a
// volume holding one sparse file (4 GiB apparent, 4 MB of data, half at its start, half in its
// middle). Reports the backup's paused window (and whether the hold read the volume on this host or
// through the engine), its wall time and the bytes it stored, the restore's
// wall time, and the restored file's allocated bytes against its size; asserts nothing.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'dist/cli.js');
const GiB = 1024 ** 3;
const MB = 1024 * 1024;

const sh = (cmd) => execFileSync('sh', ['-c', cmd], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const quiet = (cmd) => spawnSync('sh', ['-c', cmd], { stdio: 'ignore' });

/** Runs the CLI; returns its output and wall seconds. Throws with the output's tail when it fails. */
function cli(args) {
  const start = process.hrtime.bigint();
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, encoding: 'utf8' });
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const out = `${r.stdout}${r.stderr}`;
  if (r.status !== 0) throw new Error(`${args[0]} failed (exit ${r.status}):\n${out.split('\n').slice(-15).join('\n')}`);
  return { out, seconds };
}

/**
 * `base` with the host's util-linux fallocate (and the libraries it loads) in /bin, as most
 * distribution images have it: the restore punches the holes back with the image's fallocate.
 * `base` itself when the host has none.
 */
function withFallocate(base, ref) {
  const bin = '/usr/bin/fallocate';
  if (!existsSync(bin)) return base;
  const libs = sh(`ldd ${bin}`).match(/\/\S+/g) ?? [];
  const maker = `${ref.replace(/[:/]/g, '-')}-maker`;
  sh(`docker create --name ${maker} ${base} true >/dev/null`);
  try {
    const files = [bin, ...libs].map((p) => p.slice(1)).join(' ');
    sh(`tar -C / -chf - --transform 's,^usr/bin/,bin/,' ${files} | docker cp - ${maker}:/`);
    sh(`docker commit ${maker} ${ref} >/dev/null`);
  } finally {
    quiet(`docker rm -f ${maker}`);
  }
  return ref;
}

/**
 * B9: one backup and one restore of a container whose volume holds a sparse file of `gib` GiB.
 * `ctx`: prefix (names), tmp (a scratch directory), image (any local image with busybox).
 */
export async function sparseVolume(ctx, gib = ctx.opts?.quick ? 0.25 : 4) {
  const image = withFallocate(ctx.image, `${ctx.prefix}-b9:fallocate`);
  const name = `${ctx.prefix}-b9`;
  const dest = join(ctx.tmp, 'b9-set');
  const apparent = Math.round(gib * GiB);
  const volumeSize = () => sh(`docker run --rm -v ${name}:/data ${image} busybox stat -c '%s %b %B' /data/sparse`).trim().split(' ').map(Number);
  try {
    sh(`docker run -d --name ${name} -v ${name}:/data ${image} sleep 2147483647 >/dev/null`);
    sh(
      `docker exec ${name} sh -c 'busybox dd if=/dev/urandom of=/data/sparse bs=1M count=2 2>/dev/null && busybox dd if=/dev/urandom of=/data/sparse bs=1M count=2 seek=${Math.floor(apparent / 2 / MB)} conv=notrunc 2>/dev/null && busybox truncate -s ${apparent} /data/sparse'`,
    );
    const b = cli(['backup', '--containers', name, '--destination', `dir:${dest}`, '--tag', 'b9']);
    const paused = Number(/paused for (\d+) ms/.exec(b.out)?.[1] ?? NaN) / 1000;
    // How the hold read the volume: on this host from its directory, or through the engine's archive (and why).
    const read = /: read on this host from /.test(b.out) ? 'on this host' : `through the engine (${/: read through the engine: (.*)/.exec(b.out)?.[1] ?? '?'})`;
    const stored = Number(sh(`du -sb ${dest}`).split('\t')[0]);
    quiet(`docker rm -f ${name}`);
    quiet(`docker volume rm ${name}`);
    const r = cli(['restore', '--source', `dir:${dest}`, '--snapshot', 'b9', '--containers', name, '--start', 'never']);
    const [size, blocks, blockSize] = volumeSize();
    const result = { apparent: size, paused, read, backup: b.seconds, stored, restore: r.seconds, allocated: blocks * blockSize };
    return { ...result, print: () => printSparse(result, gib) };
  } finally {
    quiet(`docker rm -f ${name}`);
    quiet(`docker volume rm ${name}`);
    quiet(`docker rmi container-snapshot/${name}:b9`);
    if (image !== ctx.image) quiet(`docker rmi ${image}`);
    rmSync(dest, { recursive: true, force: true });
  }
}

function printSparse(r, gib) {
  const mb = (n) => `${(n / MB).toFixed(1)} MB`;
  console.log(`\nSparse volume (one run): a ${gib} GiB file holding 4 MB of data`);
  console.log(`  B9   paused window of the backup ${r.paused.toFixed(2).padStart(7)} s  (goal <= 5 s); the volume read ${r.read}`);
  console.log(`       backup ${r.backup.toFixed(2)} s, stored ${mb(r.stored)} (whole set); restore ${r.restore.toFixed(2)} s`);
  console.log(`       restored file: ${mb(r.allocated)} allocated of ${mb(r.apparent)} (goal: sparse again)`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const gibAt = args.indexOf('--gib');
  const ctx = { prefix: `csbench-${randomBytes(3).toString('hex')}`, tmp: mkdtempSync(join(tmpdir(), 'csbench-')), opts: { quick } };
  ctx.image = sh(`${join(ROOT, 'scripts/demo-image.sh')} ${ctx.prefix}-base:busybox`).trim();
  try {
    const r = await sparseVolume(ctx, gibAt >= 0 ? Number(args[gibAt + 1]) : undefined);
    r.print();
  } finally {
    quiet(`docker rmi ${ctx.image}`);
    rmSync(ctx.tmp, { recursive: true, force: true });
  }
}
