import { createHash, createHmac, randomBytes, randomUUID, timingSafeEqual, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { once } from 'node:events';
import { pipeline } from 'node:stream/promises';

/** Knobs a test flips while the service runs. */
export interface ArtifactFaults {
  /** The next N Twirp calls answer 500 `internal`. */
  twirp500Times: number;
  /** While set, every Twirp call answers this status (`unauthenticated` / `permission_denied`). */
  twirpStatus?: 401 | 403;
  /** Reset the socket of a block upload once its body passes this many bytes (blocks are ≤ 8 MiB). */
  cutUploadAfterBytes?: number;
  /** How many block uploads to cut; every one while undefined. */
  cutUploadTimes?: number;
  /** Serve a blob with one byte flipped when this says so for the artifact's name. */
  corruptBlob?: (name: string) => boolean;
}

export interface ArtifactServiceOptions {
  faults?: Partial<ArtifactFaults>;
  /** The token the REST API accepts (`GITHUB_TOKEN` in `env()`); random when absent. */
  apiToken?: string;
}

export interface RunSpec {
  runId: number;
  jobId?: string;
  /** owner/name; `octo-org/octo-repo` when absent. */
  repository?: string;
  attempt?: number;
}

export interface ArtifactRecord {
  id: number;
  name: string;
  runId: number;
  repository: string;
  size: number;
  finalized: boolean;
  deleted: boolean;
  digest?: string;
  contentType?: string;
  /** As CreateArtifact asked (retention days); undefined: the repository's setting. */
  expiresAt?: string;
}

export interface RequestRecord {
  method: string;
  /** `twirp:<Method>`, `blob:block`, `blob:blocklist`, `blob:get`, `rest:<what>`, `unknown`. */
  kind: string;
  /** 0 when the service reset the connection. */
  status: number;
}

export interface RunningArtifactService {
  url: string;
  /** Where the service keeps what was uploaded (to look at the stored bytes). */
  dir: string;
  apiToken: string;
  env(run: RunSpec): Record<string, string>;
  artifacts(): ArtifactRecord[];
  requests(): RequestRecord[];
  faults: ArtifactFaults;
  stop(): Promise<void>;
}

interface Run {
  runId: number;
  backendId: string;
  repository: string;
  jobs: Map<string, string>;
}

interface Artifact {
  id: number;
  name: string;
  run: Run;
  jobBackendId: string;
  blobKey: string;
  uploadSig: string;
  downloadSig: string;
  createdAt: Date;
  expiresAt?: string;
  contentType?: string;
  committed?: { size: number; digest: string };
  finalized: boolean;
  deleted: boolean;
}

interface Scope {
  runBackendId: string;
  jobBackendId: string;
}

type Json = Record<string, unknown>;

const SERVICE = 'github.actions.results.api.v1.ArtifactService';
const TWIRP_ROUTE = /^\/twirp\/github\.actions\.results\.api\.v1\.ArtifactService\/(\w+)$/;
const ACCOUNT = 'actionsresults';
const CONTAINER = 'artifacts';
const BLOB_ROUTE = new RegExp(`^/${ACCOUNT}/${CONTAINER}/([0-9a-f-]{36})$`);
const RUN_ARTIFACTS_ROUTE = /^\/repos\/([^/]+)\/([^/]+)\/actions\/runs\/(\d+)\/artifacts$/;
const ARTIFACT_ROUTE = /^\/repos\/([^/]+)\/([^/]+)\/actions\/artifacts\/(\d+)(\/zip)?$/;
const INVALID_NAME_CHARS = ['"', ':', '<', '>', '|', '*', '?', '\r', '\n', '\\', '/'];
const TWIRP_STATUS: Record<string, number> = {
  invalid_argument: 400,
  malformed: 400,
  unauthenticated: 401,
  permission_denied: 403,
  not_found: 404,
  bad_route: 404,
  already_exists: 409,
  failed_precondition: 412,
  internal: 500,
};

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const twirpError = (code: string, msg: string) => new HttpError(TWIRP_STATUS[code] ?? 500, code, msg);

/**
 * A stand-in for GitHub's artifact backend: the Results Twirp API, an Azure block-blob
 * endpoint for the signed URLs, and the REST routes `findBy` uses, in one loopback server.
 */
export async function startArtifactService(opts: ArtifactServiceOptions = {}): Promise<RunningArtifactService> {
  const dir = await mkdtemp(join(tmpdir(), 'csx-artifacts-'));
  const service = new ArtifactService(dir, opts);
  const url = await service.listen();
  return {
    url,
    dir,
    apiToken: service.apiToken,
    faults: service.faults,
    env: (run) => service.env(run),
    artifacts: () => service.records(),
    requests: () => [...service.log],
    stop: async () => {
      await service.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

class ArtifactService {
  readonly apiToken: string;
  readonly faults: ArtifactFaults;
  readonly log: RequestRecord[] = [];
  private readonly jwtSecret = randomBytes(32);
  private readonly runs = new Map<number, Run>();
  private readonly artifacts: Artifact[] = [];
  private readonly server: Server;
  private nextId = 1_000_001;
  private origin = '';

  constructor(
    private readonly dir: string,
    opts: ArtifactServiceOptions,
  ) {
    this.apiToken = opts.apiToken ?? `ghs_${randomBytes(18).toString('hex')}`;
    this.faults = { twirp500Times: 0, ...opts.faults };
    this.server = createServer((req, res) => void this.handle(req, res));
  }

  async listen(): Promise<string> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.origin = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this.origin;
  }

  async close(): Promise<void> {
    const closed = new Promise((resolve) => this.server.close(resolve));
    this.server.closeAllConnections();
    await closed;
  }

  env(spec: RunSpec): Record<string, string> {
    const run = this.registerRun(spec.runId, spec.repository ?? 'octo-org/octo-repo');
    const jobBackendId = this.jobBackendId(run, spec.jobId ?? 'job');
    const noProxy = mergedNoProxy();
    return {
      ACTIONS_RUNTIME_TOKEN: this.signToken(run.backendId, jobBackendId),
      ACTIONS_RESULTS_URL: `${this.origin}/`,
      GITHUB_SERVER_URL: 'https://github.com',
      GITHUB_API_URL: this.origin,
      GITHUB_REPOSITORY: run.repository,
      GITHUB_REPOSITORY_OWNER: run.repository.split('/')[0],
      GITHUB_RUN_ID: String(run.runId),
      GITHUB_RUN_ATTEMPT: String(spec.attempt ?? 1),
      GITHUB_TOKEN: this.apiToken,
      NO_PROXY: noProxy,
      no_proxy: noProxy,
    };
  }

  records(): ArtifactRecord[] {
    return this.artifacts.map((a) => ({
      id: a.id,
      name: a.name,
      runId: a.run.runId,
      repository: a.run.repository,
      size: a.committed?.size ?? 0,
      finalized: a.finalized,
      deleted: a.deleted,
      digest: a.committed?.digest,
      contentType: a.contentType,
      expiresAt: a.expiresAt,
    }));
  }

  private registerRun(runId: number, repository: string): Run {
    const known = this.runs.get(runId);
    if (known && known.repository !== repository) {
      throw new Error(`run ${runId} belongs to ${known.repository}, not ${repository}`);
    }
    const run = known ?? { runId, repository, backendId: randomUUID(), jobs: new Map() };
    this.runs.set(runId, run);
    return run;
  }

  private jobBackendId(run: Run, jobId: string): string {
    const id = run.jobs.get(jobId) ?? randomUUID();
    run.jobs.set(jobId, id);
    return id;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.origin);
    const record: RequestRecord = { method: req.method ?? '', kind: requestKind(url), status: 0 };
    res.on('close', () => this.log.push({ ...record, status: res.headersSent ? res.statusCode : 0 }));
    try {
      await this.route(req, res, url);
    } catch (error) {
      this.answerError(req, res, url, error);
    }
  }

  private route(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const twirp = TWIRP_ROUTE.exec(url.pathname);
    if (twirp) return this.twirp(twirp[1], req, res);
    const blob = BLOB_ROUTE.exec(url.pathname);
    if (blob) return this.blob(blob[1], req, res, url);
    if (url.pathname.startsWith('/repos/')) return this.rest(req, res, url);
    throw new HttpError(404, 'not_found', `no route for ${req.method} ${url.pathname}`);
  }

  private answerError(req: IncomingMessage, res: ServerResponse, url: URL, error: unknown): void {
    if (res.headersSent || !req.socket || req.socket.destroyed) {
      res.destroy();
      return;
    }
    req.resume();
    const e = error instanceof HttpError ? error : new HttpError(500, 'internal', String(error));
    if (TWIRP_ROUTE.test(url.pathname)) sendJson(res, e.status, { code: e.code, msg: e.message });
    else if (BLOB_ROUTE.test(url.pathname)) sendStorageError(res, e);
    else sendJson(res, e.status, { message: e.message, documentation_url: 'https://docs.github.com/rest', status: String(e.status) });
  }

  private async twirp(method: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'POST') throw twirpError('bad_route', `${req.method} is not supported`);
    this.injectTwirpFault();
    const scope = this.authorize(req.headers.authorization);
    const body = await readJson(req);
    checkScope(scope, body);
    sendJson(res, 200, await this.twirpMethod(method, scope, body));
  }

  private injectTwirpFault(): void {
    if (this.faults.twirpStatus === 401) throw twirpError('unauthenticated', 'token is not valid');
    if (this.faults.twirpStatus === 403) throw twirpError('permission_denied', 'token lacks the required scope');
    if (this.faults.twirp500Times > 0) {
      this.faults.twirp500Times--;
      throw twirpError('internal', 'injected internal error');
    }
  }

  private twirpMethod(method: string, scope: Scope, body: Json): Json | Promise<Json> {
    switch (method) {
      case 'CreateArtifact':
        return this.createArtifact(scope, body);
      case 'FinalizeArtifact':
        return this.finalizeArtifact(body);
      case 'ListArtifacts':
        return this.listArtifacts(body);
      case 'GetSignedArtifactURL':
        return this.signedArtifactUrl(body);
      case 'DeleteArtifact':
        return this.deleteArtifact(body);
      default:
        throw twirpError('bad_route', `no handler for ${SERVICE}/${method}`);
    }
  }

  private createArtifact(scope: Scope, body: Json): Json {
    const run = this.runByBackendId(scope.runBackendId);
    const name = validName(body.name);
    if (Number(body.version ?? 0) < 4) throw twirpError('invalid_argument', 'unsupported artifact version');
    const existing = this.liveArtifact(run, name);
    if (existing?.finalized) {
      throw twirpError('already_exists', 'an artifact with this name already exists on the workflow run');
    }
    if (existing) void this.discard(existing);
    const artifact = this.newArtifact(run, scope.jobBackendId, name, body);
    return { ok: true, signed_upload_url: this.blobUrl(artifact, artifact.uploadSig) };
  }

  private newArtifact(run: Run, jobBackendId: string, name: string, body: Json): Artifact {
    const artifact: Artifact = {
      id: this.nextId++,
      name,
      run,
      jobBackendId,
      blobKey: randomUUID(),
      uploadSig: randomBytes(16).toString('base64url'),
      downloadSig: randomBytes(16).toString('base64url'),
      createdAt: new Date(),
      expiresAt: typeof body.expires_at === 'string' ? body.expires_at : undefined,
      finalized: false,
      deleted: false,
    };
    this.artifacts.push(artifact);
    return artifact;
  }

  private finalizeArtifact(body: Json): Json {
    const artifact = this.liveArtifact(this.runByBackendId(String(body.workflow_run_backend_id)), String(body.name));
    if (!artifact) throw twirpError('not_found', 'artifact not found');
    if (artifact.finalized) throw twirpError('failed_precondition', 'artifact is already finalized');
    if (!artifact.committed) throw twirpError('failed_precondition', 'no content was uploaded for the artifact');
    if (Number(body.size ?? 0) !== artifact.committed.size) {
      throw twirpError('invalid_argument', `size ${body.size} does not match uploaded size ${artifact.committed.size}`);
    }
    if (body.hash !== undefined && body.hash !== artifact.committed.digest) {
      throw twirpError('invalid_argument', `hash ${String(body.hash)} does not match uploaded content`);
    }
    artifact.finalized = true;
    return { ok: true, artifact_id: String(artifact.id) };
  }

  private listArtifacts(body: Json): Json {
    const run = this.runByBackendId(String(body.workflow_run_backend_id));
    const artifacts = this.finalized(run)
      .filter((a) => body.name_filter === undefined || a.name === body.name_filter)
      .filter((a) => body.id_filter === undefined || String(a.id) === String(body.id_filter))
      .map((a) => ({
        workflow_run_backend_id: a.run.backendId,
        workflow_job_run_backend_id: a.jobBackendId,
        database_id: String(a.id),
        name: a.name,
        size: String(a.committed?.size ?? 0),
        created_at: a.createdAt.toISOString(),
        digest: a.committed?.digest,
      }));
    return { artifacts };
  }

  private signedArtifactUrl(body: Json): Json {
    const artifact = this.finalizedByName(body);
    return { signed_url: this.downloadUrl(artifact) };
  }

  private async deleteArtifact(body: Json): Promise<Json> {
    const artifact = this.finalizedByName(body);
    await this.discard(artifact);
    return { ok: true, artifact_id: String(artifact.id) };
  }

  private finalizedByName(body: Json): Artifact {
    const run = this.runByBackendId(String(body.workflow_run_backend_id));
    const artifact = this.finalized(run).find((a) => a.name === body.name);
    if (!artifact) throw twirpError('not_found', 'artifact not found');
    return artifact;
  }

  private authorize(header: string | undefined): Scope {
    const token = /^Bearer (.+)$/i.exec(header ?? '')?.[1];
    const scope = token ? this.verifyToken(token) : undefined;
    if (!scope) throw twirpError('unauthenticated', 'missing or invalid runtime token');
    return scope;
  }

  private signToken(runBackendId: string, jobBackendId: string): string {
    const now = Math.floor(Date.now() / 1000);
    const header = base64url({ typ: 'JWT', alg: 'HS256' });
    const payload = base64url({
      scp: `Actions.ExampleScope Actions.Results:${runBackendId}:${jobBackendId}`,
      iss: 'local-artifact-service',
      nbf: now - 60,
      iat: now,
      exp: now + 6 * 3600,
    });
    return `${header}.${payload}.${this.hmac(`${header}.${payload}`)}`;
  }

  private verifyToken(token: string): Scope | undefined {
    const [header, payload, signature] = token.split('.');
    if (!signature || !safeEqual(signature, this.hmac(`${header}.${payload}`))) return undefined;
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as { scp?: string; exp?: number };
    if (!claims.exp || claims.exp * 1000 < Date.now()) return undefined;
    const results = claims.scp?.split(' ').find((s) => s.startsWith('Actions.Results:'));
    const [, runBackendId, jobBackendId] = results?.split(':') ?? [];
    return runBackendId && jobBackendId ? { runBackendId, jobBackendId } : undefined;
  }

  private hmac(data: string): string {
    return createHmac('sha256', this.jwtSecret).update(data).digest('base64url');
  }

  private async blob(key: string, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const artifact = this.artifacts.find((a) => a.blobKey === key && !a.deleted);
    const comp = url.searchParams.get('comp');
    if (req.method === 'PUT' && comp === 'block') return this.putBlock(this.writable(artifact, url), req, res, url);
    if (req.method === 'PUT' && comp === 'blocklist') return this.putBlockList(this.writable(artifact, url), req, res);
    if (req.method === 'GET' && !comp) return this.getBlob(this.readable(artifact, url), res);
    throw new HttpError(400, 'UnsupportedHttpVerb', `${req.method} comp=${comp} is not supported here`);
  }

  private writable(artifact: Artifact | undefined, url: URL): Artifact {
    if (!artifact) throw new HttpError(404, 'BlobNotFound', 'The specified blob does not exist.');
    if (url.searchParams.get('sig') !== artifact.uploadSig || artifact.finalized) {
      throw new HttpError(403, 'AuthenticationFailed', 'Signature is not valid for writing this blob.');
    }
    return artifact;
  }

  private readable(artifact: Artifact | undefined, url: URL): Artifact {
    if (!artifact?.finalized) throw new HttpError(404, 'BlobNotFound', 'The specified blob does not exist.');
    if (url.searchParams.get('sig') !== artifact.downloadSig) {
      throw new HttpError(403, 'AuthenticationFailed', 'Signature is not valid for reading this blob.');
    }
    return artifact;
  }

  private async putBlock(artifact: Artifact, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const blockId = url.searchParams.get('blockid') ?? '';
    if (!blockId || Buffer.from(blockId, 'base64').length > 64) {
      throw new HttpError(400, 'InvalidQueryParameterValue', 'blockid is missing or too long');
    }
    const dir = this.blocksDir(artifact);
    await mkdir(dir, { recursive: true });
    const part = join(dir, `${randomUUID()}.part`);
    try {
      await pipeline(req, this.uploadCutter(req), createWriteStream(part));
    } catch (error) {
      await rm(part, { force: true });
      throw error;
    }
    await rename(part, join(dir, blockFile(blockId)));
    sendBlobCreated(res, {});
  }

  private uploadCutter(req: IncomingMessage): Transform {
    const limit = this.faults.cutUploadAfterBytes;
    let seen = 0;
    return new Transform({
      transform: (chunk: Buffer, _enc, done) => {
        seen += chunk.length;
        if (limit === undefined || seen <= limit || !this.takeCut()) return done(null, chunk);
        req.socket.resetAndDestroy();
        done(new Error('upload cut by fault injection'));
      },
    });
  }

  private takeCut(): boolean {
    if (this.faults.cutUploadTimes === undefined) return true;
    if (this.faults.cutUploadTimes <= 0) return false;
    this.faults.cutUploadTimes--;
    return true;
  }

  private async putBlockList(artifact: Artifact, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const ids = parseBlockList((await readBody(req, 4 << 20)).toString('utf8'));
    const dir = this.blocksDir(artifact);
    const blocks = ids.map((id) => join(dir, blockFile(id)));
    await assertBlocksExist(blocks);
    artifact.committed = await concatenate(blocks, this.blobPath(artifact));
    artifact.contentType = headerValue(req.headers['x-ms-blob-content-type']) ?? 'application/octet-stream';
    await rm(dir, { recursive: true, force: true });
    sendBlobCreated(res, { ETag: `"0x${artifact.id.toString(16)}"`, 'Last-Modified': new Date().toUTCString() });
  }

  private async getBlob(artifact: Artifact, res: ServerResponse): Promise<void> {
    const path = this.blobPath(artifact);
    const { size } = await stat(path);
    res.writeHead(200, {
      'Content-Type': artifact.contentType ?? 'application/octet-stream',
      'Content-Length': String(size),
      'Content-Disposition': contentDisposition(downloadFileName(artifact)),
      ETag: `"0x${artifact.id.toString(16)}"`,
      'x-ms-blob-type': 'BlockBlob',
      'x-ms-version': '2025-11-05',
    });
    const source = createReadStream(path);
    if (this.faults.corruptBlob?.(artifact.name)) await pipeline(source, flipByteAt(Math.floor(size / 2)), res);
    else await pipeline(source, res);
  }

  private blobUrl(artifact: Artifact, sig: string, extra: Record<string, string> = {}): string {
    const query = new URLSearchParams({ sv: '2025-11-05', se: expiry(), sr: 'b', sp: sig === artifact.uploadSig ? 'cw' : 'r', ...extra, sig });
    return `${this.origin}/${ACCOUNT}/${CONTAINER}/${artifact.blobKey}?${query}`;
  }

  private downloadUrl(artifact: Artifact): string {
    return this.blobUrl(artifact, artifact.downloadSig, { rscd: contentDisposition(downloadFileName(artifact)) });
  }

  private blocksDir(artifact: Artifact): string {
    return join(this.dir, 'blocks', artifact.blobKey);
  }

  private blobPath(artifact: Artifact): string {
    return join(this.dir, `${artifact.blobKey}.blob`);
  }

  private async rest(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    this.checkApiToken(req.headers.authorization);
    const list = RUN_ARTIFACTS_ROUTE.exec(url.pathname);
    if (list && req.method === 'GET') return sendJson(res, 200, this.restList(list, url));
    const one = ARTIFACT_ROUTE.exec(url.pathname);
    if (!one) throw new HttpError(404, 'not_found', 'Not Found');
    const artifact = this.restArtifact(one);
    if (req.method === 'GET' && one[4]) return sendRedirect(res, this.downloadUrl(artifact));
    if (req.method === 'GET') return sendJson(res, 200, this.restJson(artifact));
    if (req.method === 'DELETE' && !one[4]) return this.restDelete(artifact, res);
    throw new HttpError(404, 'not_found', 'Not Found');
  }

  private checkApiToken(header: string | undefined): void {
    const token = /^(?:token|bearer) (.+)$/i.exec(header ?? '')?.[1];
    if (!token || !safeEqual(token, this.apiToken)) throw new HttpError(401, 'unauthenticated', 'Bad credentials');
  }

  private restList([, owner, repo, runId]: RegExpExecArray, url: URL): Json {
    const run = this.runs.get(Number(runId));
    if (!run || run.repository !== `${owner}/${repo}`) throw new HttpError(404, 'not_found', 'Not Found');
    const name = url.searchParams.get('name');
    const matching = this.finalized(run)
      .filter((a) => name === null || a.name === name)
      .sort((a, b) => b.id - a.id);
    const perPage = Math.min(Number(url.searchParams.get('per_page') ?? 30) || 30, 100);
    const page = Math.max(Number(url.searchParams.get('page') ?? 1) || 1, 1);
    const slice = matching.slice((page - 1) * perPage, page * perPage);
    return { total_count: matching.length, artifacts: slice.map((a) => this.restJson(a)) };
  }

  private restArtifact([, owner, repo, id]: RegExpExecArray): Artifact {
    const artifact = this.artifacts.find((a) => a.id === Number(id) && a.finalized && !a.deleted);
    if (!artifact || artifact.run.repository !== `${owner}/${repo}`) throw new HttpError(404, 'not_found', 'Not Found');
    return artifact;
  }

  private async restDelete(artifact: Artifact, res: ServerResponse): Promise<void> {
    await this.discard(artifact);
    res.writeHead(204).end();
  }

  private restJson(a: Artifact): Json {
    const url = `${this.origin}/repos/${a.run.repository}/actions/artifacts/${a.id}`;
    return {
      id: a.id,
      node_id: Buffer.from(`Artifact${a.id}`).toString('base64'),
      name: a.name,
      size_in_bytes: a.committed?.size ?? 0,
      url,
      archive_download_url: `${url}/zip`,
      expired: false,
      digest: a.committed?.digest,
      created_at: a.createdAt.toISOString(),
      updated_at: a.createdAt.toISOString(),
      expires_at: a.expiresAt ?? new Date(a.createdAt.getTime() + 90 * 86_400_000).toISOString(),
      workflow_run: { id: a.run.runId, repository_id: 1, head_repository_id: 1, head_branch: 'main', head_sha: '0'.repeat(40) },
    };
  }

  private runByBackendId(backendId: string): Run {
    const run = [...this.runs.values()].find((r) => r.backendId === backendId);
    if (!run) throw twirpError('not_found', 'workflow run not found');
    return run;
  }

  private liveArtifact(run: Run, name: string): Artifact | undefined {
    return this.artifacts.find((a) => a.run === run && a.name === name && !a.deleted);
  }

  private finalized(run: Run): Artifact[] {
    return this.artifacts.filter((a) => a.run === run && a.finalized && !a.deleted);
  }

  private async discard(artifact: Artifact): Promise<void> {
    artifact.deleted = true;
    await rm(this.blocksDir(artifact), { recursive: true, force: true });
    await rm(this.blobPath(artifact), { force: true });
  }
}

function requestKind(url: URL): string {
  const twirp = TWIRP_ROUTE.exec(url.pathname);
  if (twirp) return `twirp:${twirp[1]}`;
  if (BLOB_ROUTE.test(url.pathname)) return `blob:${url.searchParams.get('comp') ?? 'get'}`;
  if (RUN_ARTIFACTS_ROUTE.test(url.pathname)) return 'rest:list';
  const one = ARTIFACT_ROUTE.exec(url.pathname);
  if (one) return one[4] ? 'rest:zip' : 'rest:artifact';
  return 'unknown';
}

// Only the run must match: a job may read and delete artifacts other jobs of its run uploaded.
function checkScope(scope: Scope, body: Json): void {
  if (body.workflow_run_backend_id !== scope.runBackendId) {
    throw twirpError('permission_denied', 'the token is not valid for this workflow run');
  }
}

function validName(value: unknown): string {
  const name = typeof value === 'string' ? value : '';
  if (!name || INVALID_NAME_CHARS.some((c) => name.includes(c))) {
    throw twirpError('invalid_argument', `invalid artifact name: ${JSON.stringify(value)}`);
  }
  return name;
}

function mergedNoProxy(): string {
  const current = (process.env.no_proxy ?? process.env.NO_PROXY ?? '').split(',').filter(Boolean);
  return [...new Set([...current, '127.0.0.1', 'localhost'])].join(',');
}

function base64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function expiry(): string {
  return new Date(Date.now() + 3600_000).toISOString().replace(/\.\d+Z$/, 'Z');
}

function blockFile(blockId: string): string {
  return Buffer.from(blockId, 'utf8').toString('hex');
}

function parseBlockList(xml: string): string[] {
  if (!/<BlockList>/.test(xml)) throw new HttpError(400, 'InvalidXmlDocument', 'body is not a block list');
  return [...xml.matchAll(/<(Latest|Committed|Uncommitted)>([^<]*)<\/\1>/g)].map((m) => m[2]);
}

async function assertBlocksExist(paths: string[]): Promise<void> {
  for (const path of paths) {
    const found = await stat(path).then(
      () => true,
      () => false,
    );
    if (!found) throw new HttpError(400, 'InvalidBlockList', 'The specified block list is invalid.');
  }
}

async function concatenate(blocks: string[], target: string): Promise<{ size: number; digest: string }> {
  const part = `${target}.part`;
  const out = createWriteStream(part);
  const hash = createHash('sha256');
  let size = 0;
  for (const block of blocks) size += await appendFile(block, out, hash);
  out.end();
  await once(out, 'finish');
  await rename(part, target);
  return { size, digest: `sha256:${hash.digest('hex')}` };
}

async function appendFile(path: string, out: WriteStream, hash: Hash): Promise<number> {
  let size = 0;
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    size += chunk.length;
    if (!out.write(chunk)) await once(out, 'drain');
  }
  return size;
}

function flipByteAt(offset: number): Transform {
  let position = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      if (offset >= position && offset < position + chunk.length) {
        chunk = Buffer.from(chunk);
        chunk[offset - position] ^= 0xff;
      }
      position += chunk.length;
      done(null, chunk);
    },
  });
}

function downloadFileName(artifact: Artifact): string {
  return artifact.contentType === 'application/zip' ? `${artifact.name}.zip` : artifact.name;
}

function contentDisposition(fileName: string): string {
  const ascii = fileName.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(fileName)}`;
}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new HttpError(413, 'RequestBodyTooLarge', 'request body is too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

async function readJson(req: IncomingMessage): Promise<Json> {
  const text = (await readBody(req, 1 << 20)).toString('utf8');
  const value = parseJson(text || '{}');
  if (value && typeof value === 'object' && !Array.isArray(value)) return value as Json;
  throw twirpError('malformed', 'the request body is not a JSON object');
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(text)) });
  res.end(text);
}

function sendRedirect(res: ServerResponse, location: string): void {
  res.writeHead(302, { Location: location, 'Content-Length': '0' }).end();
}

function sendBlobCreated(res: ServerResponse, headers: Record<string, string>): void {
  res.writeHead(201, {
    'Content-Length': '0',
    'x-ms-request-id': randomUUID(),
    'x-ms-version': '2025-11-05',
    'x-ms-request-server-encrypted': 'true',
    Date: new Date().toUTCString(),
    ...headers,
  });
  res.end();
}

function sendStorageError(res: ServerResponse, error: HttpError): void {
  const xml = `<?xml version="1.0" encoding="utf-8"?><Error><Code>${error.code}</Code><Message>${error.message}</Message></Error>`;
  res.writeHead(error.status, {
    'Content-Type': 'application/xml',
    'Content-Length': String(Buffer.byteLength(xml)),
    'x-ms-error-code': error.code,
  });
  res.end(xml);
}
