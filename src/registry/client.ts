import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { DIGEST_RULE, isDigest, sha256Digest } from '../oci/digest.js';
import { MANIFEST_MEDIA_TYPES } from '../oci/media-types.js';
import { REPOSITORY_RULE, isRepositoryPath, isTag } from '../oci/reference.js';
import { parseChallenge, pullScope, pushScope, type Bearer, type Challenge, type RegistryAuth } from './auth.js';
import { DigestMismatchError, RegistryAuthError, RegistryError, isTransient } from './errors.js';
import { EMPTY, errorDetail, manifestMediaType, nextLink, oneLine, open, readUpTo, verified, type Failure } from './http.js';
import { StreamingUpload, type BlobUpload } from './upload.js';
import { TOOL, USER_AGENT } from '../version.js';

export interface RetryOptions {
  /** Tries in all, the first included. */
  attempts: number;
  /** Wait before the second try; doubled for each one after. */
  delayMs: number;
}

export interface RegistryClientOptions {
  host: string;
  auth?: RegistryAuth;
  scheme?: 'http' | 'https';
  userAgent?: string;
  timeoutMs?: number;
  retry?: RetryOptions;
  /** How the caller's interface takes credentials, for the refusal of an unauthenticated request. */
  credentialsHint?: string;
  /** The caller's name for its list of plain-HTTP registries, for a registry that speaks the other scheme. */
  insecureHint?: string;
  /** Told before each retry (what failed, when the next try is), so a slow registry is not silence. */
  onRetry?: (message: string) => void;
}

export const DEFAULT_RETRY: RetryOptions = { attempts: 5, delayMs: 500 };
const REDIRECTS = [301, 302, 303, 307, 308];
const MAX_REDIRECTS = 5;
/** The largest manifest this client reads back, in bytes. */
export const MANIFEST_LIMIT = 4 * 1024 * 1024;
const SMALL_BODY_LIMIT = 1024 * 1024;
const DEFAULT_TIMEOUT_MS = 300_000;

interface Op {
  name: string;
  repo?: string;
}

interface Call {
  op: Op;
  method: string;
  url: URL;
  scopes: string[];
  expect: number[];
  headers?: Record<string, string>;
  body?: Buffer;
}

/** A bearer token being fetched or fetched, and when it must be fetched again (ms since the epoch). */
interface CachedToken {
  token: Promise<string>;
  expires: number;
}

function checkRepo(repo: string): void {
  if (!isRepositoryPath(repo)) throw new RegistryError(`Invalid repository name "${repo}": expected ${REPOSITORY_RULE}`);
}

function checkDigest(digest: string): void {
  if (!isDigest(digest)) throw new RegistryError(`Invalid digest "${digest}": expected ${DIGEST_RULE}`);
}

function checkReference(reference: string): void {
  if (!isDigest(reference) && !isTag(reference)) {
    throw new RegistryError(`Invalid tag or digest "${reference}"`);
  }
}

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

export class RegistryClient {
  readonly host: string;
  private readonly auth?: RegistryAuth;
  private readonly base: URL;
  private readonly userAgent: string;
  private readonly timeoutMs: number;
  private readonly retry: RetryOptions;
  private readonly credentialsHint: string;
  private readonly insecureHint: string;
  private readonly onRetry?: (message: string) => void;
  private challenge?: Challenge;
  private readonly tokens = new Map<string, CachedToken>();

  constructor(opts: RegistryClientOptions) {
    parseHost(opts.host);
    this.host = opts.host;
    this.auth = opts.auth;
    this.base = new URL(`${opts.scheme ?? (isLoopback(opts.host) ? 'http' : 'https')}://${opts.host}`);
    this.userAgent = opts.userAgent ?? USER_AGENT;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.retry = opts.retry ?? DEFAULT_RETRY;
    this.credentialsHint = opts.credentialsHint ?? 'registry-username and registry-password';
    this.insecureHint = opts.insecureHint ?? 'registry-insecure';
    this.onRetry = opts.onRetry;
  }

  async ping(): Promise<void> {
    const res = await this.call({ op: { name: 'ping' }, method: 'GET', url: this.url('/v2/'), scopes: [], expect: [200] });
    res.resume();
  }

  async hasBlob(repo: string, digest: string): Promise<boolean> {
    checkRepo(repo);
    checkDigest(digest);
    const op = { name: `check blob ${digest}`, repo };
    const url = this.url(`/v2/${repo}/blobs/${digest}`);
    const res = await this.call({ op, method: 'HEAD', url, scopes: [pullScope(repo)], expect: [200, 404] });
    res.resume();
    return res.statusCode === 200;
  }

  async mountBlob(repo: string, digest: string, fromRepo: string): Promise<boolean> {
    checkRepo(repo);
    checkRepo(fromRepo);
    checkDigest(digest);
    const op = { name: `mount blob ${digest} from ${fromRepo}`, repo };
    const url = this.url(`/v2/${repo}/blobs/uploads/`);
    url.searchParams.set('mount', digest);
    url.searchParams.set('from', fromRepo);
    const scopes = [pushScope(repo), pullScope(fromRepo)];
    const res = await this.call({ op, method: 'POST', url, scopes, body: EMPTY, expect: [201, 202] });
    res.resume();
    if (res.statusCode === 201) return true;
    const session = res.headers.location;
    if (session) await this.discardUpload(repo, new URL(session, url), scopes).catch(() => undefined);
    return false;
  }

  async createUpload(repo: string): Promise<BlobUpload> {
    checkRepo(repo);
    const scopes = [pushScope(repo)];
    const start = this.url(`/v2/${repo}/blobs/uploads/`);
    const op = { name: 'start blob upload', repo };
    const res = await this.call({ op, method: 'POST', url: start, scopes, body: EMPTY, expect: [202] });
    res.resume();
    const location = this.location(res, start, op);
    const patchOp = { name: 'upload blob', repo };
    const headers = await this.headers(location, scopes, { 'content-type': 'application/octet-stream' });
    const pending = open('PATCH', location, headers, this.timeoutMs, this.failure(patchOp, location));
    return new StreamingUpload(pending, location, {
      rejection: (patch) => this.rejection(patch, patchOp),
      commit: (next, digest) => this.commitUpload(repo, next, digest, scopes),
      discard: () => this.discardUpload(repo, location, scopes),
    });
  }

  async getBlob(repo: string, digest: string): Promise<Readable> {
    checkRepo(repo);
    checkDigest(digest);
    const op = { name: `get blob ${digest}`, repo };
    const url = this.url(`/v2/${repo}/blobs/${digest}`);
    const res = await this.followRedirects({ op, method: 'GET', url, scopes: [pullScope(repo)], expect: [200] });
    const mismatch = (actual: string) => new DigestMismatchError(`${this.where(op)} failed: the registry sent content with digest ${actual}`, digest);
    return verified(res, digest, this.failure(op, url), mismatch);
  }

  async putManifest(repo: string, reference: string, mediaType: string, body: Buffer): Promise<string> {
    checkRepo(repo);
    checkReference(reference);
    const op = { name: `put manifest ${reference}`, repo };
    const url = this.url(`/v2/${repo}/manifests/${reference}`);
    const headers = { 'content-type': mediaType };
    const res = await this.call({ op, method: 'PUT', url, scopes: [pushScope(repo)], headers, body, expect: [200, 201] });
    res.resume();
    const digest = res.headers['docker-content-digest'];
    return typeof digest === 'string' && isDigest(digest) ? digest : sha256Digest(body);
  }

  async getManifest(
    repo: string,
    reference: string,
    accept: string[] = MANIFEST_MEDIA_TYPES,
  ): Promise<{ mediaType: string; digest: string; body: Buffer } | undefined> {
    checkRepo(repo);
    checkReference(reference);
    const op = { name: `get manifest ${reference}`, repo };
    const url = this.url(`/v2/${repo}/manifests/${reference}`);
    const headers = { accept: accept.join(', ') };
    const res = await this.call({ op, method: 'GET', url, scopes: [pullScope(repo)], headers, expect: [200, 404] });
    if (res.statusCode === 404) {
      res.resume();
      return undefined;
    }
    const body = await this.readSmall(res, op, MANIFEST_LIMIT);
    const digest = sha256Digest(body);
    // By tag, the registry's Docker-Content-Digest is the digest the tag points at (distribution spec, "Pulling manifests").
    const header = res.headers['docker-content-digest'];
    const expected = isDigest(reference) ? reference : typeof header === 'string' && isDigest(header) ? header : digest;
    if (digest !== expected) {
      throw new DigestMismatchError(`${this.where(op)} failed: the registry sent a manifest with digest ${digest}, expected ${expected}`, expected);
    }
    return { mediaType: manifestMediaType(res, body), digest, body };
  }

  /** Resolves when the manifest is gone, including when it was already gone. */
  async deleteManifest(repo: string, digest: string): Promise<void> {
    checkRepo(repo);
    checkDigest(digest);
    const op = { name: `delete manifest ${digest}`, repo };
    const url = this.url(`/v2/${repo}/manifests/${digest}`);
    const res = await this.call({ op, method: 'DELETE', url, scopes: [pushScope(repo)], expect: [200, 202, 204, 404] });
    res.resume();
  }

  async listTags(repo: string): Promise<string[]> {
    checkRepo(repo);
    const op = { name: 'list tags', repo };
    const tags: string[] = [];
    const seen = new Set<string>();
    let url: URL | undefined = this.url(`/v2/${repo}/tags/list?n=1000`);
    while (url && !seen.has(url.href)) {
      seen.add(url.href);
      const res = await this.call({ op, method: 'GET', url, scopes: [pullScope(repo)], expect: [200, 404] });
      if (res.statusCode === 404) {
        res.resume();
        break;
      }
      tags.push(...(await this.readTags(res, op)));
      url = nextLink(res.headers.link, url);
    }
    return tags;
  }

  private url(path: string): URL {
    return new URL(path, this.base);
  }

  private sameOrigin(url: URL): boolean {
    return url.origin === this.base.origin;
  }

  private where(op: Op): string {
    return `Registry ${this.host}${op.repo ? ` (repository ${op.repo})` : ''}: ${op.name}`;
  }

  private location(res: IncomingMessage, base: URL, op: Op): URL {
    const location = res.headers.location;
    if (!location) throw new RegistryError(`${this.where(op)} failed: the registry sent no upload Location`, { status: res.statusCode });
    return new URL(location, base);
  }

  private async readSmall(res: IncomingMessage, op: Op, limit: number): Promise<Buffer> {
    const { body, truncated } = await readUpTo(res, limit).catch((err: NodeJS.ErrnoException) => {
      throw this.failure(op, this.base)(err);
    });
    if (truncated) throw new RegistryError(`${this.where(op)} failed: the response is larger than ${limit} bytes`);
    return body;
  }

  private async readTags(res: IncomingMessage, op: Op): Promise<string[]> {
    const body = await this.readSmall(res, op, 64 * 1024 * 1024);
    try {
      const tags = (JSON.parse(body.toString('utf8')) as { tags?: unknown }).tags;
      return Array.isArray(tags) ? tags.filter((t): t is string => typeof t === 'string') : [];
    } catch {
      throw new RegistryError(`${this.where(op)} failed: the registry sent invalid JSON`);
    }
  }

  private async commitUpload(repo: string, location: URL, digest: string, scopes: string[]): Promise<void> {
    const url = new URL(location);
    url.searchParams.set('digest', digest);
    const op = { name: `finish blob upload ${digest}`, repo };
    const res = await this.call({ op, method: 'PUT', url, scopes, body: EMPTY, expect: [201] });
    res.resume();
  }

  private async discardUpload(repo: string, location: URL, scopes: string[]): Promise<void> {
    const op = { name: 'cancel blob upload', repo };
    const res = await this.call({ op, method: 'DELETE', url: location, scopes, expect: [200, 202, 204, 404] });
    res.resume();
  }

  private async followRedirects(call: Call): Promise<IncomingMessage> {
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
   */
  private async call(call: Call): Promise<IncomingMessage> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.callOnce(call);
      } catch (err) {
        if (attempt >= this.retry.attempts || !isTransient(err)) throw err;
        const delay = this.retry.delayMs * 2 ** (attempt - 1);
        this.onRetry?.(`${err instanceof Error ? err.message : String(err)}; retrying in ${(delay / 1000).toFixed(1)} s (try ${attempt + 1} of ${this.retry.attempts})`);
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
      if (status === 401 && atRegistry && attempt < 2 && this.adoptChallenge(res, call, sent.authorization !== undefined)) {
        res.resume();
        continue;
      }
      throw atRegistry && (status === 401 || status === 403) ? await this.authError(res, call.op) : await this.httpError(res, call.op);
    }
  }

  private send(call: Call, headers: Record<string, string>): Promise<IncomingMessage> {
    const all = call.body ? { ...headers, 'content-length': String(call.body.length) } : headers;
    const { req, response } = open(call.method, call.url, all, this.timeoutMs, this.failure(call.op, call.url));
    req.end(call.body);
    return response;
  }

  private async headers(url: URL, scopes: string[], extra: Record<string, string> = {}): Promise<Record<string, string>> {
    const headers: Record<string, string> = { 'user-agent': this.userAgent, ...extra };
    const authorization = this.sameOrigin(url) ? await this.authorization(scopes) : undefined;
    if (authorization) headers.authorization = authorization;
    return headers;
  }

  /** Takes the challenge of a 401; returns whether a retry with (new) credentials can help. */
  private adoptChallenge(res: IncomingMessage, call: Call, sentAuth: boolean): boolean {
    const challenge = parseChallenge(res.headers['www-authenticate']);
    if (!challenge) return false;
    if (challenge.scheme === 'basic') {
      this.challenge = challenge;
      return !sentAuth && this.basic() !== undefined;
    }
    this.tokens.delete(this.tokenKey(challenge, call.scopes));
    this.challenge = { scheme: 'bearer', realm: challenge.realm, service: challenge.service };
    const extra = challenge.scope?.split(' ').filter((s) => s && !call.scopes.includes(s)) ?? [];
    call.scopes = [...call.scopes, ...extra];
    return true;
  }

  private basic(): string | undefined {
    const { username, password } = this.auth ?? {};
    if (!username || password === undefined) return undefined;
    return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
  }

  private async authorization(scopes: string[]): Promise<string | undefined> {
    const challenge = this.challenge;
    if (!challenge) return undefined;
    if (challenge.scheme === 'basic') return this.basic();
    return `Bearer ${await this.token(challenge, scopes)}`;
  }

  private tokenKey(challenge: Bearer, scopes: string[]): string {
    return [challenge.realm, challenge.service ?? '', ...[...scopes].sort()].join(' ');
  }

  private token(challenge: Bearer, scopes: string[]): Promise<string> {
    const key = this.tokenKey(challenge, scopes);
    const cached = this.tokens.get(key);
    if (cached && cached.expires > Date.now()) return cached.token;
    const entry: CachedToken = { token: Promise.resolve(''), expires: Infinity };
    entry.token = this.fetchToken(challenge, scopes).then(
      ({ token, lifetimeMs }) => {
        entry.expires = Date.now() + lifetimeMs * 0.9;
        return token;
      },
      (err: unknown) => {
        if (this.tokens.get(key) === entry) this.tokens.delete(key);
        throw err;
      },
    );
    this.tokens.set(key, entry);
    return entry.token;
  }

  private async fetchToken(challenge: Bearer, scopes: string[]): Promise<{ token: string; lifetimeMs: number }> {
    const op = { name: `get token from ${new URL(challenge.realm).host}` };
    const res = await this.requestToken(challenge, scopes, op);
    const status = res.statusCode ?? 0;
    if (status === 401 || status === 403) throw await this.authError(res, op);
    if (status !== 200) throw await this.httpError(res, op);
    const body = await this.readSmall(res, op, SMALL_BODY_LIMIT);
    let parsed: { token?: string; access_token?: string; expires_in?: number };
    try {
      parsed = JSON.parse(body.toString('utf8')) as typeof parsed;
    } catch {
      throw new RegistryError(`${this.where(op)} failed: the token endpoint sent invalid JSON`);
    }
    const token = parsed.token || parsed.access_token;
    if (!token) throw new RegistryError(`${this.where(op)} failed: the token endpoint sent no token`);
    const seconds = typeof parsed.expires_in === 'number' && parsed.expires_in > 0 ? parsed.expires_in : 60;
    return { token, lifetimeMs: seconds * 1000 };
  }

  private requestToken(challenge: Bearer, scopes: string[], op: Op): Promise<IncomingMessage> {
    const url = new URL(challenge.realm);
    const headers: Record<string, string> = { 'user-agent': this.userAgent };
    const identityToken = this.auth?.identityToken;
    if (identityToken) {
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: identityToken, client_id: TOOL.name });
      if (challenge.service) form.set('service', challenge.service);
      if (scopes.length > 0) form.set('scope', scopes.join(' '));
      headers['content-type'] = 'application/x-www-form-urlencoded';
      return this.send({ op, method: 'POST', url, scopes: [], expect: [], body: Buffer.from(form.toString()) }, headers);
    }
    if (challenge.service) url.searchParams.set('service', challenge.service);
    for (const scope of scopes) url.searchParams.append('scope', scope);
    const basic = this.basic();
    if (basic) {
      headers.authorization = basic;
      url.searchParams.set('account', this.auth?.username ?? '');
    }
    return this.send({ op, method: 'GET', url, scopes: [], expect: [] }, headers);
  }

  private failure(op: Op, url: URL): Failure {
    return (err) => {
      if (err instanceof RegistryError) return err;
      const tls = /EPROTO|wrong version number/i.test(`${err.code} ${err.message}`);
      const reason = tls ? `TLS handshake failed; a registry that serves plain HTTP must be named in ${this.insecureHint}` : err.message;
      const message = `${this.where(op)} failed: cannot talk to ${url.host} (${reason})`;
      return new RegistryError(oneLine(message), { code: err.code, cause: err });
    };
  }

  private async rejection(res: IncomingMessage, op: Op): Promise<RegistryError | undefined> {
    const status = res.statusCode ?? 0;
    if (status >= 200 && status < 300) return undefined;
    return status === 401 || status === 403 ? this.authError(res, op) : this.httpError(res, op);
  }

  private async httpError(res: IncomingMessage, op: Op): Promise<RegistryError> {
    const detail = await errorDetail(res);
    const https = this.base.protocol === 'http:' && res.statusCode === 400 && /HTTPS/.test(detail.text ?? '') ? `; it serves HTTPS: remove ${this.host} from ${this.insecureHint}` : '';
    const message = `${this.where(op)} failed: HTTP ${res.statusCode}${detail.text ? ` (${detail.text})` : ''}${https}`;
    return new RegistryError(oneLine(message), { status: res.statusCode, code: detail.code });
  }

  private async authError(res: IncomingMessage, op: Op): Promise<RegistryAuthError> {
    const detail = await errorDetail(res);
    const hint = this.auth
      ? `check ${this.credentialsHint} or run \`docker login ${this.host}\``
      : `no credentials were given: give ${this.credentialsHint} or run \`docker login ${this.host}\``;
    const message = `${this.where(op)} was refused: HTTP ${res.statusCode}${detail.text ? ` (${detail.text})` : ''}; ${hint}`;
    return new RegistryAuthError(oneLine(message), { status: res.statusCode, code: detail.code });
  }
}

