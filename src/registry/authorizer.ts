import type { IncomingMessage } from 'node:http';
import { parseChallenge, type Bearer, type Challenge, type RegistryAuth } from './auth.js';
import { RegistryError, type RegistryAuthError } from './errors.js';
import type { Call, Op } from './request.js';
import { TOOL } from '../version.js';

/** Bytes of a token response read at most. */
const SMALL_BODY_LIMIT = 1024 * 1024;

/** A bearer token being fetched or fetched, and when it must be fetched again (ms since the epoch). */
interface CachedToken {
  token: Promise<string>;
  expires: number;
}

/** What the Authorizer needs of the transport to ask a token endpoint. */
export interface TokenTransport {
  readonly userAgent: string;
  /** Sends one request as it is (no retry, no Authorization added); resolves with any response. */
  send(call: Call, headers: Record<string, string>): Promise<IncomingMessage>;
  /** The body of `res`, up to `limit` bytes; throws RegistryError when it is larger. */
  readSmall(res: IncomingMessage, op: Op, limit: number): Promise<Buffer>;
  /** The error for a refused request (401/403), with what to do about the credentials. */
  authError(res: IncomingMessage, op: Op): Promise<RegistryAuthError>;
  /** The error for any other unexpected status. */
  httpError(res: IncomingMessage, op: Op): Promise<RegistryError>;
  /** "Registry <host> (repository …): <op>", the start of every message. */
  where(op: Op): string;
}

/**
 * The Authorization header of a registry's requests: none until a 401 challenges, then Basic
 * with the credentials, or Bearer with a token from the challenge's realm (distribution's token
 * authentication spec, docs/spec/auth/token.md; `refresh_token` grant with an identity token,
 * docs/spec/auth/oauth.md). Tokens are cached per realm, service and scope set, for 90% of
 * their `expires_in` (60 s when the endpoint gives none).
 */
export class Authorizer {
  private challenge?: Challenge;
  private readonly tokens = new Map<string, CachedToken>();

  constructor(
    readonly auth: RegistryAuth | undefined,
    private readonly transport: TokenTransport,
  ) {}

  /** Takes the challenge of a 401; returns whether a retry with (new) credentials can help. Adds the challenge's scopes to `call.scopes`. */
  adoptChallenge(res: IncomingMessage, call: Call, sentAuth: boolean): boolean {
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

  /** The Authorization header value for a request needing `scopes`; undefined before any challenge. Throws what fetching a token throws. */
  async authorization(scopes: string[]): Promise<string | undefined> {
    const challenge = this.challenge;
    if (!challenge) return undefined;
    if (challenge.scheme === 'basic') return this.basic();
    return `Bearer ${await this.token(challenge, scopes)}`;
  }

  private basic(): string | undefined {
    const { username, password } = this.auth ?? {};
    if (!username || password === undefined) return undefined;
    return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
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
    const t = this.transport;
    const op = { name: `get token from ${new URL(challenge.realm).host}` };
    const res = await this.requestToken(challenge, scopes, op);
    const status = res.statusCode ?? 0;
    if (status === 401 || status === 403) throw await t.authError(res, op);
    if (status !== 200) throw await t.httpError(res, op);
    const body = await t.readSmall(res, op, SMALL_BODY_LIMIT);
    let parsed: { token?: string; access_token?: string; expires_in?: number };
    try {
      parsed = JSON.parse(body.toString('utf8')) as typeof parsed;
    } catch {
      throw new RegistryError(`${t.where(op)} failed: the token endpoint sent invalid JSON`);
    }
    const token = parsed.token || parsed.access_token;
    if (!token) throw new RegistryError(`${t.where(op)} failed: the token endpoint sent no token`);
    const seconds = typeof parsed.expires_in === 'number' && parsed.expires_in > 0 ? parsed.expires_in : 60;
    return { token, lifetimeMs: seconds * 1000 };
  }

  private requestToken(challenge: Bearer, scopes: string[], op: Op): Promise<IncomingMessage> {
    const url = new URL(challenge.realm);
    const headers: Record<string, string> = { 'user-agent': this.transport.userAgent };
    const identityToken = this.auth?.identityToken;
    if (identityToken) {
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: identityToken, client_id: TOOL.name });
      if (challenge.service) form.set('service', challenge.service);
      if (scopes.length > 0) form.set('scope', scopes.join(' '));
      headers['content-type'] = 'application/x-www-form-urlencoded';
      return this.transport.send({ op, method: 'POST', url, scopes: [], expect: [], body: Buffer.from(form.toString()) }, headers);
    }
    if (challenge.service) url.searchParams.set('service', challenge.service);
    for (const scope of scopes) url.searchParams.append('scope', scope);
    const basic = this.basic();
    if (basic) {
      headers.authorization = basic;
      url.searchParams.set('account', this.auth?.username ?? '');
    }
    return this.transport.send({ op, method: 'GET', url, scopes: [], expect: [] }, headers);
  }
}
