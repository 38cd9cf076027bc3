import Docker from 'dockerode';
import { readFileSync } from 'node:fs';
import tar from 'tar-stream';

export function engineClient(): Docker {
  return new Docker();
}

/** Tests need a real engine: without one they fail with this message, they never skip. */
export async function requireEngine(): Promise<void> {
  try {
    await engineClient().ping();
  } catch (err) {
    throw new Error(
      `No Docker engine reachable (${process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock'}): ` +
        `start one with 'scripts/testbed.sh' (${(err as Error).message})`,
      { cause: err },
    );
  }
}

const APPLETS = [
  'sh',
  'ls',
  'cat',
  'echo',
  'sleep',
  'mkdir',
  'wc',
  'httpd',
  'id',
  'chown',
  'chmod',
  'rm',
  'sha256sum',
  'find',
  'touch',
  'ln',
  'stat',
  'hostname',
  'sync',
  'true',
  'test',
  'env',
  'sort',
  'xargs',
  'head',
  'dd',
  'seq',
  'kill',
  'ps',
  'readlink',
];

/**
 * Builds a ~2 MB image from the host's static busybox, streamed as a tar into the
 * engine's import: no registry is needed and nothing binary is committed.
 */
export async function buildFixtureImage(ref: string, marker = '', docker: Docker = engineClient()): Promise<string> {
  const busybox = readFileSync('/bin/busybox');
  const pack = tar.pack();
  const dir = (name: string, mode = 0o755) => pack.entry({ name, type: 'directory', mode });
  for (const d of ['bin', 'etc', 'tmp', 'www', 'data', 'root']) dir(d, d === 'tmp' ? 0o1777 : 0o755);
  pack.entry({ name: 'bin/busybox', mode: 0o755 }, busybox);
  for (const applet of APPLETS) {
    pack.entry({ name: `bin/${applet}`, type: 'symlink', linkname: 'busybox' });
  }
  pack.entry({ name: 'etc/passwd', mode: 0o644 }, 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/tmp:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n');
  pack.entry({ name: 'etc/group', mode: 0o644 }, 'root:x:0:\napp:x:1000:\nnogroup:x:65534:\n');
  pack.entry({ name: 'www/index.html', mode: 0o644 }, 'fixture\n');
  if (marker) pack.entry({ name: 'etc/marker', mode: 0o644 }, `${marker}\n`);
  pack.finalize();
  const [repo, tag] = ref.split(':');
  const stream = (await docker.importImage(
    pack as unknown as NodeJS.ReadableStream,
    {
      repo,
      tag,
      changes: ['ENV PATH=/bin', 'CMD ["sh"]'],
    } as never,
  )) as unknown as NodeJS.ReadableStream;
  await new Promise<void>((resolve, reject) => {
    docker.modem.followProgress(stream, (err: Error | null, events: Array<{ error?: string }>) => {
      const failed = events?.find((e) => e.error);
      if (err || failed) reject(err ?? new Error(failed?.error));
      else resolve();
    });
  });
  return ref;
}

/** The engine a run tests against, as the global setup provides it. */
export interface TestedEngine {
  version: string;
  apiVersion: string;
  host: string;
}

/** Whether the engine's major version is at least `major` ("26.1.5+dfsg1" → 26). */
export function engineAtLeast(engine: TestedEngine, major: number): boolean {
  return Number.parseInt(engine.version, 10) >= major;
}

/** Whether the engine's API version is at least `version` ("1.45" ≥ "1.44"). */
export function apiAtLeast(engine: TestedEngine, version: string): boolean {
  const [a, b] = engine.apiVersion.split('.').map(Number);
  const [x, y] = version.split('.').map(Number);
  return a > x || (a === x && b >= y);
}

/** How a test names the engine it ran on: "Engine 26.1.5 (API 1.45)". */
export function engineLabel(engine: TestedEngine): string {
  return `Engine ${engine.version.replace(/\+.*$/, '')} (API ${engine.apiVersion})`;
}
