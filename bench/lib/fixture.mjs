// The scenario on the real engine: a container with a writable layer and a named volume of real
// host files; its checks and its removal (everything carries ctx.prefix).
import { execFileSync } from 'node:child_process';
import { accessSync, constants, lstatSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MB, ROOT, lines, q, sh, shQuiet } from './process.mjs';

export const PAYLOAD_ROOTS = ['/usr/lib/x86_64-linux-gnu', '/usr/share'];

/** Where a payload larger than PAYLOAD_ROOTS hold (B5's 2 GiB layer) takes the rest of its files: the rest of /usr. */
const SPARE_ROOT = '/usr';

/** Bytes under a path (a file's size, a directory's files summed; 0 when absent). */
export function sizeOf(path) {
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
 * The base image takes the first files, the layer the next, then the volume: no content shared.
 */
function pickPayload(baseBytes, layerBytes, volumeBytes) {
  const seen = new Set();
  const sources = PAYLOAD_ROOTS.map((r) => ({ files: listFiles(r, [], seen), next: 0, taken: 0 }));
  const take = (budget) => {
    const picked = { files: [], bytes: 0 };
    while (picked.bytes < budget) {
      let open = sources.filter((s) => s.next < s.files.length);
      if (open.length === 0 && sources.length === PAYLOAD_ROOTS.length) {
        sources.push({ files: listFiles(SPARE_ROOT, [], seen), next: 0, taken: 0 });
        open = sources.slice(-1);
      }
      if (open.length === 0 || open[0].next >= open[0].files.length)
        throw new Error(`not enough files under ${[...PAYLOAD_ROOTS, SPARE_ROOT].join(', ')} for the payload`);
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
  return { base: take(baseBytes), layer: take(layerBytes), volume: take(volumeBytes) };
}

function tarList(ctx, name, files) {
  const list = join(ctx.tmp, `${name}.list`);
  writeFileSync(list, files.map((f) => f.slice(1)).join('\n') + '\n');
  return list;
}

/**
 * Builds the scenario: ctx.image (busybox, ~2 MB: B8's and B9's containers), ctx.baseImage (busybox
 * and a layer of opts.baseMB of host files), ctx.container (+Id) on it with a writable layer of
 * opts.layerMB and ctx.volume of opts.volumeMB; ctx.payload, ctx.sizeRw, ctx.counts.
 */
export async function makeFixture(ctx, opts) {
  ctx.image = sh(`${q(join(ROOT, 'scripts/demo-image.sh'))} ${q(`${ctx.prefix}-base:busybox`)}`).trim();
  ctx.container = `${ctx.prefix}-app`;
  ctx.volume = `${ctx.prefix}-data`;
  const payload = pickPayload((opts.baseMB ?? 0) * MB, opts.layerMB * MB, opts.volumeMB * MB);
  // Paths in the tar are relative to /: the base's and the layer's land in /usr, the volume's in /data/usr.
  ctx.baseImage = ctx.image;
  if (payload.base.files.length > 0) {
    const builder = `${ctx.prefix}-base-builder`;
    sh(`docker create --name ${builder} ${ctx.image} true >/dev/null`);
    sh(`tar -C / -cf - -T ${tarList(ctx, 'base', payload.base.files)} | docker cp - ${builder}:/`);
    ctx.baseImage = `${ctx.prefix}-base:large`;
    sh(`docker commit ${builder} ${ctx.baseImage} >/dev/null && docker rm ${builder} >/dev/null`);
  }
  ctx.containerId = sh(`docker run -d --name ${ctx.container} -v ${ctx.volume}:/data ${ctx.baseImage} sleep 2147483647`).trim();
  sh(`tar -C / -cf - -T ${tarList(ctx, 'layer', payload.layer.files)} | docker cp - ${ctx.container}:/`);
  sh(`tar -C / -cf - -T ${tarList(ctx, 'volume', payload.volume.files)} | docker cp - ${ctx.container}:/data`);

  // Untimed: a container's first commit runs markedly faster than the later ones here, which
  // would favour whichever variant happens to go first.
  sh(`docker commit ${ctx.container} ${ctx.prefix}-warmup:commit >/dev/null && docker rmi ${ctx.prefix}-warmup:commit`);

  ctx.payload = payload;
  ctx.sizeRw = Number(sh(`docker inspect --size -f '{{.SizeRw}}' ${ctx.container}`).trim());
  ctx.counts = contentCounts(ctx);
  // When its files last changed (ms): scenarios that need them settled wait from here.
  ctx.madeAt = Date.now();
}

// File counts in the layer and the volume: a restore that misses data is caught, not timed.
function contentCounts(ctx) {
  const count = (dir) => Number(sh(`docker exec ${ctx.container} sh -c 'ls -laR ${dir} | wc -l'`).trim());
  return { layer: count('/usr'), volume: count('/data') };
}

/** Throws when the restored container's layer or volume holds another number of entries than the fixture's. */
export function checkRestored(ctx, what) {
  const got = contentCounts(ctx);
  if (got.layer !== ctx.counts.layer || got.volume !== ctx.counts.volume) {
    throw new Error(`${what}: restored ${JSON.stringify(got)} entries, expected ${JSON.stringify(ctx.counts)}`);
  }
}

export function removeContainerAndVolume(ctx) {
  shQuiet(`docker rm -f ${ctx.container}`);
  shQuiet(`docker volume rm ${ctx.volume}`);
}

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

/** Removes everything the run made (synchronous, so it also runs from process 'exit'); once. */
export function cleanup(ctx) {
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
