import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { link, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startArtifactService, type RunningArtifactService, type RunSpec } from '../support/artifact-service.js';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const REPOSITORY = 'octo-org/octo-repo';
const BIG = 30 * 1024 * 1024;

// Each call runs in its own process: @actions/artifact reads its environment, partly at module load.
const CLIENT_SCRIPT = `
import { DefaultArtifactClient } from '@actions/artifact';
const { method, args } = JSON.parse(process.env.ARTIFACT_CALL);
try {
  const result = await new DefaultArtifactClient()[method](...args);
  console.log('@@RESULT ' + JSON.stringify(result));
} catch (error) {
  console.log('@@ERROR ' + JSON.stringify({ name: error.name, message: error.message }));
  process.exitCode = 1;
}
`;

/** An artifact in the client's responses, as JSON (the fields these tests read; @actions/artifact's Artifact). */
interface ArtifactJson {
  id: number;
  name: string;
  size: number;
  digest: string;
}

/** What each client method called here returns, as JSON: the fields these tests read of @actions/artifact's response types. */
interface Results {
  uploadArtifact: { id: number; size: number; digest: string };
  listArtifacts: { artifacts: ArtifactJson[] };
  getArtifact: { artifact: ArtifactJson };
  downloadArtifact: { downloadPath: string; digestMismatch: boolean };
  deleteArtifact: { id: number };
}

interface CallOutcome {
  result?: unknown;
  error?: { name: string; message: string };
  output: string;
  ms: number;
}

let service: RunningArtifactService;
let work: string;
let bigFile: string;
let bigDigest: string;
let seq = 0;

const unique = (prefix: string) => `${prefix}-${process.pid}-${++seq}`;
const runA: RunSpec = { runId: 4101, repository: REPOSITORY };
const runB: RunSpec = { runId: 4102, repository: REPOSITORY };

async function call(run: RunSpec, method: string, ...args: unknown[]): Promise<CallOutcome> {
  const env: NodeJS.ProcessEnv = { ...process.env, ...service.env(run), ARTIFACT_CALL: JSON.stringify({ method, args }) };
  delete env.NODE_OPTIONS;
  const started = Date.now();
  const child = spawn(process.execPath, ['--input-type=module', '-e', CLIENT_SCRIPT], { cwd: REPO_ROOT, env });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  await once(child, 'close');
  return { ...parseOutcome(output), output, ms: Date.now() - started };
}

function parseOutcome(output: string): Pick<CallOutcome, 'result' | 'error'> {
  const line = output.split('\n').find((l) => l.startsWith('@@RESULT ') || l.startsWith('@@ERROR '));
  if (!line) return { error: { name: 'NoOutcome', message: output.slice(-2000) } };
  const value = JSON.parse(line.slice(line.indexOf(' ') + 1));
  return line.startsWith('@@RESULT ') ? { result: value } : { error: value };
}

async function succeed<M extends keyof Results>(run: RunSpec, method: M, ...args: unknown[]): Promise<Results[M]> {
  const outcome = await call(run, method, ...args);
  if (outcome.error) throw new Error(`${method} failed: ${outcome.error.message}\n${outcome.output.slice(-3000)}`);
  return outcome.result as Results[M];
}

async function sha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function generate(path: string, bytes: number): Promise<string> {
  const out = createWriteStream(path);
  const hash = createHash('sha256');
  for (let left = bytes; left > 0; left -= 1 << 20) {
    const chunk = randomBytes(Math.min(left, 1 << 20));
    hash.update(chunk);
    if (!out.write(chunk)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  return hash.digest('hex');
}

/** A file of `bytes` random bytes whose basename (the artifact name under skipArchive) is unique. */
async function smallFile(bytes = 1 << 20): Promise<{ path: string; name: string; digest: string }> {
  const name = `${unique('small')}.bin`;
  const path = join(work, name);
  return { path, name, digest: await generate(path, bytes) };
}

async function uploadSmall(run: RunSpec, bytes?: number) {
  const file = await smallFile(bytes);
  const uploaded = await succeed(run, 'uploadArtifact', 'ignored', [file.path], work, { skipArchive: true });
  return { ...file, id: uploaded.id as number };
}

const findBy = (run: RunSpec, token = service.apiToken) => ({
  token,
  workflowRunId: run.runId,
  repositoryOwner: REPOSITORY.split('/')[0],
  repositoryName: REPOSITORY.split('/')[1],
});

function requestsSince(mark: number) {
  return service.requests().slice(mark);
}

beforeAll(async () => {
  service = await startArtifactService();
  work = await mkdtemp(join(tmpdir(), 'csx-artifact-test-'));
  bigFile = join(work, 'big.bin');
  bigDigest = await generate(bigFile, BIG);
});

afterAll(async () => {
  await service?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('@actions/artifact 6 against the local artifact service', () => {
  it('uploads 30 MB unarchived (skipArchive), lists, gets and downloads it intact', async () => {
    const name = `${unique('raw')}.bin`;
    const file = join(work, name);
    await link(bigFile, file);

    const uploaded = await succeed(runA, 'uploadArtifact', 'name-is-ignored', [file], work, { skipArchive: true });
    expect(uploaded).toMatchObject({ size: BIG, digest: bigDigest });
    expect(service.artifacts().find((a) => a.id === uploaded.id)).toMatchObject({
      name,
      size: BIG,
      finalized: true,
      digest: `sha256:${bigDigest}`,
      contentType: 'application/octet-stream',
    });

    const listed = await succeed(runA, 'listArtifacts');
    expect(listed.artifacts).toContainEqual(expect.objectContaining({ id: uploaded.id, name, size: BIG, digest: `sha256:${bigDigest}` }));
    const got = await succeed(runA, 'getArtifact', name);
    expect(got.artifact).toMatchObject({ id: uploaded.id, name, size: BIG });

    const into = join(work, unique('dl'));
    const downloaded = await succeed(runA, 'downloadArtifact', uploaded.id, { path: into, expectedHash: `sha256:${bigDigest}` });
    expect(downloaded).toEqual({ downloadPath: into, digestMismatch: false });
    expect(await sha256(join(into, name))).toBe(bigDigest);
  });

  it('uploads a directory as a zip (compressionLevel 0) and downloads it extracted', async () => {
    const dir = join(work, unique('tree'));
    await mkdir(join(dir, 'sub'), { recursive: true });
    await link(bigFile, join(dir, 'sub', 'big.bin'));
    await writeFile(join(dir, 'note.txt'), 'hello\n');
    const name = unique('zip');

    const uploaded = await succeed(runA, 'uploadArtifact', name, [join(dir, 'sub', 'big.bin'), join(dir, 'note.txt')], dir, {
      compressionLevel: 0,
    });
    expect(uploaded.size).toBeGreaterThan(BIG);
    expect(service.artifacts().find((a) => a.id === uploaded.id)).toMatchObject({ name, contentType: 'application/zip', finalized: true });

    const into = join(work, unique('dl'));
    const downloaded = await succeed(runA, 'downloadArtifact', uploaded.id, { path: into, expectedHash: `sha256:${uploaded.digest}` });
    expect(downloaded.digestMismatch).toBe(false);
    expect(await sha256(join(into, 'sub', 'big.bin'))).toBe(bigDigest);
    expect(await sha256(join(into, 'note.txt'))).toBe(createHash('sha256').update('hello\n').digest('hex'));
  });

  it('downloads from another run with findBy, and the other run does not see it through its own token', async () => {
    const up = await uploadSmall(runA, 3 << 20);

    const own = await call(runB, 'getArtifact', up.name);
    expect(own.error?.message).toMatch(/Artifact not found for name/);

    const found = await succeed(runB, 'getArtifact', up.name, { findBy: findBy(runA) });
    expect(found.artifact).toMatchObject({ id: up.id, name: up.name, size: 3 << 20, digest: `sha256:${up.digest}` });
    const listed = await succeed(runB, 'listArtifacts', { findBy: findBy(runA) });
    expect(listed.artifacts.map((a: { id: number }) => a.id)).toContain(up.id);

    const into = join(work, unique('dl'));
    const downloaded = await succeed(runB, 'downloadArtifact', up.id, {
      path: into,
      expectedHash: found.artifact.digest,
      findBy: findBy(runA),
    });
    expect(downloaded.digestMismatch).toBe(false);
    expect(await sha256(join(into, up.name))).toBe(up.digest);
  });

  it('rejects findBy with a wrong token as Bad credentials', async () => {
    const mark = service.requests().length;
    const outcome = await call(runB, 'listArtifacts', { findBy: findBy(runA, 'ghs_wrong') });
    expect(outcome.error?.message).toMatch(/Bad credentials/);
    // @actions/artifact passes request.retries=5 to octokit, so plugin-retry repeats even a 401, at once.
    expect(requestsSince(mark).map((r) => `${r.kind} ${r.status}`)).toEqual(Array(6).fill('rest:list 401'));
  });

  it('refuses a second artifact with the same name in the same run (409), but not in another run', async () => {
    const up = await uploadSmall(runA);
    const again = await call(runA, 'uploadArtifact', 'ignored', [up.path], work, { skipArchive: true });
    expect(again.error?.message).toMatch(/\(409\) Conflict: an artifact with this name already exists on the workflow run/);
    await succeed(runB, 'uploadArtifact', 'ignored', [up.path], work, { skipArchive: true });
  });

  it('deletes an artifact: later downloads fail clearly, in this run and across runs', async () => {
    const up = await uploadSmall(runA);
    const deleted = await succeed(runA, 'deleteArtifact', up.name);
    expect(deleted).toEqual({ id: up.id });
    expect(service.artifacts().find((a) => a.id === up.id)).toMatchObject({ deleted: true });

    const here = await call(runA, 'downloadArtifact', up.id, { path: join(work, unique('dl')) });
    expect(here.error).toMatchObject({ name: 'ArtifactNotFoundError' });
    expect(here.error?.message).toMatch(`No artifacts found for ID: ${up.id}`);

    const there = await call(runB, 'downloadArtifact', up.id, { path: join(work, unique('dl')), findBy: findBy(runA) });
    expect(there.error?.message).toMatch(/Not Found/);
    expect(there.ms).toBeLessThan(10_000);

    await succeed(runA, 'uploadArtifact', 'ignored', [up.path], work, { skipArchive: true });
  });

  it('recovers from a Twirp 500 with the client’s own retries', async () => {
    const file = await smallFile();
    const mark = service.requests().length;
    service.faults.twirp500Times = 1;
    const outcome = await call(runA, 'uploadArtifact', 'ignored', [file.path], work, { skipArchive: true });
    expect(outcome.error).toBeUndefined();
    expect(outcome.ms).toBeGreaterThanOrEqual(3000);
    const twirp = requestsSince(mark).filter((r) => r.kind.startsWith('twirp:'));
    expect(twirp.map((r) => `${r.kind} ${r.status}`)).toEqual(['twirp:CreateArtifact 500', 'twirp:CreateArtifact 200', 'twirp:FinalizeArtifact 200']);
  });

  it('fails at once on a Twirp 401, without retrying', async () => {
    const file = await smallFile();
    const mark = service.requests().length;
    service.faults.twirpStatus = 401;
    try {
      const outcome = await call(runA, 'uploadArtifact', 'ignored', [file.path], work, { skipArchive: true });
      expect(outcome.error?.message).toMatch(/non-retryable error: Failed request: \(401\) Unauthorized/);
    } finally {
      service.faults.twirpStatus = undefined;
    }
    expect(requestsSince(mark).map((r) => `${r.kind} ${r.status}`)).toEqual(['twirp:CreateArtifact 401']);
  });

  it('survives one cut block upload (the Azure SDK retries the block)', async () => {
    const file = await smallFile();
    const mark = service.requests().length;
    Object.assign(service.faults, { cutUploadAfterBytes: 256 * 1024, cutUploadTimes: 1 });
    try {
      await succeed(runA, 'uploadArtifact', 'ignored', [file.path], work, { skipArchive: true });
    } finally {
      Object.assign(service.faults, { cutUploadAfterBytes: undefined, cutUploadTimes: undefined });
    }
    const blob = requestsSince(mark).filter((r) => r.kind.startsWith('blob:'));
    expect(blob.map((r) => `${r.kind} ${r.status}`)).toEqual(['blob:block 0', 'blob:block 201', 'blob:blocklist 201']);
  });

  it('fails an upload whose connections are always cut, and lists no artifact for it', async () => {
    const file = await smallFile();
    const mark = service.requests().length;
    service.faults.cutUploadAfterBytes = 256 * 1024;
    let outcome: CallOutcome;
    try {
      outcome = await call(runA, 'uploadArtifact', 'ignored', [file.path], work, { skipArchive: true });
    } finally {
      service.faults.cutUploadAfterBytes = undefined;
    }
    expect(outcome.error).toMatchObject({ name: 'NetworkError' });
    const after = requestsSince(mark).map((r) => `${r.kind} ${r.status}`);
    expect(after.filter((r) => r.startsWith('blob:'))).toEqual(Array(4).fill('blob:block 0'));
    expect(after).not.toContain('twirp:FinalizeArtifact 200');
    expect(service.artifacts().filter((a) => a.name === file.name)).toEqual([expect.objectContaining({ finalized: false, size: 0 })]);
    const listed = await succeed(runA, 'listArtifacts');
    expect(listed.artifacts.map((a: { name: string }) => a.name)).not.toContain(file.name);
  });

  it('reports a tampered blob only when expectedHash is passed', async () => {
    const up = await uploadSmall(runA);
    service.faults.corruptBlob = (n) => n === up.name;
    try {
      const checked = await succeed(runA, 'downloadArtifact', up.id, { path: join(work, unique('dl')), expectedHash: `sha256:${up.digest}` });
      expect(checked.digestMismatch).toBe(true);
      const unchecked = await succeed(runA, 'downloadArtifact', up.id, { path: join(work, unique('dl')) });
      expect(unchecked.digestMismatch).toBe(false);
      expect(await sha256(join(unchecked.downloadPath, up.name))).not.toBe(up.digest);
    } finally {
      service.faults.corruptBlob = undefined;
    }
  });
});

describe('the local artifact service’s wire protocol', () => {
  const json = async <T = unknown>(response: Response | Promise<Response>): Promise<T> => (await response).json() as Promise<T>;
  const twirp = (method: string, token: string, body: unknown) =>
    fetch(`${service.url}/twirp/github.actions.results.api.v1.ArtifactService/${method}`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });

  const scopeOf = (token: string) => {
    const scp = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()).scp as string;
    const [, run, job] = scp
      .split(' ')
      .find((s) => s.startsWith('Actions.Results:'))!
      .split(':');
    return { workflow_run_backend_id: run, workflow_job_run_backend_id: job };
  };

  it('answers Twirp errors as JSON and checks the runtime token and its run', async () => {
    const tokenA = service.env(runA).ACTIONS_RUNTIME_TOKEN;
    const tokenB = service.env(runB).ACTIONS_RUNTIME_TOKEN;
    const forged = `${tokenA.slice(0, tokenA.lastIndexOf('.'))}.AAAA`;

    const unauthenticated = await twirp('ListArtifacts', forged, scopeOf(tokenA));
    expect(unauthenticated.status).toBe(401);
    expect(await json(unauthenticated)).toMatchObject({ code: 'unauthenticated' });

    const otherRun = await twirp('ListArtifacts', tokenB, scopeOf(tokenA));
    expect(otherRun.status).toBe(403);
    expect(await json(otherRun)).toMatchObject({ code: 'permission_denied' });

    const badName = await twirp('CreateArtifact', tokenA, { ...scopeOf(tokenA), name: 'repo:tag', version: 7 });
    expect(badName.status).toBe(400);
    expect(await json(badName)).toMatchObject({ code: 'invalid_argument' });
  });

  const putBlob = (signedUrl: string, query: string, body: string) => fetch(`${signedUrl}&${query}`, { method: 'PUT', body });
  const blockList = (ids: string[]) => `<?xml version="1.0" encoding="utf-8"?><BlockList>${ids.map((id) => `<Latest>${id}</Latest>`).join('')}</BlockList>`;

  async function rawUpload(run: RunSpec, name: string, content: string): Promise<number> {
    const token = service.env(run).ACTIONS_RUNTIME_TOKEN;
    const scope = scopeOf(token);
    const created = await json<{ signed_upload_url: string }>(twirp('CreateArtifact', token, { ...scope, name, version: 7 }));
    await putBlob(created.signed_upload_url, 'comp=block&blockid=YQ%3D%3D', content);
    await putBlob(created.signed_upload_url, 'comp=blocklist', blockList(['YQ==']));
    const finalized = await twirp('FinalizeArtifact', token, { ...scope, name, size: String(Buffer.byteLength(content)) });
    return Number((await json<{ artifact_id: string }>(finalized)).artifact_id);
  }

  it('assembles blocks in block-list order and checks the size at finalize', async () => {
    const token = service.env(runA).ACTIONS_RUNTIME_TOKEN;
    const scope = scopeOf(token);
    const name = unique('blocks');
    const created = await json<{ signed_upload_url: string }>(twirp('CreateArtifact', token, { ...scope, name, version: 7 }));
    const put = (query: string, body: string) => putBlob(created.signed_upload_url, query, body);
    const [first, second] = ['Zmlyc3Q=', 'c2Vjb25k'];
    expect((await put(`comp=block&blockid=${encodeURIComponent(second)}`, 'world')).status).toBe(201);
    expect((await put(`comp=block&blockid=${encodeURIComponent(first)}`, 'hello ')).status).toBe(201);
    expect((await put('comp=blocklist', blockList([first, second]))).status).toBe(201);

    const wrongSize = await twirp('FinalizeArtifact', token, { ...scope, name, size: '3' });
    expect(wrongSize.status).toBe(400);
    const finalized = await twirp('FinalizeArtifact', token, { ...scope, name, size: '11' });
    expect(await json(finalized)).toMatchObject({ ok: true });

    const { signed_url } = await json<{ signed_url: string }>(twirp('GetSignedArtifactURL', token, { ...scope, name }));
    expect(await (await fetch(signed_url)).text()).toBe('hello world');
    expect((await fetch(signed_url.replace(/sig=[^&]+/, 'sig=nope'))).status).toBe(403);
    expect((await put(`comp=block&blockid=${encodeURIComponent(first)}`, 'late')).status).toBe(403);
  });

  it('serves the REST routes: run listing by name and page, zip redirect, 404s and 401', async () => {
    const runC: RunSpec = { runId: 4103, repository: REPOSITORY };
    const names = [unique('rest'), unique('rest'), unique('rest')];
    const ids = [];
    for (const name of names) ids.push(await rawUpload(runC, name, `content of ${name}`));
    const api = (path: string, token = service.apiToken, repository = REPOSITORY) =>
      fetch(`${service.url}/repos/${repository}${path}`, { headers: { Authorization: `token ${token}` }, redirect: 'manual' });

    const page1 = await json<{ total_count: number; artifacts: Array<{ id: number }> }>(api(`/actions/runs/${runC.runId}/artifacts?per_page=2&page=1`));
    const page2 = await json<{ total_count: number; artifacts: Array<{ id: number }> }>(api(`/actions/runs/${runC.runId}/artifacts?per_page=2&page=2`));
    expect(page1.total_count).toBe(3);
    expect([...page1.artifacts, ...page2.artifacts].map((a: { id: number }) => a.id).sort()).toEqual([...ids].sort());
    const byName = await json(api(`/actions/runs/${runC.runId}/artifacts?name=${names[1]}`));
    expect(byName).toMatchObject({ total_count: 1, artifacts: [{ id: ids[1], name: names[1], workflow_run: { id: runC.runId } }] });

    const zip = await api(`/actions/artifacts/${ids[2]}/zip`);
    expect(zip.status).toBe(302);
    expect(await (await fetch(zip.headers.get('location')!)).text()).toBe(`content of ${names[2]}`);

    expect((await api('/actions/artifacts/999999999/zip')).status).toBe(404);
    expect((await api(`/actions/artifacts/${ids[0]}/zip`, service.apiToken, 'other/repo')).status).toBe(404);
    const unauthorized = await api(`/actions/runs/${runC.runId}/artifacts`, 'ghs_wrong');
    expect(unauthorized.status).toBe(401);
    expect(await json(unauthorized)).toMatchObject({ message: 'Bad credentials' });
  });
});
