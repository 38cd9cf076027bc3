import { Writable, type Readable } from 'node:stream';
import { call, closedIfAborted, endOnAbort, unlessMissing } from './call.js';
import { ContainerCalls } from './containers.js';
import { EngineError } from './errors.js';

/** One path of `GET /containers/{id}/changes` (Engine API 1.41): Kind 0 Modified, 1 Added, 2 Deleted. */
export interface ContainerChange {
  Path: string;
  Kind: 0 | 1 | 2;
}

/** How many times a list of changes is asked for when the engine fails it on a path gone mid-walk (containerChanges). */
export const CHANGES_TRIES = 5;
/** The wait between those asks (ms). */
const CHANGES_RETRY_MS = 20;
/** The engine's messages when a directory went away while it listed the changes (containerChanges). */
const GONE_MID_WALK = /(\/\.pivot_root\d+|readdirent): no such file or directory$/;

/** The engine's stat of a container path (Engine API 1.41 ContainerPathStat). */
export interface PathStat {
  name: string;
  /** Bytes. */
  size: number;
  /** Go's os.FileMode: permission bits, setuid 1<<23, setgid 1<<22, sticky 1<<20, dir 1<<31, symlink 1<<27, … */
  mode: number;
  /** RFC 3339, nanoseconds. */
  mtime: string;
  linkTarget: string;
}

/**
 * What goes into and out of a container: its filesystem (changes, path stats, tar archives) and
 * the output of a command run in it. Part of `Engine` (connection.ts tells the chain). Each throws
 * as `call` (call.ts) says, unless its doc says otherwise.
 */
export class ContainerIoCalls extends ContainerCalls {
  /**
   * `GET /containers/{id}/changes`: the paths of the container's writable layer against its image,
   * each Modified (0), Added (1) or Deleted (2). Empty when nothing changed (the engine says null).
   * The engine walks the layer to answer, and fails the whole list when a path goes away mid-walk
   * ("open …/merged/.pivot_root123: no such file or directory", "readdirent: no such file or
   * directory"; Engine 20.10 and 26.1) — a directory its own archive requests make for a moment
   * (snapshot/engine-scratch.ts), whatever the container's state: asked again on those two
   * messages alone (GONE_MID_WALK), up to CHANGES_TRIES times in all, CHANGES_RETRY_MS apart; any
   * other failure is thrown at once.
   */
  async containerChanges(id: string, signal?: AbortSignal): Promise<ContainerChange[]> {
    for (let attempt = 1; ; attempt++) {
      try {
        const list: unknown = await call(`list the changes of container ${id}`, () => this.docker.getContainer(id).changes() as Promise<unknown>, signal);
        // No change: the engine answers `null`, which docker-modem passes on unparsed (not an array).
        return Array.isArray(list) ? (list as ContainerChange[]) : [];
      } catch (err) {
        if (attempt >= CHANGES_TRIES || !(err instanceof EngineError) || !GONE_MID_WALK.test(err.message)) throw err;
        await new Promise((resolve) => setTimeout(resolve, CHANGES_RETRY_MS));
      }
    }
  }

  /**
   * `HEAD /containers/{id}/archive?path=`: the stat of one path, from the header X-Docker-Container-Path-Stat
   * (base64 JSON; `mode` is Go's os.FileMode, `mtime` RFC 3339 with nanoseconds, `linkTarget` the symlink
   * fully resolved inside the container). Undefined when the path does not exist; EngineError when the header is missing.
   */
  async statPath(id: string, path: string, signal?: AbortSignal): Promise<PathStat | undefined> {
    const container = this.docker.getContainer(id);
    const res = await unlessMissing(
      call(
        `stat ${path} of container ${id}`,
        () => container.infoArchive({ path }) as unknown as Promise<Readable & { headers: Record<string, string | undefined> }>,
        signal,
      ),
    );
    if (!res) return undefined;
    res.resume();
    const header = res.headers['x-docker-container-path-stat'];
    if (!header) throw new EngineError(`stat ${path} of container ${id}: the engine sent no X-Docker-Container-Path-Stat header`);
    return JSON.parse(Buffer.from(header, 'base64').toString('utf8')) as PathStat;
  }

  /**
   * `GET /containers/{id}/archive?path=`: streams `path` of the container's filesystem (volumes
   * included) as a tar. An aborted `signal` destroys the stream with its reason.
   */
  async getArchive(id: string, path: string, signal?: AbortSignal): Promise<Readable> {
    const archive = await call(
      `read ${path} of container ${id}`,
      () => closedIfAborted(this.docker.getContainer(id).getArchive({ path }) as unknown as Promise<Readable>, signal),
      signal,
    );
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

  /**
   * Runs `sh -c command` inside a running container (`POST /containers/{id}/exec`, then
   * `POST /exec/{id}/start` hijacked, stdout and stderr demultiplexed), passing its output on line
   * by line (a trailing '\r' dropped). Resolves with the exit code, or `timedOut` when it outlives
   * `timeoutMs` (the process is left to the container: the Engine API cannot stop an exec). An
   * aborted signal stops the waiting and throws its reason.
   */
  async exec(
    id: string,
    command: string,
    opts: { timeoutMs: number; onLine: (line: string) => void; signal?: AbortSignal },
  ): Promise<{ exitCode?: number; timedOut: boolean }> {
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
}
