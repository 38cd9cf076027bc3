import Docker from 'dockerode';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tar from 'tar-stream';
import type { ChildProcess } from 'node:child_process';
import { recordingLog } from './log.js';

export const docker = new Docker();

export const quietLog = recordingLog();

/**
 * Everything one test makes, under one unique prefix, removed afterwards (and nothing else). Images
 * are known by reference (`image`) or by ID (`imageId`: one a restore left untagged); an image left
 * without tags that only this test's containers used (one a rollback made them from) goes with them.
 */
export class Resources {
  readonly prefix: string;
  private readonly containers = new Set<string>();
  private readonly volumes = new Set<string>();
  private readonly networks = new Set<string>();
  private readonly images = new Set<string>();
  private readonly imageIds = new Set<string>();
  /** Images this test's containers were made from: removed at cleanup when left without a tag. */
  private readonly usedBy = new Set<string>();
  private readonly dirs = new Set<string>();

  constructor(runPrefix: string, label: string) {
    this.prefix = `${runPrefix}-${label}-${randomBytes(2).toString('hex')}`;
  }

  name(suffix: string): string {
    const n = `${this.prefix}-${suffix}`;
    this.containers.add(n);
    return n;
  }

  volume(suffix: string): string {
    const n = `${this.prefix}-${suffix}`;
    this.volumes.add(n);
    return n;
  }

  network(suffix: string): string {
    const n = `${this.prefix}-${suffix}`;
    this.networks.add(n);
    return n;
  }

  image(ref: string): string {
    this.images.add(ref);
    return ref;
  }

  /** Tracks an image by its ID (sha256:…), removed after the references (`image`), never forced: one a container still uses stays. */
  imageId(id: string): string {
    this.imageIds.add(id);
    return id;
  }

  /** Removes container `name` (with its anonymous volumes) now; its image, when left without a tag, goes at cleanup. */
  async removeContainer(name: string, on: Docker = docker): Promise<void> {
    const info = await on
      .getContainer(name)
      .inspect()
      .catch(() => undefined);
    if (info) this.usedBy.add(info.Image);
    await on
      .getContainer(name)
      .remove({ force: true, v: true })
      .catch(() => undefined);
  }

  trackVolume(name: string): void {
    this.volumes.add(name);
  }

  tempDir(): string {
    const d = mkdtempSync(join(tmpdir(), `${this.prefix}-`));
    this.dirs.add(d);
    return d;
  }

  /** Removes what was made, on `on` (the engine under test by default; another engine where the test made things there too). */
  async cleanup(on: Docker = docker): Promise<void> {
    for (const c of this.containers) await this.removeContainer(c, on);
    for (const v of this.volumes)
      await on
        .getVolume(v)
        .remove({ force: true })
        .catch(() => undefined);
    for (const n of this.networks)
      await on
        .getNetwork(n)
        .remove()
        .catch(() => undefined);
    for (const i of this.images)
      await on
        .getImage(i)
        .remove({ force: true })
        .catch(() => undefined);
    for (const id of this.usedBy) {
      const tags = await on
        .getImage(id)
        .inspect()
        .then((i) => (i.RepoTags ?? []).filter((t) => t !== '<none>:<none>'))
        .catch(() => undefined);
      if (tags?.length === 0) this.imageIds.add(id);
    }
    for (const id of this.imageIds)
      await on
        .getImage(id)
        .remove({ force: false, noprune: false })
        .catch(() => undefined);
    for (const d of this.dirs) rmSync(d, { recursive: true, force: true });
  }
}

export async function runContainer(
  opts: Docker.ContainerCreateOptions & { name: string },
  state: 'created' | 'running' | 'paused' | 'exited',
  on: Docker = docker,
): Promise<Docker.Container> {
  const c = await on.createContainer(opts);
  if (state === 'created') return c;
  await c.start();
  if (state === 'exited') {
    await c.wait();
    return c;
  }
  await waitFor(async () => (await c.inspect()).State.Running);
  if (state === 'paused') await c.pause();
  return c;
}

/** Runs a shell script in a running container and waits for it; fails on a non-zero exit. */
export async function sh(container: string, script: string): Promise<void> {
  const exec = await docker.getContainer(container).exec({ Cmd: ['sh', '-c', script], AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({ hijack: true, stdin: false });
  stream.resume();
  await new Promise((r) => stream.on('end', r));
  const { ExitCode } = await exec.inspect();
  if (ExitCode !== 0) throw new Error(`${script}: exit ${ExitCode}`);
}

export async function waitFor(check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * A digest of a path inside a container (running or not): every entry's name, type,
 * mode, owner, size, link target, mtime and content, read through the engine's archive API.
 * Modes are compared without their file-type bits: Engine 20.10's archive sets them in the tar
 * header (40755), Engine 26.1's does not (755); the type is compared on its own.
 */
export async function treeDigest(containerId: string, path: string, on: Docker = docker): Promise<{ digest: string; entries: number }> {
  const stream = (await on.getContainer(containerId).getArchive({ path })) as unknown as NodeJS.ReadableStream;
  const extract = tar.extract();
  stream.pipe(extract);
  const lines: string[] = [];
  for await (const entry of extract) {
    const h = entry.header;
    const hash = createHash('sha256');
    for await (const chunk of entry) hash.update(chunk as Buffer);
    const mtime = h.type === 'file' ? Math.floor((h.mtime?.getTime() ?? 0) / 1000) : 0;
    lines.push(
      [h.name.replace(/\/$/, ''), h.type, ((h.mode ?? 0) & 0o7777).toString(8), h.uid, h.gid, h.size, h.linkname ?? '', mtime, hash.digest('hex')].join(' '),
    );
  }
  lines.sort();
  return { digest: createHash('sha256').update(lines.join('\n')).digest('hex'), entries: lines.length };
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/**
 * Images committed from these containers that still exist: the engine is shared with
 * whatever else runs here, so a test looks only for images made from its own containers.
 */
export async function commitsOf(containerIds: string[]): Promise<string[]> {
  const ids = new Set(containerIds);
  const left: string[] = [];
  for (const image of await docker.listImages({ all: true })) {
    const info = await docker
      .getImage(image.Id)
      .inspect()
      .catch(() => undefined);
    if (info && ids.has((info as { Container?: string }).Container ?? '')) left.push(image.Id);
  }
  return left;
}

/**
 * A running container whose volume at /v holds `mb` MB of random data, ready once written:
 * archiving it keeps the container paused long enough to interrupt a backup mid-way.
 */
/** Whether `path` is a file in the running container `name` (`test -f` in an exec, its exit code read once it has ended: 50–100 ms here). */
export async function hasFile(name: string, path: string): Promise<boolean> {
  const exec = await docker.getContainer(name).exec({ Cmd: ['test', '-f', path] });
  await (await exec.start({})).resume();
  let ended = await exec.inspect();
  for (let i = 0; ended.Running && i < 250; i++) {
    await new Promise((r) => setTimeout(r, 20));
    ended = await exec.inspect();
  }
  return ended.ExitCode === 0;
}

export async function runBigVolumeContainer(res: Resources, suffix: string, image: string, mb: number): Promise<{ name: string; id: string }> {
  const name = res.name(suffix);
  const volume = res.volume(suffix);
  const script = `test -f /v/big || dd if=/dev/urandom of=/v/big bs=1M count=${mb} 2>/dev/null; touch /v/ready; exec sleep 100000`;
  await runContainer({ name, Image: image, Cmd: ['sh', '-c', script], HostConfig: { Binds: [`${volume}:/v`] } }, 'running');
  await waitFor(() => hasFile(name, '/v/ready'), 60_000);
  return { name, id: (await docker.getContainer(name).inspect()).Id };
}

/**
 * For runCli's and runStep's onSpawn: polls the container every 10 ms and, the first time `when`
 * holds for its inspect, calls `act` with the child process (to signal it at a chosen moment).
 */
export function whenContainer(
  id: string,
  when: (info: Docker.ContainerInspectInfo) => boolean,
  act: (child: ChildProcess) => void,
): (child: ChildProcess) => void {
  return (child) => {
    let done = false;
    const poll = setInterval(() => {
      docker
        .getContainer(id)
        .inspect()
        .then(
          (info) => {
            if (!done && when(info)) {
              done = true;
              clearInterval(poll);
              act(child);
            }
          },
          () => undefined,
        );
    }, 10);
    child.on('close', () => clearInterval(poll));
  };
}

/** A `when` for whenContainer: the backup has paused the container, and unpaused it again. */
export function afterItsPause(): (info: Docker.ContainerInspectInfo) => boolean {
  let seenPaused = false;
  return (info) => {
    if (info.State.Paused) seenPaused = true;
    return seenPaused && !info.State.Paused;
  };
}

/** A `when` for whenContainer: the backup has stopped the container, and started it again. */
export function afterItsStop(): (info: Docker.ContainerInspectInfo) => boolean {
  let seenStopped = false;
  return (info) => {
    if (!info.State.Running) seenStopped = true;
    return seenStopped && info.State.Running;
  };
}

/**
 * The first three octets of a 10.x.y.0/24 subnet no route on this host uses yet: engines side by side
 * (one tier each) share the host's routes, so a fixed subnet could be a second engine's bridge too.
 */
export function freeSubnet(): string {
  const routes = readFileSync('/proc/net/route', 'utf8')
    .split('\n')
    .slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter((f) => f.length > 7)
    .map(([, dest, , , , , , mask]) => ({ dest: Number.parseInt(dest, 16), mask: Number.parseInt(mask, 16) }));
  for (;;) {
    const [a, b] = [randomInt(100, 250), randomInt(0, 256)];
    // /proc/net/route writes addresses in host (little-endian) byte order.
    const net = 10 | (a << 8) | (b << 16);
    if (!routes.some((r) => r.mask !== 0 && (net & r.mask & 0xffffff) >>> 0 === (r.dest & r.mask & 0xffffff) >>> 0)) return `10.${a}.${b}`;
  }
}

/**
 * For runCli's and runStep's onSpawn: polls `check` every 10 ms (one at a time) and, the first
 * time it holds, sends `signal` to the child; `sent` records when and to which pid.
 */
export function signalWhen(check: () => Promise<boolean>, signal: NodeJS.Signals, sent: { at?: number; pid?: number }): (child: ChildProcess) => void {
  return (child) => {
    let busy = false;
    const poll = setInterval(() => {
      if (busy || sent.at) return;
      busy = true;
      check().then(
        (yes) => {
          busy = false;
          if (yes && !sent.at) {
            sent.at = Date.now();
            sent.pid = child.pid;
            clearInterval(poll);
            child.kill(signal);
          }
        },
        () => (busy = false),
      );
    }, 10);
    child.on('close', () => clearInterval(poll));
  };
}

/** Creates the volume `name` (the caller registers it for removal, e.g. Resources.volume); gives its directory on this host. */
export async function mountpointOf(name: string): Promise<string> {
  await docker.createVolume({ Name: name });
  return ((await docker.getVolume(name).inspect()) as { Mountpoint: string }).Mountpoint;
}
