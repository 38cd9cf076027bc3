import { accessSync, constants } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { InputError } from './input-error.js';

/** The paths of a TLS client's files, as `docker --tlsverify` takes them from DOCKER_CERT_PATH. */
export interface TlsFiles {
  ca: string;
  cert: string;
  key: string;
}

/**
 * The Docker engine to talk to, parsed once from `docker-host` (or `--docker-host`), else
 * DOCKER_HOST, else the local socket. `raw` is what was given, safe to show (never a key).
 * - unix: a socket path.
 * - tcp: plain HTTP, or HTTPS with a verified server and a client certificate (`tls`) when
 *   DOCKER_TLS_VERIFY is non-empty (the docker CLI's rule), from DOCKER_CERT_PATH (default ~/.docker).
 * - ssh: one SSH connection per run (engine/ssh-agent.ts: each API connection a channel running
 *   `docker system dial-stdio` on the remote host, which needs the docker CLI there); keys come
 *   from the SSH agent at `agent` (SSH_AUTH_SOCK).
 */
export type EngineAddress =
  | { kind: 'unix'; socketPath: string; raw: string }
  | { kind: 'tcp'; host: string; port: number; tls?: TlsFiles; raw: string }
  | { kind: 'ssh'; host: string; port: number; username?: string; agent: string; raw: string };

export const DEFAULT_ENGINE = 'unix:///var/run/docker.sock';
export const ENGINE_FORMAT = 'unix:///PATH, tcp://HOST:PORT or ssh://[USER@]HOST[:PORT]';

const HOST = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:.]+\])$/;
const TLS_NAMES = ['ca.pem', 'cert.pem', 'key.pem'] as const;

/**
 * The engine address from `override` (the input or flag `name`; '' when not given), else
 * `env.DOCKER_HOST`, else the local socket. TLS files are checked to be readable here, so a bad
 * DOCKER_CERT_PATH is refused before anything is changed. Throws InputError, one line naming
 * where the value came from and what is expected.
 */
export function parseEngineAddress(override: string, env: NodeJS.ProcessEnv, name: string): EngineAddress {
  const given = override.trim();
  const fromEnv = (env.DOCKER_HOST ?? '').trim();
  const raw = given || fromEnv || DEFAULT_ENGINE;
  const origin = given ? name : 'DOCKER_HOST';
  const bad = (why: string) => new InputError(`Invalid ${origin} '${raw}'. Expected ${ENGINE_FORMAT}${why}.`);
  const scheme = /^([a-z+]+):\/\/(.*)$/.exec(raw);
  if (!scheme) throw bad('');
  const [, kind, rest] = scheme;
  if (kind === 'unix') {
    const socketPath = rest || '/var/run/docker.sock';
    if (!isAbsolute(socketPath)) throw bad(': unix:// needs an absolute socket path');
    return { kind: 'unix', socketPath, raw };
  }
  if (kind === 'tcp') {
    const tls = (env.DOCKER_TLS_VERIFY ?? '') !== '' ? tlsFiles(env) : undefined;
    const { host, port } = hostPort(rest, tls ? 2376 : 2375, bad);
    return { kind: 'tcp', host, port, ...(tls ? { tls } : {}), raw };
  }
  if (kind === 'ssh') {
    const at = rest.lastIndexOf('@');
    const username = at === -1 ? undefined : rest.slice(0, at);
    if (username !== undefined && !/^[a-zA-Z0-9._-]+$/.test(username)) throw bad(': the ssh user is a plain name (keys come from the SSH agent)');
    const { host, port } = hostPort(rest.slice(at + 1), 22, bad);
    const agent = (env.SSH_AUTH_SOCK ?? '').trim();
    if (!agent)
      throw new InputError(
        `${origin} '${raw}' needs an SSH agent with the key for ${username ?? 'the user'}@${host}. Expected SSH_AUTH_SOCK (ssh-agent, then ssh-add).`,
      );
    return { kind: 'ssh', host, port, ...(username ? { username } : {}), agent, raw };
  }
  throw bad(`, not ${kind}://`);
}

function hostPort(text: string, defaultPort: number, bad: (why: string) => InputError): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:/]+)(?::(\d{1,5}))?\/?$/.exec(text);
  if (!m || !HOST.test(m[1])) throw bad(': a host name or IP address, then an optional :PORT, and no path');
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  if (port < 1 || port > 65535) throw bad(': a port from 1 to 65535');
  return { host: m[1].replace(/^\[|\]$/g, ''), port };
}

function tlsFiles(env: NodeJS.ProcessEnv): TlsFiles {
  const dir = (env.DOCKER_CERT_PATH ?? '').trim() || join(env.HOME ?? '', '.docker');
  const [ca, cert, key] = TLS_NAMES.map((n) => join(dir, n));
  for (const [file, n] of [
    [ca, 'ca.pem'],
    [cert, 'cert.pem'],
    [key, 'key.pem'],
  ] as const) {
    try {
      accessSync(file, constants.R_OK);
    } catch {
      throw new InputError(
        `DOCKER_TLS_VERIFY is set, but ${n} cannot be read in ${dir} (DOCKER_CERT_PATH). Expected ca.pem, cert.pem and key.pem there, as docker --tlsverify reads them.`,
      );
    }
  }
  return { ca, cert, key };
}

/**
 * `env` with DOCKER_HOST naming the engine in use (when an address was given), so that what is
 * kept per engine (the journals of core/recovery.ts and snapshot/restore-journal.ts) is this engine's.
 */
export function engineEnv(env: NodeJS.ProcessEnv, address: EngineAddress | undefined): NodeJS.ProcessEnv {
  return address ? { ...env, DOCKER_HOST: address.raw } : env;
}

/** Where the engine is, for logs and summaries: the address as given (it holds no secret). */
export function describeAddress(address: EngineAddress): string {
  return address.kind === 'tcp' && address.tls ? `${address.raw} (TLS)` : address.raw;
}
