// A real OCI registry for the bench, as the tests start one (test/support/registry.ts): CNCF
// distribution (Debian's `docker-registry serve`) on a free loopback port, htpasswd auth, its
// storage in a temp dir under ctx.tmp; and a Docker config logged in to it, for both the docker
// CLI and container-snapshot (which reads DOCKER_CONFIG's `auths`, README "Environment").
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { q, sh } from './process.mjs';

const START_TIMEOUT_MS = 15_000;

/** A free TCP port on 127.0.0.1 (the kernel's pick; closed again before the registry takes it). */
function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

/** True while `pid` is a live process (not gone, not a zombie). */
function alive(pid) {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/**
 * Starts the registry: ctx.registry = { host ('127.0.0.1:PORT'), dir, data (its storage root),
 * dockerConfig (a DOCKER_CONFIG dir logged in to it), storedBytes() (`du -sb` of its storage),
 * kill() (synchronous: SIGKILL, waits up to 2 s for it to go; for process 'exit'), stop() (SIGTERM, then
 * kill() after 5 s) }.
 * The dir is under ctx.tmp, so cleanup() removes it; the password never leaves ctx.registry and the
 * config files. Throws when the registry does not answer /v2/ with 401 within 15 s, or login fails.
 */
export async function startRegistry(ctx) {
  const dir = mkdtempSync(join(ctx.tmp, 'registry-'));
  const data = join(dir, 'data');
  const username = 'bench';
  const password = randomBytes(12).toString('hex');
  writeFileSync(join(dir, 'htpasswd'), execFileSync('htpasswd', ['-Bbn', username, password], { encoding: 'utf8' }));
  const host = `127.0.0.1:${await freePort()}`;
  writeFileSync(
    join(dir, 'config.yml'),
    [
      'version: 0.1',
      'log: {level: warn}',
      'storage:',
      `  filesystem: {rootdirectory: ${data}}`,
      '  delete: {enabled: true}',
      `http: {addr: "${host}"}`,
      'auth:',
      `  htpasswd: {realm: bench, path: ${join(dir, 'htpasswd')}}`,
      '',
    ].join('\n'),
  );
  const child = spawn('docker-registry', ['serve', join(dir, 'config.yml')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const kill = () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    try {
      child.kill('SIGKILL');
    } catch {
      return;
    }
    for (let i = 0; i < 20 && alive(child.pid); i++) execFileSync('sleep', ['0.1']);
  };
  // Registered before the wait, so a failed start or Ctrl-C during it still kills the process.
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    kill();
  };
  ctx.registry = { host, dir, data, kill, stop };
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    try {
      if ((await fetch(`http://${host}/v2/`)).status === 401) break;
    } catch {
      // not listening yet
    }
    if (child.exitCode !== null || Date.now() > deadline) {
      kill();
      throw new Error(`registry did not start on ${host}: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const dockerConfig = join(dir, 'docker-config');
  // The engine reaches 127.0.0.0/8 over plain HTTP (its default insecure-registries).
  try {
    execFileSync('docker', ['login', '-u', username, '--password-stdin', host], {
      input: password,
      env: { ...process.env, DOCKER_CONFIG: dockerConfig },
      stdio: ['pipe', 'ignore', 'pipe'],
    });
  } catch (err) {
    throw new Error(`docker login ${host} failed: ${err.stderr || err.message}`, { cause: err });
  }
  if (!existsSync(join(dockerConfig, 'config.json'))) throw new Error('docker login wrote no config.json');
  Object.assign(ctx.registry, {
    dockerConfig,
    /** Bytes in the registry's storage (blobs, manifests, links), `du -sb`; 0 before the first push. */
    storedBytes: () => (existsSync(data) ? Number(sh(`du -sb ${q(data)}`).split('\t')[0]) : 0),
  });
  return ctx.registry;
}
