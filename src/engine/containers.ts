import type Docker from 'dockerode';
import type { Readable } from 'node:stream';
import { call, unlessMissing } from './call.js';
import { EngineClient } from './connection.js';
import { EngineError, NotFoundError } from './errors.js';
import { unwatched, watchOf, type ContainerWatch } from './events.js';
import { ownName } from './names.js';

/** `GET /containers/{id}/json` as dockerode types it. */
export type ContainerInspect = Docker.ContainerInspectInfo;
/** One entry of `GET /containers/json` as dockerode types it. */
export type ContainerSummary = Docker.ContainerInfo;
/** The body of `POST /containers/create` (and its `name` query parameter) as dockerode types it. */
export type CreateContainerOptions = Docker.ContainerCreateOptions;
/** A container's settings on one network (`NetworkSettings.Networks[name]`, `EndpointConfig` of a connect). */
export type EndpointSettings = Docker.EndpointSettings;

/**
 * The calls about containers themselves: listing, inspecting, creating, their state (pause, start,
 * stop, wait) and removal. Part of `Engine` (connection.ts tells the chain). Each throws as `call`
 * (call.ts) says, unless its doc says otherwise.
 */
/** A container's name or ID as the engine takes it in a request path (moby daemon/names: validContainerNamePattern). */
const CONTAINER_REF = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

export class ContainerCalls extends EngineClient {
  /** Every container, in any state (`GET /containers/json?all=1`). */
  listContainers(signal?: AbortSignal): Promise<ContainerSummary[]> {
    return call('list containers', () => this.docker.listContainers({ all: true }), signal);
  }

  /**
   * `GET /containers/{id}/json`; NotFoundError when there is no such container (the engine also
   * matches an ID prefix). A name may come as the engine writes it in HostConfig (`/db`, a legacy
   * link's target): its leading slash is dropped. Anything else that is not a container's name or
   * ID (moby daemon/names validContainerNamePattern `[a-zA-Z0-9][a-zA-Z0-9_.-]*`) is NotFoundError
   * at once: a `/` inside it would change the request's path (the engine answers `//db` with a
   * redirect that the client follows to a host named `containers`).
   */
  inspectContainer(idOrName: string, signal?: AbortSignal): Promise<ContainerInspect> {
    const ref = idOrName.replace(/^\//, '');
    if (!CONTAINER_REF.test(ref)) return Promise.reject(new NotFoundError(`inspect container ${idOrName}: not a container name or ID`));
    return call(`inspect container ${ref}`, () => this.docker.getContainer(ref).inspect(), signal);
  }

  /** The container with exactly this name (the engine alone would also match an ID prefix); undefined when there is none. */
  async findContainer(name: string): Promise<ContainerInspect | undefined> {
    const info = await unlessMissing(this.inspectContainer(name));
    return info?.Name === `/${name}` ? info : undefined;
  }

  /** Bytes of the container's writable layer (`SizeRw` of `GET /containers/{id}/json?size=1`); undefined where the engine does not say. */
  async writableLayerSize(id: string, signal?: AbortSignal): Promise<number | undefined> {
    const container = this.docker.getContainer(id) as unknown as { inspect(o: { size: boolean }): Promise<{ SizeRw?: number }> };
    const info = await call(`inspect container ${id}`, () => container.inspect({ size: true }), signal);
    return info.SizeRw;
  }

  /** Containers, in any state, that mount the volume (the engine's `volume` filter of `GET /containers/json`). */
  async volumeUsers(volume: string): Promise<Array<{ id: string; name: string }>> {
    const list = await call(`list containers using volume ${volume}`, () => this.docker.listContainers({ all: true, filters: { volume: [volume] } }));
    return list.map((c) => ({ id: c.Id, name: ownName(c.Names, c.Id) }));
  }

  /** Containers, in any state, carrying the label `key` (any value): ID, own name and the label's value. */
  async containersLabelled(key: string): Promise<Array<{ id: string; name: string; value: string }>> {
    const list = await call(`list containers labelled ${key}`, () => this.docker.listContainers({ all: true, filters: { label: [key] } }));
    return list.map((c) => ({ id: c.Id, name: ownName(c.Names, c.Id), value: c.Labels?.[key] ?? '' }));
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

  /** `POST /containers/create`; returns the new container's ID. ConflictError when the name is taken. */
  async createContainer(opts: CreateContainerOptions): Promise<string> {
    const c = await call(`create container ${opts.name ?? ''}`.trim(), () => this.docker.createContainer(opts));
    return c.id;
  }

  /** `POST /containers/{id}/pause` (freezes its processes); ConflictError when it is not running. */
  async pause(id: string): Promise<void> {
    await call(`pause container ${id}`, () => this.docker.getContainer(id).pause());
  }

  /** `POST /containers/{id}/unpause`; ConflictError when it is not paused. */
  async unpause(id: string): Promise<void> {
    await call(`unpause container ${id}`, () => this.docker.getContainer(id).unpause());
  }

  /** Starts a container (`POST /containers/{id}/start`); one already running is left as it is (the engine's 304). */
  async start(id: string): Promise<void> {
    try {
      await call(`start container ${id}`, () => this.docker.getContainer(id).start());
    } catch (err) {
      if (!(err instanceof EngineError && err.statusCode === 304)) throw err;
    }
  }

  /**
   * Stops a container (`POST /containers/{id}/stop?t=`): its stop signal, then SIGKILL after
   * `timeoutSeconds` (s; the container's own StopTimeout, else 10 s, when absent). One already
   * stopped is left as it is (the engine's 304): false then, true when this call stopped it.
   */
  async stop(id: string, timeoutSeconds?: number): Promise<boolean> {
    try {
      await call(`stop container ${id}`, () => this.docker.getContainer(id).stop({ t: timeoutSeconds }));
      return true;
    } catch (err) {
      if (!(err instanceof EngineError && err.statusCode === 304)) throw err;
      return false;
    }
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

  /**
   * `DELETE /containers/{id}`: `force` kills it first when it runs, `volumes` also removes its
   * anonymous volumes (both false when absent). NotFoundError when it is gone, ConflictError when it runs without `force`.
   */
  async removeContainer(id: string, opts: { force?: boolean; volumes?: boolean } = {}): Promise<void> {
    await call(`remove container ${id}`, () => this.docker.getContainer(id).remove({ force: opts.force ?? false, v: opts.volumes ?? false }));
  }

  /**
   * Watches the container's events of these `actions` (`start`, `pause`, `die`, …) from now until
   * `close()`: one `GET /events` stream with the filters `container`, `type: container` and `event`
   * (Engine API 1.24 and later; the engine sends each event as one line of JSON). Never throws: a
   * stream that cannot be opened (within WATCH_OPEN_TIMEOUT_MS) or fails says so (`ready`,
   * `intact`). Over ssh:// nothing is watched (`unwatched`): each stream would hold an SSH channel
   * and a remote `docker system dial-stdio` of its own. The caller closes it in every path: an open
   * stream keeps a connection, and the process, alive.
   */
  watchContainer(id: string, actions: readonly string[]): ContainerWatch {
    if (this.overSsh()) return unwatched();
    const abort = new AbortController();
    const filters = JSON.stringify({ container: [id], type: ['container'], event: actions });
    // docker-modem 5 takes abortSignal (dockerode's types do not say so): it cancels the request and destroys its response.
    const options = { filters, abortSignal: abort.signal } as Docker.GetEventsOptions;
    const open = Promise.resolve().then(() => this.docker.getEvents(options) as Promise<unknown> as Promise<Readable>);
    return watchOf(open, abort);
  }

  /** `POST /containers/{id}/rename?name=`; ConflictError when the name is taken. */
  async renameContainer(id: string, name: string): Promise<void> {
    await call(`rename container ${id} to ${name}`, () => this.docker.getContainer(id).rename({ name }));
  }
}
