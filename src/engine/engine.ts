import Docker from 'dockerode';
import { describeAddress, type EngineAddress } from '../core/engine-address.js';
import { call } from './call.js';
import { dockerOptions } from './connection.js';
import { EngineError, UnreachableError } from './errors.js';
import { rfc3339Ns } from '../util/rfc3339.js';
import { VolumeNetworkCalls } from './volumes-networks.js';

/** An engine's version (`GET /version`) and identity (`GET /info`: its host name and daemon ID). */
export interface EngineInfo {
  /** The engine's version, as it says it: 20.10.24+dfsg1, 26.1.5. */
  version: string;
  /** The newest Engine API version it speaks: 1.41, 1.45. */
  apiVersion: string;
  os: string;
  arch: string;
  /** The engine's host name (`docker info` Name); absent where an engine did not say. */
  name?: string;
  /** The daemon's ID (`docker info` ID), stable across restarts of one engine. */
  id?: string;
}

/** What an engine can run a container with (`GET /info`: Runtimes and Plugins), for a restore's up-front check. */
export interface EngineFeatures {
  runtimes: string[];
  logDrivers: string[];
  volumeDrivers: string[];
  networkDrivers: string[];
}

/**
 * The one place that talks to the Docker Engine API (dockerode 5, docker-modem 5; Engine 20.10,
 * API 1.41, and later). One class split by concern across src/engine/ (the chain is told in
 * connection.ts): containers.ts, container-io.ts (archives, changes, exec), images.ts,
 * volumes-networks.ts; this file adds connecting and the engine's identity and features. Errors
 * are those of errors.ts, as `call` (call.ts) says.
 */
export class Engine extends VolumeNetworkCalls {
  /** An engine at a parsed address (core/engine-address.ts), whatever DOCKER_HOST says. UnreachableError when the client cannot be set up (a TLS file unreadable, …). */
  static connect(address: EngineAddress): Engine {
    let docker: Docker;
    try {
      docker = new Docker(dockerOptions(address));
    } catch (err) {
      throw new UnreachableError(`Docker engine ${address.raw}: the client could not be set up: ${(err as Error).message}`);
    }
    return new Engine(docker, describeAddress(address));
  }

  /** Version and identity: `GET /version` and `GET /info`. A TLS mismatch (the first call's usual failure) says what to set. */
  async info(signal?: AbortSignal): Promise<EngineInfo> {
    const [v, i] = await Promise.all([
      call('read the engine version', () => this.docker.version(), signal),
      call('read the engine information', () => this.docker.info() as Promise<{ Name?: string; ID?: string }>, signal),
    ]).catch((err: unknown) => {
      throw this.explainUnreachable(this.explainTls(err));
    });
    return { version: v.Version, apiVersion: v.ApiVersion, os: v.Os, arch: v.Arch, ...(i.Name ? { name: i.Name } : {}), ...(i.ID ? { id: i.ID } : {}) };
  }

  /**
   * How the user names another engine, in the words of the interface used (`--docker-host (or
   * DOCKER_HOST)` in the CLI, `the docker-host input (or DOCKER_HOST)` in an action), for the
   * message of an engine that cannot be reached; set by the command that made the Engine.
   */
  addressHint = 'DOCKER_HOST';

  /** An engine not listening where the address says (ENOENT, ECONNREFUSED): the message names the address and how to name another. */
  private explainUnreachable(err: unknown): unknown {
    if (!(err instanceof UnreachableError) || !/^Docker engine unreachable \((ENOENT|ECONNREFUSED)\)/.test(err.message)) return err;
    return new UnreachableError(`${err.message}. Expected a running Docker engine at ${this.address}, or another named with ${this.addressHint}.`);
  }

  private explainTls(err: unknown): unknown {
    if (!(err instanceof EngineError)) return err;
    if (err.message.includes('Client sent an HTTP request to an HTTPS server')) {
      return new UnreachableError(
        `Docker engine ${this.address} answers HTTPS only. Expected DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH with ca.pem, cert.pem and key.pem.`,
      );
    }
    if (this.address.endsWith('(TLS)') && /certificate|tlsv1 alert|ssl|EPROTO|socket hang up|ECONNRESET/i.test(err.message)) {
      return new UnreachableError(
        `Docker engine ${this.address}: the TLS handshake failed (${err.message.replace(/^[^:]*: /, '')}). Expected an engine certificate signed by ca.pem of DOCKER_CERT_PATH, and cert.pem/key.pem the engine accepts.`,
      );
    }
    return err;
  }

  private skew?: Promise<bigint | undefined>;

  /**
   * How far the engine's clock is ahead of this process's (ns; negative when behind), from
   * `GET /info` SystemTime against this host's clock at the middle of the request; asked once per
   * Engine. Undefined when the engine does not say its time. Throws as `call`.
   */
  clockSkewNs(signal?: AbortSignal): Promise<bigint | undefined> {
    this.skew ??= (async () => {
      const before = Date.now();
      const i = (await call('read the engine information', () => this.docker.info(), signal)) as { SystemTime?: string };
      const mid = BigInt(Math.round((before + Date.now()) / 2)) * 1_000_000n;
      const engineNs = typeof i.SystemTime === 'string' ? rfc3339Ns(i.SystemTime) : undefined;
      return engineNs === undefined ? undefined : engineNs - mid;
    })();
    // A failed request is not kept: the next caller asks again.
    this.skew.catch(() => (this.skew = undefined));
    return this.skew;
  }

  /** Where the engine keeps its data on its host (`GET /info` DockerRootDir); undefined where it does not say. */
  async dataRoot(signal?: AbortSignal): Promise<string | undefined> {
    const i = (await call('read the engine information', () => this.docker.info(), signal)) as { DockerRootDir?: string };
    return i.DockerRootDir || undefined;
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
}
