import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Resources, commitsOf, docker, runBigVolumeContainer, runContainer, treeDigest, waitFor } from '../support/fixtures.js';
import { startArtifactService, type RunningArtifactService, type RunSpec } from '../support/artifact-service.js';
import { processHost } from '../../src/core/process-liveness.js';
import { runCli, runStep, type StepResult } from '../support/runner.js';
import { RUN_LABEL } from '../../src/snapshot/fill.js';

const REPOSITORY = 'octo-org/octo-repo';

/**
 * Snapshot sets as workflow artifacts, through the bundled actions and CLI and @actions/artifact
 * itself, against a local service that speaks GitHub's artifact protocol.
 */
describe('artifact: destinations and sources', () => {
  const res = new Resources(inject('runPrefix'), 'art');
  let service: RunningArtifactService;
  let app: string;
  let big: { name: string; id: string };
  const vol = res.volume('data');
  let runs = 9100;
  const newRun = (jobId = 'job'): RunSpec => ({ runId: ++runs, repository: REPOSITORY, jobId });
  const stepEnv = (run: RunSpec) => ({ ...service.env(run), DOCKER_CONFIG: '/nonexistent' });
  const cliEnv = () => ({ GITHUB_API_URL: service.url, GITHUB_TOKEN: service.apiToken, GITHUB_REPOSITORY: '', DOCKER_CONFIG: '/nonexistent' });
  const ofRun = (run: RunSpec) => service.artifacts().filter((a) => a.runId === run.runId);
  const live = (run: RunSpec) => ofRun(run).filter((a) => a.finalized && !a.deleted);
  const failed = (r: StepResult) => r.stdout.split('\n').filter((l) => l.startsWith('::error::'));

  /**
   * What this test, or the step process `pid`, may have made on the engine: containers and volumes
   * named with this test's prefix, and restore helpers and aside volumes labelled with that
   * process's run. Nothing else on the engine is looked at: other work may share it.
   */
  async function ours(pid?: number): Promise<string[]> {
    const named = (n: string) => n.replace(/^\//, '').startsWith(res.prefix);
    const byStep = (labels?: Record<string, string> | null) => pid !== undefined && (labels?.[RUN_LABEL] ?? '').startsWith(`${processHost()}/${pid}/`);
    const volumes = [
      ...((await docker.listVolumes({ filters: { name: [res.prefix] } })).Volumes ?? []).filter((v) => named(v.Name)),
      ...((await docker.listVolumes({ filters: { label: [RUN_LABEL] } })).Volumes ?? []).filter((v) => byStep(v.Labels)),
    ].map((v) => `volume ${v.Name}`);
    const containers = [
      ...(await docker.listContainers({ all: true, filters: { name: [res.prefix] } })).filter((c) => c.Names.some(named)),
      ...(await docker.listContainers({ all: true, filters: { label: [RUN_LABEL] } })).filter((c) => byStep(c.Labels)),
    ].map((c) => `container ${c.Names[0]} ${c.State}`);
    return [...new Set([...volumes, ...containers])].sort();
  }

  /** Nothing left behind: the container as it was, no commit image. */
  async function expectUntouched(name: string, state: 'running') {
    const info = await docker.getContainer(name).inspect();
    expect({ status: info.State.Status, paused: info.State.Paused }).toEqual({ status: state, paused: false });
    expect(await commitsOf([info.Id])).toEqual([]);
  }

  beforeAll(async () => {
    service = await startArtifactService();
    app = res.name('app');
    await runContainer(
      {
        name: app,
        Image: inject('fixtureImage'),
        Cmd: ['sh', '-c', 'test -f /data/db.txt || { echo precious > /data/db.txt; seq 1 20000 > /data/rows; echo layer > /layer.txt; }; exec sleep 100000'],
        HostConfig: { Binds: [`${vol}:/data`] },
      },
      'running',
    );
    await waitFor(
      async () =>
        await treeDigest(app, '/data/rows').then(
          () => true,
          () => false,
        ),
    );
    big = await runBigVolumeContainer(res, 'big', inject('fixtureImage'), 24);
  });

  afterAll(async () => {
    await service?.stop();
    await res.cleanup();
  });

  const jobA = newRun('backup');
  const nightly = () => `${res.prefix}-nightly`;

  it('job A backs up to artifact:NAME; job B of the same run restores it', async () => {
    const before = { data: await treeDigest(app, '/data'), layer: await treeDigest(app, '/layer.txt') };
    const backup = await runStep('.', { containers: app, destination: `artifact:${nightly()}`, tag: 'n-1', 'retention-days': '3' }, { env: stepEnv(jobA) });
    expect(backup.code, backup.stdout + backup.stderr).toBe(0);

    const set = live(jobA).find((a) => a.name === `${nightly()}@n-1.attempt-1.set.json`);
    expect(set).toBeDefined();
    expect(backup.outputs['artifact-id']).toBe(String(set?.id));
    expect(backup.outputs['artifact-url']).toBe(`https://github.com/${REPOSITORY}/actions/runs/${jobA.runId}/artifacts/${set?.id}`);
    expect(backup.summary).toContain(`[${nightly()}@n-1.attempt-1.set.json](${backup.outputs['artifact-url']})`);
    // Blobs are uploaded as they are (already compressed), unzipped, each kept as long as asked.
    const blobs = live(jobA).filter((a) => a.name.startsWith(`${nightly()}.blob.1-`));
    expect(blobs.length).toBeGreaterThanOrEqual(3);
    for (const a of [...blobs, set!]) {
      expect(a.contentType).not.toBe('application/zip');
      const days = (Date.parse(a.expiresAt ?? '') - Date.now()) / 86_400_000;
      expect(days).toBeGreaterThan(2.9);
      expect(days).toBeLessThan(3.1);
    }
    // The runtime token is a secret: it reaches no output, state or summary.
    const token = service.env(jobA).ACTIONS_RUNTIME_TOKEN;
    expect(JSON.stringify([backup.outputs, backup.state, backup.summary])).not.toContain(token);

    await docker.getContainer(app).remove({ force: true });
    await docker.getVolume(vol).remove();
    const restore = await runStep('restore', { source: `artifact:${nightly()}` }, { env: stepEnv({ ...jobA, jobId: 'restore' }) });
    expect(restore.code, restore.stdout + restore.stderr).toBe(0);
    expect(restore.outputs.snapshot).toBe('n-1');
    res.image((await docker.getContainer(app).inspect()).Config.Image);
    expect({ data: await treeDigest(app, '/data'), layer: await treeDigest(app, '/layer.txt') }).toEqual(before);
    expect((await docker.getContainer(app).inspect()).State.Running).toBe(true);
  });

  it('a later run lists, verifies and restores it with run-id and a token, with the CLI, outside any workflow', async () => {
    const before = await treeDigest(app, '/data');
    const from = ['--source', `artifact:${nightly()}`, '--run-id', String(jobA.runId), '--repository', REPOSITORY];
    const list = await runCli(['list', ...from], { env: cliEnv() });
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/^TAG\s+CREATED/);
    expect(list.stdout).toMatch(/^n-1\s/m);
    const verify = await runCli(['verify', ...from, '--snapshot', 'n-1'], { env: cliEnv() });
    expect(verify.code, verify.stderr).toBe(0);
    expect(verify.stdout).toMatch(/^n-1: ok, 1 container\(s\), \d+ blob\(s\) verified$/m);

    await docker.getContainer(app).remove({ force: true });
    await docker.getVolume(vol).remove();
    const restore = await runCli(['restore', ...from], { env: cliEnv() });
    expect(restore.code, restore.stderr).toBe(0);
    // Stdout is the result alone; the library's workflow commands (::add-mask:: prints the secret) never reach a terminal.
    expect(JSON.parse(restore.stdout)).toMatchObject({ snapshot: 'n-1', failed: 0 });
    expect(restore.stdout + restore.stderr).not.toContain('::');
    expect(restore.stdout + restore.stderr).not.toContain(service.apiToken);
    res.image((await docker.getContainer(app).inspect()).Config.Image);
    expect(await treeDigest(app, '/data')).toEqual(before);
  });

  it('refuses a tampered blob before changing anything', async () => {
    const before = await ours();
    expect(before).toContain(`volume ${vol}`);
    service.faults.corruptBlob = (name) => name.startsWith(`${nightly()}.blob.`);
    let r: StepResult;
    let pid: number | undefined;
    try {
      r = await runStep(
        'restore',
        { source: `artifact:${nightly()}`, rename: `${app}=${app}-copy,${vol}=${vol}-copy` },
        { env: stepEnv({ ...jobA, jobId: 'tampered' }), onSpawn: (c) => (pid = c.pid) },
      );
    } finally {
      service.faults.corruptBlob = undefined;
    }
    expect(r.code).toBe(1);
    expect(failed(r)).toHaveLength(1);
    expect(failed(r)[0]).toMatch(/does not match its digest|digest/);
    await expect(docker.getContainer(`${app}-copy`).inspect()).rejects.toMatchObject({ statusCode: 404 });
    expect(pid).toBeGreaterThan(0);
    expect(await ours(pid)).toEqual(before);
  });

  it('refuses a tampered set document (checked against the digest the service recorded) in verify and restore, before changing anything', async () => {
    const before = await ours();
    const setArtifact = `${nightly()}@n-1.attempt-1.set.json`;
    const digest = live(jobA).find((a) => a.name === setArtifact)?.digest;
    expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    const message = `Snapshot n-1 in artifact:${nightly()}: the set document does not match its digest ${digest} (corrupted or changed); not used.`;
    const from = ['--source', `artifact:${nightly()}`, '--run-id', String(jobA.runId), '--repository', REPOSITORY];
    service.faults.corruptBlob = (name) => name === setArtifact;
    let r: StepResult;
    let v: Awaited<ReturnType<typeof runCli>>;
    let pid: number | undefined;
    try {
      v = await runCli(['verify', ...from, '--snapshot', 'n-1'], { env: cliEnv() });
      r = await runStep(
        'restore',
        { source: `artifact:${nightly()}`, rename: `${app}=${app}-copy,${vol}=${vol}-copy` },
        { env: stepEnv({ ...jobA, jobId: 'tampered-set' }), onSpawn: (c) => (pid = c.pid) },
      );
    } finally {
      service.faults.corruptBlob = undefined;
    }
    expect(v.code).toBe(1);
    expect(v.stderr).toContain(message);
    expect(r.code).toBe(1);
    expect(failed(r)).toEqual([`::error::${message}`]);
    await expect(docker.getContainer(`${app}-copy`).inspect()).rejects.toMatchObject({ statusCode: 404 });
    expect(await ours(pid)).toEqual(before);
  });

  it('retries a 500 from the artifact service, and succeeds', async () => {
    const run = newRun();
    const mark = service.requests().length;
    service.faults.twirp500Times = 1;
    const r = await runStep('.', { containers: app, destination: `artifact:${nightly()}`, tag: 'retried' }, { env: stepEnv(run) });
    expect(r.code, r.stdout).toBe(0);
    const twirp = service
      .requests()
      .slice(mark)
      .filter((q) => q.kind.startsWith('twirp:'));
    expect(twirp[0]).toMatchObject({ kind: 'twirp:ListArtifacts', status: 500 });
    expect(twirp.slice(1).every((q) => q.status === 200)).toBe(true);
    expect(live(run).map((a) => a.name)).toContain(`${nightly()}@retried.attempt-1.set.json`);
  });

  it.each([401, 403] as const)('fails clearly on %s from the artifact service, leaving the container as it was', async (status) => {
    const run = newRun();
    service.faults.twirpStatus = status;
    let r: StepResult;
    try {
      r = await runStep('.', { containers: app, destination: `artifact:${nightly()}`, tag: `denied-${status}` }, { env: stepEnv(run) });
    } finally {
      service.faults.twirpStatus = undefined;
    }
    expect(r.code).toBe(1);
    expect(failed(r)).toHaveLength(1);
    expect(failed(r)[0]).toMatch(new RegExp(`artifact:${nightly()}: cannot .*\\(${status}\\) (Unauthorized|Forbidden)`));
    await expectUntouched(app, 'running');
    expect(live(run)).toEqual([]);
  });

  it('an upload cut mid-way fails that container, leaves no set and no orphan, and the restore refuses the run', async () => {
    const run = newRun();
    Object.assign(service.faults, { cutUploadAfterBytes: 1 << 20 });
    let r: StepResult;
    try {
      r = await runStep('.', { containers: big.name, destination: `artifact:${nightly()}`, tag: 'cut' }, { env: stepEnv(run) });
    } finally {
      service.faults.cutUploadAfterBytes = undefined;
    }
    expect(r.code).toBe(1);
    expect(failed(r)).toHaveLength(1);
    expect(failed(r)[0]).toMatch(new RegExp(`${big.name} \\(volume ${big.name}: artifact:${nightly()}: cannot upload .* ECONNRESET`));
    expect(failed(r)[0]).not.toContain('%0A');
    await expectUntouched(big.name, 'running');
    // Blobs stored before the cut were deleted with the set that was not written; the cut one never finalized.
    expect(ofRun(run).length).toBeGreaterThan(0);
    expect(live(run)).toEqual([]);

    const restore = await runStep(
      'restore',
      { source: `artifact:${nightly()}`, rename: `${big.name}=${big.name}-2` },
      { env: stepEnv({ ...run, jobId: 'restore' }) },
    );
    expect(restore.code).toBe(1);
    expect(failed(restore)[0]).toMatch(/No complete snapshot set in artifact:/);
    await expect(docker.getContainer(`${big.name}-2`).inspect()).rejects.toMatchObject({ statusCode: 404 });
  });

  it('stores the same set in a directory and as artifacts at once, and a re-run of the same tag does not collide', async () => {
    const run = newRun();
    const store = `dir:${res.tempDir()}/store`;
    const first = await runStep('.', { containers: app, destination: `${store}\nartifact:${nightly()}`, tag: 'both' }, { env: stepEnv(run) });
    expect(first.code, first.stdout).toBe(0);
    const rerun = await runStep('.', { containers: app, destination: `artifact:${nightly()}`, tag: 'both' }, { env: stepEnv({ ...run, attempt: 2 }) });
    expect(rerun.code, rerun.stdout).toBe(0);
    const sets = live(run)
      .filter((a) => a.name.endsWith('.set.json'))
      .map((a) => a.name)
      .sort();
    expect(sets).toEqual([`${nightly()}@both.attempt-1.set.json`, `${nightly()}@both.attempt-2.set.json`]);
    // The same tag again in the same attempt is refused before any work.
    const again = await runStep('.', { containers: app, destination: `artifact:${nightly()}`, tag: 'both' }, { env: stepEnv({ ...run, attempt: 2 }) });
    expect(again.code).toBe(1);
    expect(failed(again)[0]).toMatch(/Snapshot both already exists in artifact:.*Expected a new tag/);
    // A restore reads the newest attempt.
    const list = await runCli(['list', '--source', `artifact:${nightly()}`, '--run-id', String(run.runId), '--repository', REPOSITORY], { env: cliEnv() });
    expect(list.stdout.split('\n').filter((l) => l.startsWith('both '))).toHaveLength(1);
  });
});
