#!/usr/bin/env node
// Goal B4 alone (bench/scenarios/registry.mjs): the bench fixture and a registry with auth
// (lib/registry.mjs); each --cli and `docker commit` + `docker push` first store the state before
// the change (untimed for the ratio), then each round makes B2's change (1 MB new in the layer, 1 MB
// rewritten in the middle of the volume's largest file) and runs each side, order rotated.
// Each build backs up to a prefix of its own, so each sees only its own history.
// Prints seconds, the paused window, the registry's requests by method (counted by a proxy in
// front of it) and, with --phases, each log line with the seconds since the start. With
// --cpu-prof DIR, each CLI run writes a CPU profile there. It never asserts a speed.
//
//   node bench/b4.mjs [--cli dist/cli.js]... [--base-mb 400] [--mb 300] [--volume-mb 200] [--runs 1] [--phases] [--cpu-prof DIR]
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { cleanup, makeFixture } from './lib/fixture.mjs';
import { CLI, MB, q, sh } from './lib/process.mjs';
import { startRegistry } from './lib/registry.mjs';
import { load, median, timed } from './lib/timed.mjs';
import { largest, put, rewriteMiddle } from './scenarios/incremental.mjs';

function parse(argv) {
  const opts = { clis: [], baseMB: 400, layerMB: 300, volumeMB: 200, runs: 1, phases: false, cpuProf: undefined };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--cli') opts.clis.push(resolve(argv[++i]));
    else if (argv[i] === '--base-mb') opts.baseMB = Number(argv[++i]);
    else if (argv[i] === '--mb') opts.layerMB = Number(argv[++i]);
    else if (argv[i] === '--volume-mb') opts.volumeMB = Number(argv[++i]);
    else if (argv[i] === '--runs') opts.runs = Number(argv[++i]);
    else if (argv[i] === '--phases') opts.phases = true;
    else if (argv[i] === '--cpu-prof') opts.cpuProf = resolve(argv[++i]);
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  if (opts.clis.length === 0) opts.clis.push(CLI);
  return opts;
}

/**
 * A counting proxy in front of the registry on another loopback port: every request forwarded as
 * it is; `counts` by method, reset by the caller. Resolves with { host, counts, close }.
 */
function countingProxy(target) {
  const [thost, tport] = target.split(':');
  const counts = {};
  const server = http.createServer((req, res) => {
    counts[req.method] = (counts[req.method] ?? 0) + 1;
    const up = http.request({ host: thost, port: Number(tport), method: req.method, path: req.url, headers: req.headers }, (r) => {
      const headers = { ...r.headers };
      // Locations name the registry's own host: rewritten to the proxy's, so uploads come back through it.
      if (headers.location) headers.location = headers.location.replace(target, proxyHost);
      res.writeHead(r.statusCode ?? 502, headers);
      r.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  let proxyHost = '';
  return new Promise((done) =>
    server.listen(0, '127.0.0.1', () => {
      proxyHost = `127.0.0.1:${server.address().port}`;
      done({ host: proxyHost, counts, close: () => (server.closeAllConnections(), server.close()) });
    }),
  );
}

async function main() {
  const opts = parse(process.argv.slice(2));
  const ctx = { prefix: `csb4-${randomBytes(3).toString('hex')}`, tmp: mkdtempSync(join(tmpdir(), 'csb4-')), saved: {}, opts };
  process.on('exit', () => {
    ctx.registry?.kill();
    cleanup(ctx);
  });
  // SIGTERM too (timeout, a CI's cancel): the exit handler removes what the run made.
  process.on('SIGINT', () => process.exit(130));
  process.on('SIGTERM', () => process.exit(143));
  console.log(`load average at start: ${load()}`);
  await makeFixture(ctx, opts);
  console.log(`fixture: layer ${ctx.sizeRw} bytes, ${opts.volumeMB} MB volume`);
  await startRegistry(ctx);
  const proxy = await countingProxy(ctx.registry.host);
  // The proxy's host gets the registry's credentials in a config of its own.
  const config = JSON.parse(readFileSync(join(ctx.registry.dockerConfig, 'config.json'), 'utf8'));
  const proxyConfig = join(ctx.tmp, 'proxy-config');
  mkdirSync(proxyConfig);
  writeFileSync(join(proxyConfig, 'config.json'), JSON.stringify({ auths: { [proxy.host]: config.auths[ctx.registry.host] } }));
  if (opts.cpuProf) mkdirSync(opts.cpuProf, { recursive: true });
  const env = `DOCKER_CONFIG=${q(ctx.registry.dockerConfig)}`;
  const repo = `${ctx.registry.host}/${ctx.prefix}/docker-b4`;
  const tags = [];
  const ours = async (k, tag) => {
    for (const m of Object.keys(proxy.counts)) delete proxy.counts[m];
    const prof = opts.cpuProf ? `--cpu-prof --cpu-prof-dir=${q(opts.cpuProf)} --cpu-prof-name=${q(`cli${k}-${tag}.cpuprofile`)} ` : '';
    const dest = `registry:${proxy.host}/${ctx.prefix}/cli${k}`;
    const r = await timed(
      `DOCKER_CONFIG=${q(proxyConfig)} ${q(process.execPath)} ${prof}${q(opts.clis[k])} backup --containers ${ctx.container} --destination ${dest} --tag ${tag}`,
    );
    const paused = Number(/paused for (\d+) ms/.exec(r.lines.join('\n'))?.[1] ?? NaN) / 1000;
    return { ...r, paused, requests: { ...proxy.counts } };
  };
  const docker = async (tag) => {
    tags.push(`${repo}:${tag}`);
    const r = await timed(`docker commit ${ctx.container} ${repo}:${tag} >/dev/null && ${env} docker push ${repo}:${tag} >/dev/null`);
    return { ...r, lines: [] };
  };
  const show = (who, r) => {
    const reqs = r.requests ? `  requests ${JSON.stringify(r.requests)}` : '';
    const paused = r.paused !== undefined ? `  paused ${r.paused.toFixed(2)} s` : '';
    console.log(`${who}  ${r.seconds.toFixed(2)} s${paused}${reqs}  (load ${load()})`);
    if (opts.phases) for (const line of r.lines) console.log(`    ${line}`);
  };
  for (let k = 0; k < opts.clis.length; k++) show(`full cli${k}`, await ours(k, 'b4-full'));
  show('full docker', await docker('full'));
  const volFile = largest(ctx.payload.volume, '/data');
  const times = { docker: [], ...Object.fromEntries(opts.clis.map((_c, k) => [k, []])) };
  const pauses = Object.fromEntries(opts.clis.map((_c, k) => [k, []]));
  const sides = ['docker', ...opts.clis.map((_c, k) => k)];
  for (let run = 0; run < opts.runs; run++) {
    put(ctx, '', `usr/bench-b4-${run}`, randomBytes(MB));
    rewriteMiddle(ctx, volFile);
    const order = sides.map((_s, i) => sides[(i + run) % sides.length]);
    for (const who of order) {
      const r = who === 'docker' ? await docker(`change-${run}`) : await ours(who, `b4-change-${run}`);
      times[who].push(r.seconds);
      if (who !== 'docker') pauses[who].push(r.paused);
      show(`run ${run} ${who === 'docker' ? 'docker commit+push' : `cli${who} ${opts.clis[who]}`}`, r);
    }
  }
  for (const tag of tags) sh(`docker rmi ${q(tag)} >/dev/null`);
  proxy.close();
  await ctx.registry.stop();
  const d = median(times.docker);
  for (let k = 0; k < opts.clis.length; k++) {
    console.log(
      `B4 cli${k} ${opts.clis[k]}: x${(median(times[k]) / d).toFixed(2)} (${median(times[k]).toFixed(2)} s vs ${d.toFixed(2)} s; paused ${median(pauses[k]).toFixed(2)} s)`,
    );
  }
  console.log(`load average at end: ${load()}`);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
