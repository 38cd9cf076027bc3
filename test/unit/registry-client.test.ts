import { createHash, randomBytes } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RegistryClient } from '../../src/registry/client.js';
import { DigestMismatchError, RegistryAuthError, RegistryError, isTransient } from '../../src/registry/errors.js';
import { WHOLE_UPLOAD_MAX } from '../../src/registry/upload.js';

const USER = 'alice';
const PASSWORD = 'correct-horse-battery';
const IDENTITY = 'refresh-me';

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

interface Seen {
  method: string;
  path: string;
  auth: string;
}

async function body(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

function json(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(value));
}

function registryError(res: ServerResponse, status: number, code: string, message: string, headers: Record<string, string> = {}) {
  json(res, status, { errors: [{ code, message }] }, headers);
}

async function listen(server: http.Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A fake distribution registry with token auth, a token endpoint and a "CDN" for blob downloads. */
class FakeRegistry {
  readonly seen: Seen[] = [];
  readonly tokenRequests: { method: string; scopes: string[]; form?: URLSearchParams }[] = [];
  readonly cdnAuth: string[] = [];
  readonly blobs = new Map<string, Buffer>();
  readonly manifests = new Map<string, Buffer>();
  /** What each reference resolves to, as a registry's tag link records it apart from the manifest's bytes. */
  readonly manifestDigests = new Map<string, string>();
  readonly tags = new Map<string, string[]>();
  corruptCdn = false;
  truncateCdn = false;
  mode: 'bearer' | 'basic' = 'bearer';
  host = '';
  private cdnHost = '';
  private readonly grants = new Map<string, string[]>();
  private readonly uploads = new Map<string, Buffer[]>();
  private readonly server = http.createServer((req, res) => void this.handle(req, res).catch((err: Error) => json(res, 500, { details: err.message })));
  private readonly cdn = http.createServer((req, res) => this.serveCdn(req, res));

  async start() {
    this.host = await listen(this.server);
    this.cdnHost = await listen(this.cdn);
  }

  async stop() {
    for (const s of [this.server, this.cdn]) {
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    }
  }

  private async handle(req: IncomingMessage, res: ServerResponse) {
    const url = new URL(req.url ?? '/', `http://${this.host}`);
    if (url.pathname === '/token') return this.token(req, res, url);
    this.seen.push({ method: req.method ?? '', path: url.pathname + url.search, auth: (req.headers.authorization ?? '').split(' ')[0] });
    if (url.pathname === '/v2/') return this.authorized(req, res, []) && json(res, 200, {});
    const m = /^\/v2\/(.+?)\/(blobs|manifests|tags)\/(.*)$/.exec(url.pathname);
    if (!m) return registryError(res, 404, 'NOT_FOUND', 'no route');
    const [, repo, kind, rest] = m;
    const action = ['GET', 'HEAD'].includes(req.method ?? '') ? 'pull' : req.method === 'DELETE' && kind === 'manifests' ? 'delete' : 'pull,push';
    const scopes = [`repository:${repo}:${action}`];
    if (url.searchParams.get('from')) scopes.push(`repository:${url.searchParams.get('from')}:pull`);
    if (!this.authorized(req, res, scopes)) return;
    if (kind === 'tags') return this.listTags(res, repo, url);
    if (kind === 'manifests') return this.manifest(req, res, repo, rest);
    return this.blob(req, res, repo, rest, url);
  }

  private authorized(req: IncomingMessage, res: ServerResponse, scopes: string[]): boolean {
    const header = req.headers.authorization ?? '';
    if (this.mode === 'basic') {
      if (header === `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`) return true;
      registryError(res, 401, 'UNAUTHORIZED', 'authentication required', { 'www-authenticate': 'Basic realm="fake"' });
      return false;
    }
    const granted = this.grants.get(header.replace(/^Bearer /, ''));
    if (granted && scopes.every((s) => granted.includes(s))) return true;
    const challenge = `Bearer realm="http://${this.host}/token",service="fake-registry"${scopes.length ? `,scope="${scopes.join(' ')}"` : ''}`;
    registryError(res, 401, 'UNAUTHORIZED', 'authentication required', { 'www-authenticate': challenge });
    return false;
  }

  private async token(req: IncomingMessage, res: ServerResponse, url: URL) {
    let scopes = url.searchParams.getAll('scope');
    let ok = req.headers.authorization === `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`;
    let form: URLSearchParams | undefined;
    if (req.method === 'POST') {
      form = new URLSearchParams((await body(req)).toString());
      scopes = (form.get('scope') ?? '').split(' ').filter(Boolean);
      ok = form.get('grant_type') === 'refresh_token' && form.get('refresh_token') === IDENTITY;
    }
    this.tokenRequests.push({ method: req.method ?? '', scopes, form });
    if (!ok) return json(res, 401, { details: 'incorrect username or password' });
    const token = randomBytes(8).toString('hex');
    this.grants.set(token, scopes);
    json(res, 200, req.method === 'POST' ? { access_token: token, expires_in: 300 } : { token, expires_in: 300 });
  }

  private listTags(res: ServerResponse, repo: string, url: URL) {
    const all = this.tags.get(repo);
    if (!all) return registryError(res, 404, 'NAME_UNKNOWN', 'repository name not known to registry');
    const n = Number(url.searchParams.get('n') ?? all.length);
    const last = url.searchParams.get('last');
    const start = last ? all.indexOf(last) + 1 : 0;
    const page = all.slice(start, start + n);
    const headers: Record<string, string> = {};
    if (start + n < all.length) headers.link = `</v2/${repo}/tags/list?n=${n}&last=${page[page.length - 1]}>; rel="next"`;
    json(res, 200, { name: repo, tags: page }, headers);
  }

  private async manifest(req: IncomingMessage, res: ServerResponse, repo: string, ref: string) {
    const key = `${repo}:${ref}`;
    if (req.method === 'DELETE') {
      const existed = this.manifests.delete(key);
      return existed ? res.writeHead(202).end() : registryError(res, 404, 'MANIFEST_UNKNOWN', 'manifest unknown');
    }
    if (req.method === 'PUT') {
      const data = await body(req);
      try {
        JSON.parse(data.toString());
      } catch {
        return registryError(res, 400, 'MANIFEST_INVALID', 'manifest invalid');
      }
      this.manifests.set(key, data);
      this.manifests.set(`${repo}:${sha(data)}`, data);
      this.manifestDigests.set(key, sha(data));
      res.writeHead(201, { 'docker-content-digest': sha(data) }).end();
      return;
    }
    const data = this.manifests.get(key);
    if (!data) return registryError(res, 404, 'MANIFEST_UNKNOWN', 'manifest unknown');
    res
      .writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'docker-content-digest': this.manifestDigests.get(key) ?? sha(data) })
      .end(data);
  }

  private async blob(req: IncomingMessage, res: ServerResponse, repo: string, rest: string, url: URL) {
    if (rest === 'uploads/' && req.method === 'POST') return this.startUpload(res, repo, url);
    if (rest.startsWith('uploads/')) return this.continueUpload(req, res, repo, rest.slice(8), url);
    const data = this.blobs.get(rest);
    if (!data) return registryError(res, 404, 'BLOB_UNKNOWN', 'blob unknown to registry');
    if (req.method === 'HEAD') return res.writeHead(200, { 'content-length': data.length }).end();
    res.writeHead(307, { location: `http://${this.cdnHost}/blob/${rest}` }).end();
  }

  private startUpload(res: ServerResponse, repo: string, url: URL) {
    const mount = url.searchParams.get('mount');
    if (mount && this.blobs.has(mount)) return res.writeHead(201, { location: `/v2/${repo}/blobs/${mount}` }).end();
    const id = randomBytes(4).toString('hex');
    this.uploads.set(id, []);
    res.writeHead(202, { location: `/v2/${repo}/blobs/uploads/${id}?_state=s0` }).end();
  }

  private async continueUpload(req: IncomingMessage, res: ServerResponse, repo: string, id: string, url: URL) {
    const parts = this.uploads.get(id);
    if (!parts) return registryError(res, 404, 'BLOB_UPLOAD_UNKNOWN', 'blob upload unknown to registry');
    if (req.method === 'DELETE') {
      this.uploads.delete(id);
      return res.writeHead(204).end();
    }
    parts.push(await body(req));
    if (req.method === 'PATCH') return res.writeHead(202, { location: `/v2/${repo}/blobs/uploads/${id}?_state=s1` }).end();
    const data = Buffer.concat(parts);
    if (sha(data) !== url.searchParams.get('digest')) return registryError(res, 400, 'DIGEST_INVALID', 'provided digest did not match uploaded content');
    this.blobs.set(sha(data), data);
    this.uploads.delete(id);
    res.writeHead(201, { location: `/v2/${repo}/blobs/${sha(data)}` }).end();
  }

  private serveCdn(req: IncomingMessage, res: ServerResponse) {
    this.cdnAuth.push(req.headers.authorization ?? '');
    const data = this.blobs.get(req.url?.replace('/blob/', '') ?? '');
    if (!data) return void res.writeHead(404).end();
    if (this.truncateCdn) {
      res.writeHead(200, { 'content-length': data.length }).write(data.subarray(0, 5));
      return void setTimeout(() => res.destroy(), 20);
    }
    res.writeHead(200, { 'content-length': data.length }).end(this.corruptCdn ? Buffer.from(data.map((b) => b ^ 1)) : data);
  }
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

async function upload(client: RegistryClient, repo: string, data: Buffer, digest = sha(data)) {
  const up = await client.createUpload(repo);
  await pipeline(Readable.from([data.subarray(0, 10), data.subarray(10)]), up.stream);
  await up.finish(digest);
}

describe('RegistryClient against a fake token-auth registry', () => {
  let fake: FakeRegistry;
  let client: RegistryClient;

  beforeEach(async () => {
    fake = new FakeRegistry();
    await fake.start();
    client = new RegistryClient({ host: fake.host, auth: { username: USER, password: PASSWORD } });
  });

  afterEach(async () => {
    await fake.stop();
  });

  it('learns the Bearer challenge once, then sends cached tokens pre-emptively', async () => {
    await client.ping();
    await client.ping();
    expect(fake.seen.map((s) => s.auth)).toEqual(['', 'Bearer', 'Bearer']);
    expect(fake.tokenRequests).toHaveLength(1);
    expect(await client.hasBlob('team/app', sha(Buffer.from('nope')))).toBe(false);
    expect(await client.hasBlob('team/app', sha(Buffer.from('nope')))).toBe(false);
    expect(fake.tokenRequests.map((t) => t.scopes)).toEqual([[], ['repository:team/app:pull']]);
  });

  it('raises RegistryAuthError on a wrong password without printing it', async () => {
    const bad = new RegistryClient({ host: fake.host, auth: { username: USER, password: 'wrong-secret-123' } });
    const err = await bad.ping().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryAuthError);
    const message = (err as Error).message;
    expect(message).toContain(fake.host);
    expect(message).toContain(`docker login ${fake.host}`);
    expect(message).toContain('check registry-username and registry-password or run');
    expect(message).not.toContain('wrong-secret-123');
    expect((err as RegistryAuthError).status).toBe(401);
  });

  it('says when no credentials were given', async () => {
    const anon = new RegistryClient({ host: fake.host });
    await expect(anon.hasBlob('team/app', sha(Buffer.from('x')))).rejects.toThrow(
      /no credentials were given: give registry-username and registry-password or run/,
    );
    const cli = new RegistryClient({ host: fake.host, credentialsHint: '--registry-username with --registry-password-stdin' });
    await expect(cli.hasBlob('team/app', sha(Buffer.from('x')))).rejects.toThrow(
      /no credentials were given: give --registry-username with --registry-password-stdin or run `docker login/,
    );
  });

  it('uses an identity token as an OAuth refresh token', async () => {
    const idc = new RegistryClient({ host: fake.host, auth: { identityToken: IDENTITY } });
    await idc.listTags('team/app');
    const post = fake.tokenRequests.find((t) => t.method === 'POST');
    expect(post?.form?.get('service')).toBe('fake-registry');
    expect(post?.scopes).toEqual(['repository:team/app:pull']);
  });

  it('streams an upload larger than WHOLE_UPLOAD_MAX in one authenticated PATCH and reads it back through a redirect without auth', async () => {
    const data = randomBytes(WHOLE_UPLOAD_MAX + 200_000);
    await upload(client, 'team/app', data);
    const patch = fake.seen.find((s) => s.method === 'PATCH');
    expect(patch?.auth).toBe('Bearer');
    expect(fake.seen.filter((s) => s.method === 'PATCH')).toHaveLength(1);
    expect(await client.hasBlob('team/app', sha(data))).toBe(true);
    const back = await readAll(await client.getBlob('team/app', sha(data)));
    expect(back.equals(data)).toBe(true);
    expect(fake.cdnAuth).toEqual(['']);
  });

  it('sends a blob of up to WHOLE_UPLOAD_MAX whole in the PUT that completes it: POST and PUT, no PATCH', async () => {
    const data = randomBytes(200_000);
    fake.seen.length = 0;
    await upload(client, 'team/app', data);
    const methods = fake.seen.filter((s) => s.path.includes('/blobs/uploads/')).map((s) => s.method);
    // The first POST may be challenged (401) and sent again.
    expect([...new Set(methods)]).toEqual(['POST', 'PUT']);
    expect(methods.filter((m) => m === 'PUT')).toHaveLength(1);
    expect(await client.hasBlob('team/app', sha(data))).toBe(true);
    expect((await readAll(await client.getBlob('team/app', sha(data)))).equals(data)).toBe(true);
  });

  it('sends an empty blob whole too', async () => {
    const data = Buffer.alloc(0);
    const up = await client.createUpload('team/app');
    up.stream.end();
    await up.finish(sha(data));
    expect(fake.seen.some((s) => s.method === 'PATCH')).toBe(false);
    expect(await client.hasBlob('team/app', sha(data))).toBe(true);
  });

  it('fails the blob stream when the content does not match the digest', async () => {
    const data = Buffer.from('some layer bytes');
    await upload(client, 'team/app', data);
    fake.corruptCdn = true;
    await expect(readAll(await client.getBlob('team/app', sha(data)))).rejects.toThrow(/sent content with digest sha256:/);
  });

  it('fails the blob stream with a RegistryError when the connection drops', async () => {
    const data = Buffer.from('some layer bytes');
    await upload(client, 'team/app', data);
    fake.truncateCdn = true;
    const err = await readAll(await client.getBlob('team/app', sha(data))).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect((err as Error).message).toMatch(/team\/app.*get blob sha256:.* failed: cannot talk to 127.0.0.1:\d+ \(aborted\)/);
  });

  it('reports a wrong digest at finish', async () => {
    const data = Buffer.from('abcdefghijklmnopqrstuvwxyz');
    const err = await upload(client, 'team/app', data, sha(Buffer.from('other'))).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect((err as RegistryError).code).toBe('DIGEST_INVALID');
    expect((err as Error).message).toMatch(/team\/app.*finish blob upload.*HTTP 400.*DIGEST_INVALID: provided digest did not match/);
  });

  it('cancels an upload session', async () => {
    const up = await client.createUpload('team/app');
    up.stream.write('partial');
    await up.cancel();
    expect(fake.seen.at(-1)?.method).toBe('DELETE');
  });

  it('mounts blobs across repositories and cancels the session when the mount falls back', async () => {
    const data = Buffer.from('shared layer');
    await upload(client, 'team/one', data);
    expect(await client.mountBlob('team/two', sha(data), 'team/one')).toBe(true);
    expect(await client.mountBlob('team/two', sha(Buffer.from('absent')), 'team/one')).toBe(false);
    expect(fake.seen.at(-1)?.method).toBe('DELETE');
  });

  it('pages through tags and returns [] for an unknown repository', async () => {
    const tags = Array.from({ length: 2345 }, (_, i) => `t${String(i).padStart(5, '0')}`);
    fake.tags.set('team/app', tags);
    expect(await client.listTags('team/app')).toEqual(tags);
    const pages = fake.seen.filter((s) => s.path.includes('/tags/list') && s.auth === 'Bearer').map((s) => s.path);
    expect(pages).toEqual(['/v2/team/app/tags/list?n=1000', '/v2/team/app/tags/list?n=1000&last=t00999', '/v2/team/app/tags/list?n=1000&last=t01999']);
    expect(await client.listTags('team/none')).toEqual([]);
  });

  it('puts and gets manifests, undefined when unknown', async () => {
    const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json' }));
    const digest = await client.putManifest('team/app', 'v1', 'application/vnd.oci.image.manifest.v1+json', body);
    expect(digest).toBe(sha(body));
    const got = await client.getManifest('team/app', 'v1');
    expect(got).toEqual({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest, body });
    expect(await client.getManifest('team/app', 'missing')).toBeUndefined();
  });

  it('refuses a manifest fetched by tag whose bytes are not the digest the tag points at', async () => {
    const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', annotations: { a: '1' } }));
    const digest = await client.putManifest('team/app', 'v1', 'application/vnd.oci.image.manifest.v1+json', body);
    const changed = Buffer.from(body.toString().replace('"1"', '"2"'));
    fake.manifests.set('team/app:v1', changed);
    const err = await client.getManifest('team/app', 'v1').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DigestMismatchError);
    expect(err).toMatchObject({
      expected: digest,
      message: `Registry ${fake.host} (repository team/app): get manifest v1 failed: the registry sent a manifest with digest ${sha(changed)}, expected ${digest}`,
    });
  });

  it('deletes manifests, asking for the delete scope the challenge names', async () => {
    const body = Buffer.from('{"schemaVersion":2}');
    const digest = await client.putManifest('team/app', 'v1', 'application/vnd.oci.image.manifest.v1+json', body);
    await client.deleteManifest('team/app', digest);
    expect(await client.getManifest('team/app', digest)).toBeUndefined();
    expect(fake.tokenRequests.at(-2)?.scopes).toEqual(['repository:team/app:pull,push', 'repository:team/app:delete']);
    await client.deleteManifest('team/app', digest);
  });

  it('does not time out while the caller is slow to write or to read', async () => {
    const slow = new RegistryClient({ host: fake.host, auth: { username: USER, password: PASSWORD }, timeoutMs: 150 });
    // More than an upload holds before it streams: the PATCH is open while the caller waits.
    const data = randomBytes(WHOLE_UPLOAD_MAX + 64 * 1024);
    const up = await slow.createUpload('team/app');
    for (let at = 0; at < WHOLE_UPLOAD_MAX + 1000; at += 1 << 16) {
      await new Promise((r) => up.stream.write(data.subarray(at, Math.min(at + (1 << 16), WHOLE_UPLOAD_MAX + 1000)), r));
    }
    await new Promise((r) => setTimeout(r, 500));
    up.stream.end(data.subarray(WHOLE_UPLOAD_MAX + 1000));
    await up.finish(sha(data));
    const blob = await slow.getBlob('team/app', sha(data));
    await new Promise((r) => setTimeout(r, 500));
    expect((await readAll(blob)).equals(data)).toBe(true);
  });

  it('puts the registry error code and message into a one-line error', async () => {
    const err = await client.putManifest('team/app', 'v1', 'application/json', Buffer.from('not json')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect(err).not.toBeInstanceOf(RegistryAuthError);
    const e = err as RegistryError;
    expect(e.message).toBe(`Registry ${fake.host} (repository team/app): put manifest v1 failed: HTTP 400 (MANIFEST_INVALID: manifest invalid)`);
    expect(e.status).toBe(400);
    expect(e.code).toBe('MANIFEST_INVALID');
  });

  it('validates repository names and digests before any request', async () => {
    await expect(client.hasBlob('Team/App', sha(Buffer.from('x')))).rejects.toThrow(/Invalid repository name "Team\/App"/);
    await expect(client.listTags('a//b')).rejects.toThrow(RegistryError);
    await expect(client.getBlob('team/app', 'sha256:123')).rejects.toThrow(/Invalid digest/);
    expect(fake.seen).toHaveLength(0);
  });

  it('sends Basic credentials after a Basic challenge', async () => {
    fake.mode = 'basic';
    await client.ping();
    await client.listTags('team/none');
    expect(fake.seen.map((s) => s.auth)).toEqual(['', 'Basic', 'Basic']);
  });
});

describe('RegistryClient connection handling', () => {
  it('names the host when the connection is refused', async () => {
    const server = http.createServer();
    const host = await listen(server);
    await new Promise((r) => server.close(r));
    const err = await new RegistryClient({ host, retry: { attempts: 1, delayMs: 0 } }).ping().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect((err as RegistryError).code).toBe('ECONNREFUSED');
    expect((err as Error).message).toContain(`Registry ${host}: ping failed: cannot talk to ${host}`);
  });

  it('times out a registry that stops answering', async () => {
    const server = http.createServer(() => undefined);
    const host = await listen(server);
    try {
      const err = await new RegistryClient({ host, timeoutMs: 200 }).ping().catch((e: unknown) => e);
      expect((err as Error).message).toMatch(/no data for 0.2s/);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  it('names the plain-HTTP input when HTTPS meets a registry that serves HTTP, and the reverse', async () => {
    const server = http.createServer((_req, res) =>
      res.writeHead(400, { 'content-type': 'text/plain' }).end('Client sent an HTTP request to an HTTPS server.\n'),
    );
    const host = await listen(server);
    try {
      const tls = await new RegistryClient({ host, scheme: 'https', insecureHint: '--registry-insecure', retry: { attempts: 1, delayMs: 0 } })
        .ping()
        .catch((e: unknown) => e);
      expect((tls as Error).message).toBe(
        `Registry ${host}: ping failed: cannot talk to ${host} (TLS handshake failed; a registry that serves plain HTTP must be named in --registry-insecure)`,
      );
      const plain = await new RegistryClient({ host, scheme: 'http', retry: { attempts: 1, delayMs: 0 } }).ping().catch((e: unknown) => e);
      expect((plain as Error).message).toMatch(new RegExp(`HTTP 400 .*; it serves HTTPS: remove ${host} from registry-insecure$`));
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  it('rejects a host with a scheme or path', () => {
    expect(() => new RegistryClient({ host: 'https://reg.example' })).toThrow(/Invalid registry host/);
  });
});

describe('RegistryClient retries', () => {
  async function flaky(statuses: number[]): Promise<{ host: string; hits: () => number; close: () => Promise<void> }> {
    let hits = 0;
    const server = http.createServer((req, res) => {
      const status = statuses[hits++] ?? 200;
      if (status === 0) {
        req.socket.destroy();
        return;
      }
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(status === 200 ? '{}' : JSON.stringify({ errors: [{ code: 'UNAVAILABLE', message: 'try later' }] }));
    });
    const host = await listen(server);
    return { host, hits: () => hits, close: () => new Promise((r) => server.close(() => r(undefined))) };
  }
  const retry = { attempts: 4, delayMs: 5 };

  it('retries 5xx, 429 and dropped connections, then succeeds', async () => {
    const f = await flaky([503, 0, 429, 200]);
    try {
      const told: string[] = [];
      await new RegistryClient({ host: f.host, retry, onRetry: (m) => told.push(m) }).ping();
      expect(f.hits()).toBe(4);
      expect(told).toHaveLength(3);
      expect(told[0]).toMatch(/HTTP 503.*; retrying in 0\.0 s \(try 2 of 4\)$/);
      expect(told[2]).toMatch(/HTTP 429.*; retrying in 0\.0 s \(try 4 of 4\)$/);
    } finally {
      await f.close();
    }
  });

  it('gives up after the last attempt with the registry error', async () => {
    const f = await flaky([500, 502, 503, 504, 200]);
    try {
      await expect(new RegistryClient({ host: f.host, retry }).ping()).rejects.toThrow(/HTTP 504.*UNAVAILABLE/);
      expect(f.hits()).toBe(4);
    } finally {
      await f.close();
    }
  });

  it('does not retry other client errors', async () => {
    const f = await flaky([404, 200]);
    try {
      await expect(new RegistryClient({ host: f.host, retry }).ping()).rejects.toThrow(/HTTP 404/);
      expect(f.hits()).toBe(1);
    } finally {
      await f.close();
    }
  });

  it('tells transient failures from the others', () => {
    expect(isTransient(new RegistryError('x', { status: 503 }))).toBe(true);
    expect(isTransient(new RegistryError('x', { code: 'ECONNRESET' }))).toBe(true);
    expect(isTransient(new RegistryError('x', { status: 400 }))).toBe(false);
    expect(isTransient(new RegistryAuthError('x', { status: 401 }))).toBe(false);
    expect(isTransient(new RegistryError('x', { code: 'ETIMEDOUT' }))).toBe(false);
    expect(isTransient(new Error('x'))).toBe(false);
  });
});
