import Docker from 'dockerode';
import { readFileSync } from 'node:fs';
import type { EngineAddress } from '../core/engine-address.js';
import { SshAgent } from './ssh-agent.js';

// docker-modem 5 builds each tcp request's address with url.parse, which Node 24 reports on stderr
// (DEP0169) in the middle of the CLI's output; that one warning is dropped, every other is kept.
const emitWarning = process.emitWarning.bind(process) as (...args: unknown[]) => void;
process.emitWarning = ((warning: unknown, ...rest: unknown[]) => {
  const code = typeof rest[0] === 'object' && rest[0] ? (rest[0] as { code?: string }).code : rest[1];
  if (code !== 'DEP0169') emitWarning(warning, ...rest);
}) as typeof process.emitWarning;

// Every option docker-modem would otherwise take from DOCKER_HOST and DOCKER_CERT_PATH: the parsed address decides alone.
const NO_ENV_DEFAULTS = {
  socketPath: undefined,
  host: undefined,
  port: undefined,
  protocol: undefined,
  username: undefined,
  sshOptions: undefined,
  ca: undefined,
  cert: undefined,
  key: undefined,
};

/**
 * dockerode's options for an address (docker-modem 5: unix socket, http, https with a client
 * certificate; ssh through an `SshAgent`, one SSH connection for every call, with the SSH agent's
 * keys). Reads the TLS files (ca.pem, cert.pem, key.pem; a missing one throws the fs error);
 * they are passed to the client only, never logged.
 */
export function dockerOptions(address: EngineAddress): Docker.DockerOptions {
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

/**
 * The client every engine call goes through, and where the engine is. First link of the chain that
 * builds `Engine` one concern a file (the chain only splits one class across files; no link is
 * used alone): EngineClient ← ContainerCalls (containers.ts) ← ContainerIoCalls (container-io.ts)
 * ← ImageCalls (images.ts) ← VolumeNetworkCalls (volumes-networks.ts) ← Engine (engine.ts).
 */
export class EngineClient {
  protected readonly docker: Docker;

  /**
   * `docker`: the client (dockerode's own defaults from DOCKER_HOST when absent); `address`: what
   * `describe()` says, DOCKER_HOST or the default unix socket when absent.
   */
  constructor(
    docker?: Docker,
    protected readonly address = process.env.DOCKER_HOST || 'unix:///var/run/docker.sock',
  ) {
    this.docker = docker ?? new Docker();
  }

  /**
   * Ends what the client keeps open for the run (the SSH connection of an ssh:// engine); a call
   * after it opens it again. Nothing to do for other engines.
   */
  close(): void {
    const agent = (this.docker.modem as { agent?: unknown }).agent;
    if (agent instanceof SshAgent) agent.close();
  }

  /**
   * True when the engine is reached over ssh:// (this client's SshAgent, or docker-modem's own ssh
   * transport): there each open connection is a channel of an SSH connection, and a session on the remote host.
   */
  protected overSsh(): boolean {
    const modem = this.docker.modem as { agent?: unknown; protocol?: string };
    return modem.agent instanceof SshAgent || modem.protocol === 'ssh';
  }

  /** Where this engine is reached, as given (no secret): unix:///var/run/docker.sock, tcp://host:2376 (TLS). */
  describe(): string {
    return this.address;
  }
}
