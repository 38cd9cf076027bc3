import type { IncomingMessage } from 'node:http';
import type { RegistryAuth } from './auth.js';
import { Authorizer, type TokenTransport } from './authorizer.js';
import { RegistryAuthError, RegistryError, isTransient } from './errors.js';
import { errorDetail, oneLine, open, readUpTo, type Failure } from './http.js';
import type { Call, Op } from './request.js';
import { USER_AGENT } from '../version.js';

/** How often and how patiently a failed request is tried again (only transient failures: errors.ts isTransient). */
export interface RetryOptions {
  /** Tries in all, the first included. */
  attempts: number;
  /** Wait before the second try, in ms; doubled for each one after. */
  delayMs: number;
}

/** How a RegistryClient reaches its registry. */
export interface RegistryClientOptions {
  /** `host[:port]`, no scheme or path. */
  host: string;
  auth?: RegistryAuth;
  /** Default: http for a loopback host (localhost, 127.x.x.x, [::1]), https for any other. */
  scheme?: 'http' | 'https';
  userAgent?: string;
  /** Idle time (no data either way) after which a request fails, in ms; default 300 000. */
  timeoutMs?: number;
  retry?: RetryOptions;
  /** How the caller's interface takes credentials, for the refusal of an unauthenticated request. */
  credentialsHint?: string;
  /** The caller's name for its list of plain-HTTP registries, for a registry that speaks the other scheme. */
  insecureHint?: string;
  /** Told before each retry (what failed, when the next try is), so a slow registry is not silence. */
  onRetry?: (message: string) => void;
}

/** Five tries, 0.5 s before the second, then 1, 2 and 4 s. */
export const DEFAULT_RETRY: RetryOptions = { attempts: 5, delayMs: 500 };
const REDIRECTS = [301, 302, 303, 307, 308];
const MAX_REDIRECTS = 5;
const DEFAULT_TIMEOUT_MS = 300_000;

function isLoopback(host: string): boolean {
  const name = new URL(`http://${host}`).hostname;
  return name === 'localhost' || name === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name);
}

function parseHost(host: string): void {
  let url: URL | undefined;
  try {
    url = new URL(`http://${host}`);
  } catch {
    url = undefined;
  }
  if (!url || url.host === '' || /[/?#@]/.test(host)) {
    throw new RegistryError(`Invalid registry host "${host}": expected host[:port] without a scheme or path`);
  }
}

/**
 * The requests of one registry client: each with its headers and Authorization (authorizer.ts),
 * retried with backoff on transient failures (errors.ts isTransient), failing with a RegistryError
 * (RegistryAuthError for a 401/403 of the registry itself) whose message names the registry, the
 * repository and the operation, and says what to do about credentials or the scheme.
 * The constructor throws RegistryError for a host that is not `host[:port]`.
 */
export class RegistryTransport implements TokenTransport {
  readonly host: string;
  readonly userAgent: string;
  /** Idle timeout of a request, in ms. */
  readonly timeoutMs: number;
  private readonly base: URL;
  private readonly retry: RetryOptions;
  private readonly credentialsHint: string;
  private readonly insecureHint: string;
  private readonly onRetry?: (message: string) => void;
  private readonly authorizer: Authorizer;

  constructor(opts: RegistryClientOptions) {
    parseHost(opts.host);
    this.host = opts.host;
    this.authorizer = new Authorizer(opts.auth, this);
    this.base = new URL(`${opts.scheme ?? (isLoopback(opts.host) ? 'http' : 'https')}://${opts.host}`);
    this.userAgent = opts.userAgent ?? USER_AGENT;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.retry = opts.retry ?? DEFAULT_RETRY;
    this.credentialsHint = opts.credentialsHint ?? 'registry-username and registry-password';
    this.insecureHint = opts.insecureHint ?? 'registry-insecure';
    this.onRetry = opts.onRetry;
  }

  /** `path` (e.g. `/v2/<name>/blobs/<digest>`) at this registry. */
  url(path: string): URL {
    return new URL(path, this.base);
  }

  /** "Registry <host> (repository <repo>): <op>", the start of every message. */
  where(op: Op): string {
    return `Registry ${this.host}${op.repo ? ` (repository ${op.repo})` : ''}: ${op.name}`;
  }

  /** The Location header of `res`, resolved against `base`; throws RegistryError when there is none. */
  location(res: IncomingMessage, base: URL, op: Op): URL {
    const location = res.headers.location;
    if (!location) throw new RegistryError(`${this.where(op)} failed: the registry sent no upload Location`, { status: res.statusCode });
    return new URL(location, base);
  }

  /** The body of `res`, up to `limit` bytes; throws RegistryError when it is larger or the connection fails. */
  async readSmall(res: IncomingMessage, op: Op, limit: number): Promise<Buffer> {
    const { body, truncated } = await readUpTo(res, limit).catch((err: NodeJS.ErrnoException) => {
      throw this.failure(op, this.base)(err);
    });
    if (truncated) throw new RegistryError(`${this.where(op)} failed: the response is larger than ${limit} bytes`);
    return body;
  }

  /** call(), following up to 5 redirects (a blob GET may be sent to storage elsewhere, distribution spec "Pulling blobs"). */
  async followRedirects(call: Call): Promise<IncomingMessage> {
    let current = call;
    for (let hops = 0; ; hops++) {
      const res = await this.call({ ...current, expect: [...current.expect, ...REDIRECTS] });
      if (!REDIRECTS.includes(res.statusCode ?? 0)) return res;
      res.resume();
      if (hops === MAX_REDIRECTS || !res.headers.location) {
        throw new RegistryError(`${this.where(call.op)} failed: too many or invalid redirects`, { status: res.statusCode });
      }
      current = { ...current, url: new URL(res.headers.location, current.url) };
    }
  }

  /**
   * Every request with a buffered body goes through here, so each is retried with backoff
   * on transient failures. A streamed blob upload can't be replayed and is not retried.
   * Resolves with a response whose status is in `call.expect`; the caller reads or resumes it.
   */
  async call(call: Call): Promise<IncomingMessage> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.callOnce(call);
      } catch (err) {
        if (attempt >= this.retry.attempts || !isTransient(err)) throw err;
        const delay = this.retry.delayMs * 2 ** (attempt - 1);
        this.onRetry?.(
          `${err instanceof Error ? err.message : String(err)}; retrying in ${(delay / 1000).toFixed(1)} s (try ${attempt + 1} of ${this.retry.attempts})`,
        );
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  private async callOnce(call: Call): Promise<IncomingMessage> {
    for (let attempt = 0; ; attempt++) {
      const sent = await this.headers(call.url, call.scopes, call.headers);
      const res = await this.send(call, sent);
      const status = res.statusCode ?? 0;
      if (call.expect.includes(status)) return res;
      // A redirect to storage elsewhere (a CDN) is not the registry: its 401/403 is no credentials problem.
      const atRegistry = this.sameOrigin(call.url);
      if (status === 401 && atRegistry && attempt < 2 && this.authorizer.adoptChallenge(res, call, sent.authorization !== undefined)) {
        res.resume();
        continue;
      }
      throw atRegistry && (status === 401 || status === 403) ? await this.authError(res, call.op) : await this.httpError(res, call.op);
    }
  }

  /** Sends `call` once with exactly `headers` (plus its content-length); resolves with any response, rejects with RegistryError when the connection fails. */
  send(call: Call, headers: Record<string, string>): Promise<IncomingMessage> {
    const all = call.body ? { ...headers, 'content-length': String(call.body.length) } : headers;
    const { req, response } = open(call.method, call.url, all, this.timeoutMs, this.failure(call.op, call.url));
    req.end(call.body);
    return response;
  }

  /** The User-Agent, `extra`, and the Authorization for `scopes` when `url` is at this registry. */
  async headers(url: URL, scopes: string[], extra: Record<string, string> = {}): Promise<Record<string, string>> {
    const headers: Record<string, string> = { 'user-agent': this.userAgent, ...extra };
    const authorization = this.sameOrigin(url) ? await this.authorizer.authorization(scopes) : undefined;
    if (authorization) headers.authorization = authorization;
    return headers;
  }

  private sameOrigin(url: URL): boolean {
    return url.origin === this.base.origin;
  }

  /** Turns a socket error of a request to `url` into a RegistryError (naming the insecure list on a TLS mismatch). */
  failure(op: Op, url: URL): Failure {
    return (err) => {
      if (err instanceof RegistryError) return err;
      const tls = /EPROTO|wrong version number/i.test(`${err.code} ${err.message}`);
      const reason = tls ? `TLS handshake failed; a registry that serves plain HTTP must be named in ${this.insecureHint}` : err.message;
      const message = `${this.where(op)} failed: cannot talk to ${url.host} (${reason})`;
      return new RegistryError(oneLine(message), { code: err.code, cause: err });
    };
  }

  /** undefined for a 2xx; otherwise the error for `res`. */
  async rejection(res: IncomingMessage, op: Op): Promise<RegistryError | undefined> {
    const status = res.statusCode ?? 0;
    if (status >= 200 && status < 300) return undefined;
    return status === 401 || status === 403 ? this.authError(res, op) : this.httpError(res, op);
  }

  /** The RegistryError for an unexpected response: its status, the registry's error code and message (distribution spec, "Error Codes"). */
  async httpError(res: IncomingMessage, op: Op): Promise<RegistryError> {
    const detail = await errorDetail(res);
    const https =
      this.base.protocol === 'http:' && res.statusCode === 400 && /HTTPS/.test(detail.text ?? '')
        ? `; it serves HTTPS: remove ${this.host} from ${this.insecureHint}`
        : '';
    const message = `${this.where(op)} failed: HTTP ${res.statusCode}${detail.text ? ` (${detail.text})` : ''}${https}`;
    return new RegistryError(oneLine(message), { status: res.statusCode, code: detail.code });
  }

  /** The RegistryAuthError for a 401/403 of the registry: its message, and what to do about the credentials. */
  async authError(res: IncomingMessage, op: Op): Promise<RegistryAuthError> {
    const detail = await errorDetail(res);
    const hint = this.authorizer.auth
      ? `check ${this.credentialsHint} or run \`docker login ${this.host}\``
      : `no credentials were given: give ${this.credentialsHint} or run \`docker login ${this.host}\``;
    const message = `${this.where(op)} was refused: HTTP ${res.statusCode}${detail.text ? ` (${detail.text})` : ''}; ${hint}`;
    return new RegistryAuthError(oneLine(message), { status: res.statusCode, code: detail.code });
  }
}
