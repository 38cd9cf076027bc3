#!/usr/bin/env node
// Goal B2 for volumes alone: a container with a ~200 MB named volume (half random, half text), a
// first backup to dir:, a 1 MB change in the middle of the volume, the next backup. Prints each
// backup's seconds and the bytes it added to the store; it never asserts a speed.
//
//   node bench/volume-chunks.mjs [--cli dist/cli.js]... [--volume-mb 200] [--runs 1]
//
// Several --cli compare builds side by side (e.g. the last release's dist/cli.js and a new build,
// `node scripts/build.mjs src/cli.ts=.tmp/cli-new/cli.js`), alternating. Everything it makes carries
// a random prefix and is removed at the end.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MB = 1024 * 1024;
const FILE_MB = 4;

function parse(argv) {
  const opts = { clis: [], volumeMB: 200, runs: 1 };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--cli') opts.clis.push(resolve(argv[++i]));
    else if (argv[i] === '--volume-mb') opts.volumeMB = Number(argv[++i]);
    else if (argv[i] === '--runs') opts.runs = Number(argv[++i]);
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  if (opts.clis.length === 0) opts.clis.push(join(ROOT, 'dist/cli.js'));
  return opts;
}

const sh = (cmd, input) => execFileSync('sh', ['-c', cmd], { input, maxBuffer: 1 << 30 }).toString();

/** Text that compresses like source and logs do (~4×): lines of words picked by a seeded generator. */
function text(bytes, seed) {
  const words = 'container snapshot volume backup restore layer chunk digest stored registry engine pause daemon image config'.split(' ');
  let x = seed >>> 0 || 1;
  const lines = [];
  let n = 0;
  while (n < bytes) {
    let line = `${n} `;
    for (let w = 0; w < 12; w++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      line += `${words[(x >>> 0) % words.length]}${(x >>> 8) % 100} `;
    }
    lines.push(`${line}\n`);
    n += line.length + 1;
  }
  return Buffer.from(lines.join('')).subarray(0, bytes);
}

function storeBytes(dir) {
  let n = 0;
  for (const e of readdirSync(dir, { recursive: true, withFileTypes: true })) if (e.isFile()) n += statSync(join(e.parentPath, e.name)).size;
  return n;
}

function backup(cli, container, store, tag) {
  const started = performance.now();
  const r = spawnSync('node', [cli, 'backup', '--containers', container, '--destination', `dir:${store}`, '--tag', tag, '--compression', 'zstd'], {
    encoding: 'utf8',
    maxBuffer: 1 << 28,
  });
  if (r.status !== 0) throw new Error(`backup ${tag} failed: ${r.stderr.trim().split('\n').pop()}`);
  return (performance.now() - started) / 1000;
}

async function main() {
  const opts = parse(process.argv.slice(2));
  const prefix = `csxb-${randomBytes(3).toString('hex')}`;
  const tmp = mkdtempSync(join(tmpdir(), `${prefix}-`));
  const container = `${prefix}-app`;
  const volume = `${prefix}-data`;
  const image = `${prefix}-base:busybox`;
  try {
    sh(`${join(ROOT, 'scripts/demo-image.sh')} ${image}`);
    sh(`docker run -d --name ${container} -v ${volume}:/data ${image} sleep 2147483647`);
    const files = Math.round(opts.volumeMB / FILE_MB);
    for (let i = 0; i < files; i++) {
      const body = i % 2 === 0 ? randomBytes(FILE_MB * MB) : text(FILE_MB * MB, i + 1);
      writeFileSync(join(tmp, `f${String(i).padStart(3, '0')}`), body);
    }
    sh(`tar -C ${tmp} -cf - --exclude=store* . | docker cp - ${container}:/data`);
    for (const f of readdirSync(tmp)) if (f.startsWith('f')) rmSync(join(tmp, f));
    console.log(`volume: ${files} files of ${FILE_MB} MB (half random, half text), ${cpus().length} CPU(s)`);
    const rows = [];
    for (let run = 0; run < opts.runs; run++) {
      for (const [k, cli] of opts.clis.entries()) {
        const store = join(tmp, `store-${k}-${run}`);
        const first = backup(cli, container, store, 'first');
        const firstBytes = storeBytes(store);
        // 1 MB of random bytes in the middle of a random file in the middle of the volume (the worst case), then the next backup.
        const middle = `/data/f${String(Math.floor(files / 4) * 2).padStart(3, '0')}`;
        sh(`docker exec -i ${container} busybox dd of=${middle} bs=1M seek=1 count=1 iflag=fullblock conv=notrunc 2>/dev/null`, randomBytes(MB));
        const next = backup(cli, container, store, 'next');
        const added = storeBytes(store) - firstBytes;
        rows.push({
          cli: cli.replace(`${ROOT}/`, ''),
          run,
          firstS: first,
          firstMB: firstBytes / MB,
          nextS: next,
          addedMB: added / MB,
          addedPct: (100 * added) / firstBytes,
          timeRatio: next / first,
        });
        rmSync(store, { recursive: true, force: true });
      }
    }
    for (const r of rows) {
      console.log(
        `${r.cli} (run ${r.run + 1}): first ${r.firstS.toFixed(1)} s, ${r.firstMB.toFixed(1)} MB stored; ` +
          `after 1 MB changed: ${r.nextS.toFixed(1)} s (${r.timeRatio.toFixed(2)}×), ${r.addedMB.toFixed(2)} MB added (${r.addedPct.toFixed(2)} %)`,
      );
    }
    console.log(JSON.stringify(rows));
  } finally {
    spawnSync('docker', ['rm', '-f', container]);
    spawnSync('docker', ['volume', 'rm', volume]);
    spawnSync('docker', ['rmi', '-f', image]);
    rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
