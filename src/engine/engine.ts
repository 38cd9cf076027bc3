import Docker from 'dockerode';
import { readFileSync } from 'node:fs';
import { Writable, type Readable } from 'node:stream';
import { describeAddress, type EngineAddress } from '../core/engine-address.js';
import { EngineError, NotFoundError, ConflictError, UnreachableError } from './errors.js';
import { SshAgent } from './ssh-agent.js';

export type ContainerInspect = Docker.ContainerInspectInfo;
export type ContainerSummary = Docker.ContainerInfo;
export type VolumeInspect = Docker.VolumeInspectInfo;
export type NetworkInspect = Docker.NetworkInspectInfo;
export type ImageInspect = Docker.ImageInspectInfo;
export type CreateContainerOptions = Docker.ContainerCreateOptions;
export type EndpointSettings = Docker.EndpointSettings;

/** An engine's version (`GET /version`) and identity (`GET /info`: its host name and daemon ID). */
export interface EngineInfo {
  version: string;
  apiVersion: string;
  os: string;
  arch: string;
  /** The engine's host name (`docker info` Name); absent where an engine did not say. */
  name?: string;
  /** The daemon's ID (`docker info` ID), stable across restarts of one engine. */
  id?: string;
}

/** One path of `GET /containers/{id}/changes` (Engine API 1.41): Kind 0 Modified, 1 Added, 2 Deleted. */
export interface ContainerChange {
  Path: string;
  Kind: 0 | 1 | 2;
}

/** The engine's stat of a container path (Engine API 1.41 ContainerPathStat). */
export interface PathStat {
  name: string;
  size: number;
  /** Go's os.FileMode: permission bits, setuid 1<<23, setgid 1<<22, sticky 1<<20, dir 1<<31, symlink 1<<27, … */
  mode: number;
  /** RFC 3339, nanoseconds. */
  mtime: string;
  linkTarget: string;
}

/** What an engine can run a container with (`GET /info`: Runtimes and Plugins), for a restore's up-front check. */
export interface EngineFeatures {
  runtimes: string[];
  logDrivers: string[];
  volumeDrivers: string[];
  networkDrivers: string[];
}

// docker-modem 5 builds each tcp request's address with url.parse, which Node 24 reports on stderr
// (DEP0169) in the middle of the CLI's output; that one warning is dropped, every other is kept.
const emitWarning = process.emitWarning.bind(process) as (...args: unknown[]) => void;
process.emitWarning = ((warning: unknown, ...rest: unknown[]) => {
  const code = typeof rest[0] === 'object' && rest[0] ? (rest[0] as { code?: string }).code : rest[1];
  if (code !== 'DEP0169') emitWarning(warning, ...rest);
}) as typeof process.emitWarning;

// Every option docker-modem would otherwise take from DOCKER_HOST and DOCKER_CERT_PATH: the parsed address decides alone.
const NO_ENV_DEFAULTS = { socketPath: undefined, host: undefined, port: undefined, protocol: undefined, username: undefined, sshOptions: undefined, ca: undefined, cert: undefined, key: undefined };

/**
 * dockerode's options for an address (docker-modem 5: unix socket, http, https with a client
 * certificate; ssh through an `SshAgent`, one SSH connection for every call, with the SSH agent's
 * keys). Reads the TLS files; they are passed to the client only, never logged.
 */
function dockerOptions(address: EngineAddress): Docker.DockerOptions {
  if (address.kind === 'unix') return { ...NO_ENV_DEFAULTS, socketPath: address.socketPath };
  if (address.kind === 'ssh') {
    // Plain HTTP over the agent's channels; the host only names the engine in the request (as the docker CLI's `http://docker`).
    const agent = new SshAgent({ host: address.host, port: address.port, username: address.username, agent: address.agent });
    return { ...NO_ENV_DEFAULTS, protocol: 'http', host: 'docker', pathPrefix: '/', agent } as Docker.DockerOptions;
  }
  // An IPv6 address keeps its brackets: docker-modem puts the host into a URL as it is.
  const host = address.host.includes(':') ? `[${address.host}]` : address.host;
  const base = { ...NO_ENV_DEFAULTS, host, port: address.port, pathPrefix: '/' } as Docker.DockerOptions;
  if (!address.tls) return { ...base, protocol: 'http' };
  const { ca, cert, key } = address.tls;
  return { ...base, protocol: 'https', ca: readFileSync(ca), cert: readFileSync(cert), key: readFileSync(key) };
}

interface ModemError extends Error {
  statusCode?: number;
  json?: { message?: string } | string | null;
  code?: string;
}

function engineMessage(err: ModemError): string {
  if (err.json && typeof err.json === 'object' && err.json.message) return err.json.message;
  if (typeof err.json === 'string' && err.json.trim()) return err.json.trim();
  return err.message.replace(/^\(HTTP code \d+\)\s*/, '');
}

function translate(err: unknown, what: string): Error {
  const e = err as ModemError;
  if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED' || e.code === 'EACCES') {
    return new UnreachableError(`Docker engine unreachable (${e.code}) while trying to ${what}: ${e.message}`);
  }
  const message = `${what}: ${engineMessage(e)}`;
  if (e.statusCode === 404) return new NotFoundError(message);
  if (e.statusCode === 409) return new ConflictError(message);
  return new EngineError(message, e.statusCode);
}

/**
 * Runs one engine call. With a signal, the call is refused once it is aborted and given up (its
 * reason thrown) when it aborts mid-way; calls that change a container's state take no signal.
 */
async function call<T>(what: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  signal?.throwIfAborted();
  try {
    return await (signal ? untilAborted(fn(), signal) : fn());
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    throw translate(err, what);
  }
}

function untilAborted<T>(operation: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    operation.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/**
 * A response stream, closed if it arrives once the call was given up: an archive nobody reads
 * keeps the container locked in the engine (then it can be neither unpaused nor removed).
 */
function closedIfAborted<S extends Readable>(response: Promise<S>, signal?: AbortSignal): Promise<S> {
  if (signal) void response.then((stream) => signal.aborted && stream.destroy(), () => undefined);
  return response;
}

/** Destroys a response stream when the signal aborts (or has), so whatever reads it fails at once. */
function endOnAbort<S extends Readable>(stream: S, signal?: AbortSignal): S {
  if (!signal) return stream;
  if (signal.aborted) {
    stream.destroy(signal.reason as Error);
    return stream;
  }
  const onAbort = () => stream.destroy(signal.reason as Error);
  signal.addEventListener('abort', onAbort, { once: true });
  stream.once('close', () => signal.removeEventListener('abort', onAbort));
  return stream;
}

/** The value, or undefined where the engine answers that the object does not exist. */
async function unlessMissing<T>(operation: Promise<T>): Promise<T | undefined> {
  try {
    return await operation;
  } catch (err) {
    if (err instanceof NotFoundError) return undefined;
    throw err;
  }
}

/** A container's own name: `Names` also lists the aliases other containers link it under ("/other/alias"). */
export function ownName(names: string[] | undefined, id: string): string {
  return (names?.find((n) => n.lastIndexOf('/') === 0) ?? id).replace(/^\//, '');
}

/**
 * Reads an engine JSON-lines progress stream (`load`, `import`) whole and returns its events;
 * failures arrive inside a 200 response, as an event with `error`/`errorDetail`: throws
 * EngineError naming `what`. Not docker-modem's followProgress: it parses inside a 'data'
 * listener, so one malformed line is an uncaught exception that kills the process mid-restore,
 * and it drops a last line without a newline.
 * test/unit/engine-progress.test.ts pins both.
 */
async function readProgress(stream: NodeJS.ReadableStream, what: string): Promise<Array<Record<string, unknown>>> {
  const events: Array<Record<string, unknown>> = [];
  let buffer = '';
  for await (const chunk of stream as AsyncIterable<Buffer | string>) {
    buffer += chunk.toString();
    let nl: number;
    while ((nl = buffer.indexOf('\n')) !== -1) {
      const line = buffer.slice(0, nl).trim();
      buffer = buffer.slice(nl + 1);
      if (line) events.push(JSON.parse(line) as Record<string, unknown>);
    }
  }
  if (buffer.trim()) events.push(JSON.parse(buffer) as Record<string, unknown>);
  const failed = events.find((e) => e.error || e.errorDetail);
  if (failed) {
    const detail = failed.errorDetail as { message?: string } | undefined;
    throw new EngineError(`${what}: ${String(failed.error ?? detail?.message)}`);
  }
  return events;
}

/** The one place that talks to the Docker Engine API. */
export class Engine {
  private readonly docker: Docker;

  /** `address`: what `describe()` says; the client's own when absent. */
  constructor(
    docker?: Docker,
    private readonly address = process.env.DOCKER_HOST || 'unix:///var/run/docker.sock',
  ) {
    this.docker = docker ?? new Docker();
  }

  /** An engine at a parsed address (core/engine-address.ts), whatever DOCKER_HOST says. */
  static connect(address: EngineAddress): Engine {
    let docker: Docker;
    try {
      docker = new Docker(dockerOptions(address));
    } catch (err) {
      throw new UnreachableError(`Docker engine ${address.raw}: the client could not be set up: ${(err as Error).message}`);
    }
    return new Engine(docker, describeAddress(address));
  }

  /**
   * Ends what the client keeps open for the run (the SSH connection of an ssh:// engine); a call
   * after it opens it again. Nothing to do for other engines.
   */
  close(): void {
    const agent = (this.docker.modem as { agent?: unknown }).agent;
    if (agent instanceof SshAgent) agent.close();
  }

  /** Where this engine is reached, as given (no secret): unix:///var/run/docker.sock, tcp://host:2376 (TLS). */
  describe(): string {
    return this.address;
  }

  /** Version and identity: `GET /version` and `GET /info`. A TLS mismatch (the first call's usual failure) says what to set. */
  async info(signal?: AbortSignal): Promise<EngineInfo> {
    const [v, i] = await Promise.all([
      call('read the engine version', () => this.docker.version(), signal),
      call('read the engine information', () => this.docker.info() as Promise<{ Name?: string; ID?: string }>, signal),
    ]).catch((err: unknown) => {
      throw this.explainTls(err);
    });
    return { version: v.Version, apiVersion: v.ApiVersion, os: v.Os, arch: v.Arch, ...(i.Name ? { name: i.Name } : {}), ...(i.ID ? { id: i.ID } : {}) };
  }

  private explainTls(err: unknown): unknown {
    if (!(err instanceof EngineError)) return err;
    if (err.message.includes('Client sent an HTTP request to an HTTPS server')) {
      return new UnreachableError(`Docker engine ${this.address} answers HTTPS only. Expected DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH with ca.pem, cert.pem and key.pem.`);
    }
    if (this.address.endsWith('(TLS)') && /certificate|tlsv1 alert|ssl|EPROTO|socket hang up|ECONNRESET/i.test(err.message)) {
      return new UnreachableError(
        `Docker engine ${this.address}: the TLS handshake failed (${err.message.replace(/^[^:]*: /, '')}). Expected an engine certificate signed by ca.pem of DOCKER_CERT_PATH, and cert.pem/key.pem the engine accepts.`,
      );
    }
    return err;
  }

  /** The IPv4 and IPv6 subnets of the engine's networks (IPAM Config), by network name. */
  async networkSubnets(signal?: AbortSignal): Promise<Array<{ network: string; subnet: string }>> {
    const list = await call('list networks', () => this.docker.listNetworks(), signal);
    return list.flatMap((n) => ((n.IPAM?.Config ?? []) as Array<{ Subnet?: string }>).filter((c) => c.Subnet).map((c) => ({ network: n.Name, subnet: c.Subnet! })));
  }

  /** The runtimes, log, volume and network drivers the engine offers (`GET /info`). */
  async features(signal?: AbortSignal): Promise<EngineFeatures> {
    const i = (await call('read the engine information', () => this.docker.info(), signal)) as {
      Runtimes?: Record<string, unknown>;
      Plugins?: { Log?: string[] | null; Volume?: string[] | null; Network?: string[] | null };
    };
    return {
      runtimes: Object.keys(i.Runtimes ?? {}),
      logDrivers: i.Plugins?.Log ?? [],
      volumeDrivers: i.Plugins?.Volume ?? [],
      networkDrivers: i.Plugins?.Network ?? [],
    };
  }

  /** Host ports published by the engine's running containers: container, host IP ('' for every address), port, protocol. */
  async publishedPorts(signal?: AbortSignal): Promise<Array<{ container: string; ip: string; port: number; protocol: string }>> {
    const list = await call('list containers', () => this.docker.listContainers({ all: false }), signal);
    return list.flatMap((c) =>
      (c.Ports ?? [])
        .filter((p) => p.PublicPort)
        .map((p) => ({ container: ownName(c.Names, c.Id), ip: p.IP === '0.0.0.0' || p.IP === '::' ? '' : (p.IP ?? ''), port: p.PublicPort, protocol: p.Type })),
    );
  }

  listContainers(signal?: AbortSignal): Promise<ContainerSummary[]> {
    return call('list containers', () => this.docker.listContainers({ all: true }), signal);
  }

  inspectContainer(idOrName: string, signal?: AbortSignal): Promise<ContainerInspect> {
    return call(`inspect container ${idOrName}`, () => this.docker.getContainer(idOrName).inspect(), signal);
  }

  /**
   * Waits, at most `timeoutMs`, for a container to be not running (`POST /containers/{id}/wait?condition=not-running`,
   * API ≥ 1.30). True when it is not running; false when it still runs at the deadline. An aborted
   * `signal` stops the waiting (the container runs on) and throws its reason.
   */
  async waitNotRunning(id: string, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    const deadline = AbortSignal.timeout(Math.max(0, timeoutMs));
    try {
      signal?.throwIfAborted();
      const abortSignal = signal ? AbortSignal.any([deadline, signal]) : deadline;
      await call(`wait for container ${id}`, () => this.docker.getContainer(id).wait({ condition: 'not-running', abortSignal }));
      return true;
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      if (deadline.aborted) return false;
      throw err;
    }
  }

  async writableLayerSize(id: string, signal?: AbortSignal): Promise<number | undefined> {
    const container = this.docker.getContainer(id) as unknown as { inspect(o: { size: boolean }): Promise<{ SizeRw?: number }> };
    const info = await call(`inspect container ${id}`, () => container.inspect({ size: true }), signal);
    return info.SizeRw;
  }

  /** The container with exactly this name (the engine alone would also match an ID prefix). */
  async findContainer(name: string): Promise<ContainerInspect | undefined> {
    const info = await unlessMissing(this.inspectContainer(name));
    return info?.Name === `/${name}` ? info : undefined;
  }

  /** Containers, in any state, that mount the volume. */
  async volumeUsers(volume: string): Promise<Array<{ id: string; name: string }>> {
    const list = await call(`list containers using volume ${volume}`, () => this.docker.listContainers({ all: true, filters: { volume: [volume] } }));
    return list.map((c) => ({ id: c.Id, name: ownName(c.Names, c.Id) }));
  }

  /**
   * Runs `sh -c command` inside a running container, passing its output on line by line.
   * Resolves with the exit code, or `timedOut` when it outlives `timeoutMs` (the process is
   * left to the container: the Engine API cannot stop an exec). An aborted signal stops the
   * waiting and throws its reason.
   */
  async exec(id: string, command: string, opts: { timeoutMs: number; onLine: (line: string) => void; signal?: AbortSignal }): Promise<{ exitCode?: number; timedOut: boolean }> {
    const { signal } = opts;
    const container = this.docker.getContainer(id);
    const exec = await call(`exec in container ${id}`, () => container.exec({ Cmd: ['sh', '-c', command], AttachStdout: true, AttachStderr: true }), signal);
    const stream = endOnAbort(await call(`exec in container ${id}`, () => exec.start({ hijack: true, stdin: false }), signal), signal);
    let pending = '';
    const lines = new Writable({
      write: (chunk: Buffer, _enc, done) => {
        const text = pending + chunk.toString('utf8');
        const parts = text.split('\n');
        pending = parts.pop() ?? '';
        for (const line of parts) opts.onLine(line.replace(/\r$/, ''));
        done();
      },
    });
    this.docker.modem.demuxStream(stream, lines, lines);
    let timer: NodeJS.Timeout | undefined;
    const ended = new Promise<'ended'>((resolve, reject) => {
      stream.once('end', () => resolve('ended'));
      stream.once('close', () => resolve('ended'));
      stream.once('error', reject);
    });
    const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), opts.timeoutMs)));
    const outcome = await Promise.race([ended, timeout]).finally(() => clearTimeout(timer));
    if (pending) opts.onLine(pending);
    signal?.throwIfAborted();
    if (outcome === 'timeout') {
      stream.destroy();
      return { timedOut: true };
    }
    const info = await call(`inspect exec in container ${id}`, () => exec.inspect(), signal);
    return { exitCode: info.ExitCode ?? undefined, timedOut: false };
  }

  async pause(id: string): Promise<void> {
    await call(`pause container ${id}`, () => this.docker.getContainer(id).pause());
  }

  async unpause(id: string): Promise<void> {
    await call(`unpause container ${id}`, () => this.docker.getContainer(id).unpause());
  }

  /** Starts a container; one already running is left as it is. */
  async start(id: string): Promise<void> {
    try {
      await call(`start container ${id}`, () => this.docker.getContainer(id).start());
    } catch (err) {
      if (!(err instanceof EngineError && err.statusCode === 304)) throw err;
    }
  }

  async stop(id: string, timeoutSeconds?: number): Promise<void> {
    try {
      await call(`stop container ${id}`, () => this.docker.getContainer(id).stop({ t: timeoutSeconds }));
    } catch (err) {
      if (!(err instanceof EngineError && err.statusCode === 304)) throw err;
    }
  }

  async removeContainer(id: string, opts: { force?: boolean; volumes?: boolean } = {}): Promise<void> {
    await call(`remove container ${id}`, () =>
      this.docker.getContainer(id).remove({ force: opts.force ?? false, v: opts.volumes ?? false }),
    );
  }

  async renameContainer(id: string, name: string): Promise<void> {
    await call(`rename container ${id} to ${name}`, () => this.docker.getContainer(id).rename({ name }));
  }

  /** Commits the container's writable layer as `repo:tag`; returns the new image ID. */
  async commit(id: string, opts: { pause: boolean; repo: string; tag: string }): Promise<string> {
    const res = (await call(`commit container ${id}`, () =>
      this.docker.getContainer(id).commit({ pause: opts.pause, repo: opts.repo, tag: opts.tag }),
    )) as { Id: string };
    return res.Id;
  }

  inspectImage(ref: string, signal?: AbortSignal): Promise<ImageInspect> {
    return call(`inspect image ${ref}`, () => this.docker.getImage(ref).inspect(), signal);
  }

  async imageExists(ref: string): Promise<boolean> {
    return (await unlessMissing(this.inspectImage(ref))) !== undefined;
  }

  /** `docker import`: an image whose single layer is `tar`, tagged `repo:tag`. */
  async importImage(tar: Readable, repo: string, tag: string): Promise<void> {
    const stream = await call(`import image ${repo}:${tag}`, () => this.docker.importImage(tar as never, { repo, tag }) as Promise<Readable>);
    await readProgress(stream, `import image ${repo}:${tag}`);
  }

  /** `docker save`: a tar stream of the image (legacy or OCI layout, both with manifest.json). */
  async saveImage(ref: string, signal?: AbortSignal): Promise<Readable> {
    return endOnAbort(await call(`save image ${ref}`, () => closedIfAborted(this.docker.getImage(ref).get() as Promise<Readable>, signal), signal), signal);
  }

  /** `docker load`; returns the loaded image IDs and references the engine reports. */
  async loadImage(tar: Readable): Promise<string[]> {
    const stream = await call('load image', () => this.docker.loadImage(tar, { quiet: true }));
    const events = await readProgress(stream, 'load image');
    return events
      .map((e) => String(e.stream ?? ''))
      .map((s) => /Loaded image(?: ID)?: (\S+)/.exec(s)?.[1])
      .filter((s): s is string => Boolean(s));
  }

  async tagImage(id: string, repo: string, tag: string): Promise<void> {
    await call(`tag image ${id} as ${repo}:${tag}`, () => this.docker.getImage(id).tag({ repo, tag }));
  }

  /** Tags (repository:tag) of the local images whose repository matches `pattern` (the engine's reference filter). */
  async imageTags(pattern: string): Promise<string[]> {
    const images = await call(`list images ${pattern}`, () => this.docker.listImages({ filters: { reference: [pattern] } }));
    return images.flatMap((i) => i.RepoTags ?? []).filter((t) => t !== '<none>:<none>');
  }

  async removeImage(ref: string, opts: { force?: boolean } = {}): Promise<void> {
    await unlessMissing(call(`remove image ${ref}`, () => this.docker.getImage(ref).remove({ force: opts.force ?? false })));
  }

  /**
   * `GET /containers/{id}/changes`: the paths of the container's writable layer against its image,
   * each Modified (0), Added (1) or Deleted (2). Empty when nothing changed (the engine says null).
   */
  async containerChanges(id: string, signal?: AbortSignal): Promise<ContainerChange[]> {
    const list: unknown = await call(`list the changes of container ${id}`, () => this.docker.getContainer(id).changes() as Promise<unknown>, signal);
    // No change: the engine answers `null`, which docker-modem passes on unparsed (not an array).
    return Array.isArray(list) ? (list as ContainerChange[]) : [];
  }

  /**
   * `HEAD /containers/{id}/archive?path=`: the stat of one path, from the header X-Docker-Container-Path-Stat
   * (base64 JSON; `mode` is Go's os.FileMode, `mtime` RFC 3339 with nanoseconds, `linkTarget` the symlink
   * fully resolved inside the container). Undefined when the path does not exist.
   */
  async statPath(id: string, path: string, signal?: AbortSignal): Promise<PathStat | undefined> {
    const container = this.docker.getContainer(id);
    const res = await unlessMissing(call(`stat ${path} of container ${id}`, () => container.infoArchive({ path }) as unknown as Promise<Readable & { headers: Record<string, string | undefined> }>, signal));
    if (!res) return undefined;
    res.resume();
    const header = res.headers['x-docker-container-path-stat'];
    if (!header) throw new EngineError(`stat ${path} of container ${id}: the engine sent no X-Docker-Container-Path-Stat header`);
    return JSON.parse(Buffer.from(header, 'base64').toString('utf8')) as PathStat;
  }

  /** Streams `path` of the container's filesystem (volumes included) as a tar. */
  async getArchive(id: string, path: string, signal?: AbortSignal): Promise<Readable> {
    const archive = await call(`read ${path} of container ${id}`, () => closedIfAborted(this.docker.getContainer(id).getArchive({ path }) as unknown as Promise<Readable>, signal), signal);
    return endOnAbort(archive, signal);
  }

  /**
   * `PUT /containers/{id}/archive`: extracts `tar` at `path`. A `tar` that fails or closes before
   * its end, even before the request starts, aborts the request and its own error is thrown (a
   * checksum or key error, a cancellation): the engine is never left waiting for the rest of a body.
   */
  async putArchive(id: string, path: string, tar: Readable): Promise<void> {
    const what = `write ${path} of container ${id}`;
    // tar-stream's pack is a streamx stream: no readableEnded, so its 'end' is heard here.
    let ended = false;
    const onEnded = () => void (ended = true);
    const broken = () => tar.errored ?? (tar.destroyed && !tar.readableEnded && !ended ? new Error('the archive closed before its end') : undefined);
    const before = broken();
    if (before) throw before;
    const abort = new AbortController();
    const onEnd = () => {
      const err = broken();
      if (err) abort.abort(err);
    };
    tar.once('end', onEnded).once('error', onEnd).once('close', onEnd);
    try {
      await call(what, () => this.docker.getContainer(id).putArchive(tar as unknown as NodeJS.ReadableStream, { path, abortSignal: abort.signal }));
    } catch (err) {
      if (abort.signal.aborted) throw abort.signal.reason;
      throw err;
    } finally {
      tar.off('end', onEnded).off('error', onEnd).off('close', onEnd);
    }
  }

  inspectVolume(name: string, signal?: AbortSignal): Promise<VolumeInspect | undefined> {
    return unlessMissing(call(`inspect volume ${name}`, () => this.docker.getVolume(name).inspect(), signal));
  }

  async createVolume(opts: { name: string; driver?: string; driverOpts?: Record<string, string>; labels?: Record<string, string> }): Promise<void> {
    await call(`create volume ${opts.name}`, () =>
      this.docker.createVolume({
        Name: opts.name,
        Driver: opts.driver ?? 'local',
        DriverOpts: opts.driverOpts ?? {},
        Labels: opts.labels ?? {},
      }),
    );
  }

  async removeVolume(name: string): Promise<void> {
    await call(`remove volume ${name}`, () => this.docker.getVolume(name).remove());
  }

  /** The network with exactly this name or ID (the engine alone would also match an ID prefix). */
  async inspectNetwork(name: string, signal?: AbortSignal): Promise<NetworkInspect | undefined> {
    const net = await unlessMissing(call(`inspect network ${name}`, () => this.docker.getNetwork(name).inspect(), signal));
    return net && (net.Name === name || net.Id === name) ? net : undefined;
  }

  /** Creates a network; returns its ID. */
  async createNetwork(opts: Docker.NetworkCreateOptions): Promise<string> {
    const net = await call(`create network ${opts.Name}`, () => this.docker.createNetwork(opts));
    return net.id;
  }

  /** Removes a network by name or ID; NotFoundError when it is gone, ConflictError while a running container is on it. */
  async removeNetwork(idOrName: string): Promise<void> {
    await call(`remove network ${idOrName}`, () => this.docker.getNetwork(idOrName).remove());
  }

  /** Containers, in any state, attached to the network `id` (the engine's `network` filter of `GET /containers/json`). */
  async networkUsers(id: string): Promise<Array<{ id: string; name: string }>> {
    const list = await call(`list containers on network ${id}`, () => this.docker.listContainers({ all: true, filters: { network: [id] } }));
    return list.map((c) => ({ id: c.Id, name: ownName(c.Names, c.Id) }));
  }

  async connectNetwork(network: string, container: string, endpoint: EndpointSettings): Promise<void> {
    await call(`connect container ${container} to network ${network}`, () =>
      this.docker.getNetwork(network).connect({ Container: container, EndpointConfig: endpoint }),
    );
  }

  async createContainer(opts: CreateContainerOptions): Promise<string> {
    const c = await call(`create container ${opts.name ?? ''}`.trim(), () => this.docker.createContainer(opts));
    return c.id;
  }

  /** Containers, in any state, carrying the label `key` (any value): ID, own name and the label's value. */
  async containersLabelled(key: string): Promise<Array<{ id: string; name: string; value: string }>> {
    const list = await call(`list containers labelled ${key}`, () => this.docker.listContainers({ all: true, filters: { label: [key] } }));
    return list.map((c) => ({ id: c.Id, name: ownName(c.Names, c.Id), value: c.Labels?.[key] ?? '' }));
  }

  /** Volumes carrying the label `key` (any value): name and the label's value. */
  async volumesLabelled(key: string): Promise<Array<{ name: string; value: string }>> {
    const res = await call(`list volumes labelled ${key}`, () => this.docker.listVolumes({ filters: { label: [key] } }));
    return (res.Volumes ?? []).map((v) => ({ name: v.Name, value: (v.Labels as Record<string, string> | null)?.[key] ?? '' }));
  }
}

export { EngineError, NotFoundError, ConflictError, UnreachableError };
