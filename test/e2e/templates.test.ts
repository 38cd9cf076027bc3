import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Resources, docker, runContainer, treeDigest, waitFor } from '../support/fixtures.js';
import { runCli, runStep } from '../support/runner.js';
import { startArtifactService } from '../support/artifact-service.js';
import { dispatchInputs, loadWorkflow, playWorkflow, type Contexts, type JobRecord } from '../support/workflow-play.js';

const ACTIONS = { 'OWNER/container-snapshot@v1': '.', 'OWNER/container-snapshot/restore@v1': 'restore' };

/** A job's steps, for a failure message. */
const logOf = (jobs: Record<string, JobRecord>) =>
  Object.entries(jobs)
    .flatMap(([job, r]) => r.steps.map((s) => `--- ${job} / ${s.name ?? s.id}: ${s.outcome}\n${s.log}`))
    .join('\n');

describe('workflow templates, played against the real engine and registry', () => {
  const res = new Resources(inject('runPrefix'), 'tpl');
  const reg = inject('registry');
  const image = inject('fixtureImage');
  /** The runner's own name: the per-host registry prefix is backups/<runner.name>. */
  const runnerName = res.prefix;
  const vars = { BACKUP_REGISTRY: reg.host, BACKUP_REGISTRY_USER: reg.username };
  const secrets = { BACKUP_REGISTRY_PASSWORD: reg.password };
  let dockerConfig: string;
  let env: Record<string, string>;
  const contexts = (runId: string, extra: Contexts = {}): Contexts => ({
    runner: { name: runnerName, os: 'Linux' },
    github: { run_id: runId, run_attempt: '1', workflow: 'templates', ref: 'refs/heads/main', event: { inputs: {} } },
    vars,
    secrets,
    inputs: {},
    matrix: {},
    ...extra,
  });

  async function app(suffix: string, content: string): Promise<{ name: string; volume: string }> {
    const name = res.name(suffix);
    const volume = res.volume(`${suffix}-data`);
    await runContainer(
      {
        name,
        Image: image,
        Cmd: ['sh', '-c', `test -f /data/db.txt || { echo ${content} > /data/db.txt; mkdir -p /data/sub; echo more > /data/sub/x; }; exec sleep 2147483647`],
        HostConfig: { Binds: [`${volume}:/data`] },
      },
      'running',
    );
    await waitFor(() =>
      treeDigest(name, '/data/sub/x').then(
        () => true,
        () => false,
      ),
    );
    return { name, volume };
  }

  /** Local images a restore loaded, so that cleanup removes them. */
  async function trackImage(container: string): Promise<void> {
    res.image((await docker.getContainer(container).inspect()).Config.Image);
  }

  beforeAll(() => {
    dockerConfig = join(res.tempDir(), 'docker-config');
    env = { DOCKER_CONFIG: dockerConfig, GITHUB_SHA: 'a'.repeat(40), GITHUB_REPOSITORY: 'acme/app', GITHUB_RUN_ID: '1' };
  });
  afterAll(() => res.cleanup());

  it('scheduled-backup: logs in, backs up the selected containers to the registry, logs out', async () => {
    const a = await app('sched-a', 'alpha');
    const b = await app('sched-b', 'beta');
    await app('sched-other', 'not-selected');
    const wf = loadWorkflow('scheduled-backup.yml');
    const jobs = await playWorkflow(wf, {
      contexts: contexts('101', { vars: { ...vars, BACKUP_CONTAINERS: `${a.name},${b.name}` } }),
      actions: ACTIONS,
      env,
    });
    expect(jobs.backup.result, logOf(jobs)).toBe('success');
    const backup = jobs.backup.steps.find((s) => s.id === 'backup')!;
    expect(backup.outputs.failed).toBe('0');
    const tag = backup.outputs.snapshot;
    expect(tag).toMatch(/^\d{8}T\d{6}Z$/);
    expect((JSON.parse(backup.outputs.containers) as Array<{ name: string }>).map((c) => c.name).sort()).toEqual([a.name, b.name].sort());
    expect(jobs.backup.steps.at(-1)?.log).toContain(`Stored snapshot set ${tag} (0 container(s) failed)`);
    // docker/login-action's post step logged out again
    expect(JSON.parse(readFileSync(join(dockerConfig, 'config.json'), 'utf8')).auths).toEqual({});

    // The set is in the registry under this runner's prefix, with exactly the selected containers.
    const source = `registry:${reg.host}/backups/${runnerName}`;
    const listConfig = res.tempDir();
    writeFileSync(
      join(listConfig, 'config.json'),
      JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from(`${reg.username}:${reg.password}`).toString('base64') } } }),
    );
    const list = await runCli(['list', '--source', source], { env: { DOCKER_CONFIG: listConfig } });
    expect(list.code, list.stderr).toBe(0);
    const row = list.stdout.split('\n').find((l) => l.startsWith(tag));
    expect(row, list.stdout).toBeDefined();
    expect(row).toContain(' 2 ');
    expect(row).toContain(a.name);
    expect(row).toContain(b.name);
    expect(row).not.toContain('sched-other');
  });

  it('pre-deploy-snapshot: a failed deploy that changed the data is rolled back to the snapshot', async () => {
    const { name, volume } = await app('deploy', 'v1-data');
    const snapshotDir = join(res.tempDir(), 'pre-deploy');
    const before = await treeDigest(name, '/data');
    const wf = loadWorkflow('pre-deploy-snapshot.yml');
    const jobs = await playWorkflow(wf, {
      contexts: contexts('202', { vars: { DEPLOY_CONTAINERS: name, SNAPSHOT_DIR: snapshotDir } }),
      actions: ACTIONS,
      env,
      // The user's deploy: migrates the data, then fails.
      run: (job, step) =>
        job === 'deploy' && step.id === 'deploy'
          ? `docker exec ${name} sh -c 'echo v2-data > /data/db.txt; rm -r /data/sub'\necho "deploy failed" >&2\nexit 1\n`
          : undefined,
    });
    expect(jobs.snapshot.result, logOf(jobs)).toBe('success');
    expect(jobs.snapshot.outputs.snapshot).toBe('pre-deploy-202-1');
    expect(existsSync(join(snapshotDir, 'sets', 'pre-deploy-202-1.json'))).toBe(true);
    expect(jobs.deploy.result).toBe('failure');
    expect(jobs.rollback.result, logOf(jobs)).toBe('success');
    const restore = jobs.rollback.steps.find((s) => s.id === 'restore')!;
    expect(restore.outputs.snapshot).toBe('pre-deploy-202-1');
    expect(restore.outputs.failed).toBe('0');
    await trackImage(name);
    const info = await docker.getContainer(name).inspect();
    expect(info.State.Running).toBe(true);
    expect(info.Mounts.map((m) => m.Name)).toEqual([volume]);
    expect(await treeDigest(name, '/data')).toEqual(before);
  });

  it('pre-deploy-snapshot: a successful deploy is not rolled back', async () => {
    const { name } = await app('deploy-ok', 'v1-data');
    const snapshotDir = join(res.tempDir(), 'pre-deploy');
    const wf = loadWorkflow('pre-deploy-snapshot.yml');
    const jobs = await playWorkflow(wf, {
      contexts: contexts('203', { vars: { DEPLOY_CONTAINERS: name, SNAPSHOT_DIR: snapshotDir } }),
      actions: ACTIONS,
      env,
      run: (job, step) => (job === 'deploy' && step.id === 'deploy' ? `docker exec ${name} sh -c 'echo v2-data > /data/db.txt'\n` : undefined),
    });
    expect(jobs.snapshot.result, logOf(jobs)).toBe('success');
    expect(jobs.deploy.result, logOf(jobs)).toBe('success');
    expect(jobs.rollback.result).toBe('skipped');
    // the deploy's data stays
    const exec = await docker.getContainer(name).exec({ Cmd: ['cat', '/data/db.txt'], AttachStdout: true });
    const stream = await exec.start({});
    let text = '';
    for await (const chunk of stream) text += (chunk as Buffer).toString();
    expect(text).toContain('v2-data');
  });

  it('restore-dispatch: a removed container comes back from this runner’s latest set, and a renamed copy beside it', async () => {
    const { name, volume } = await app('gone', 'keep-me');
    const before = await treeDigest(name, '/data');
    // The backup the scheduled workflow would have taken, into this runner's prefix.
    const backup = await runStep(
      '.',
      {
        containers: name,
        destination: `registry:${reg.host}/backups/${runnerName}`,
        tag: `dispatch-${res.prefix}`,
        'registry-username': reg.username,
        'registry-password': reg.password,
      },
      { env: { ...env, DOCKER_CONFIG: '/nonexistent' } },
    );
    expect(backup.code, backup.stdout + backup.stderr).toBe(0);
    await docker.getContainer(name).remove({ force: true });
    await docker.getVolume(volume).remove();

    const wf = loadWorkflow('restore-dispatch.yml');
    const inputs = dispatchInputs(wf, { containers: name });
    expect(inputs).toEqual({ source: '', snapshot: 'latest', containers: name, rename: '', replace: false, 'run-id': '' });
    const jobs = await playWorkflow(wf, {
      contexts: contexts('303', {
        inputs,
        github: { run_id: '303', event: { inputs: Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, String(v)])) } },
      }),
      actions: ACTIONS,
      env,
    });
    expect(jobs.restore.result, logOf(jobs)).toBe('success');
    const restore = jobs.restore.steps.find((s) => s.id === 'restore')!;
    expect(restore.outputs.snapshot).toBe(`dispatch-${res.prefix}`);
    await trackImage(name);
    expect((await docker.getContainer(name).inspect()).State.Running).toBe(true);
    expect(await treeDigest(name, '/data')).toEqual(before);

    // A copy under new names beside the original, with an explicit source and tag.
    const copy = res.name('gone-copy');
    const copyVolume = res.volume('gone-copy-data');
    const inputs2 = dispatchInputs(wf, {
      source: `registry:${reg.host}/backups/${runnerName}`,
      snapshot: `dispatch-${res.prefix}`,
      containers: name,
      rename: `${name}=${copy},${volume}=${copyVolume}`,
    });
    const jobs2 = await playWorkflow(wf, { contexts: contexts('304', { inputs: inputs2 }), actions: ACTIONS, env });
    expect(jobs2.restore.result, logOf(jobs2)).toBe('success');
    const info = await docker.getContainer(copy).inspect();
    expect(info.Mounts.map((m) => m.Name)).toEqual([copyVolume]);
    expect(await treeDigest(copy, '/data')).toEqual(before);
    expect((await docker.getContainer(name).inspect()).State.Running).toBe(true);
  });

  it('restore-dispatch: restores the artifacts another run stored, by run-id, without logging in to any registry', async () => {
    const { name, volume } = await app('art', 'from-artifacts');
    const before = await treeDigest(name, '/data');
    const service = await startArtifactService();
    try {
      const nightly = { runId: 501, repository: 'acme/app', jobId: 'backup' };
      const backup = await runStep('.', { containers: name, destination: `artifact:${res.prefix}-nightly` }, { env: { ...env, ...service.env(nightly) } });
      expect(backup.code, backup.stdout + backup.stderr).toBe(0);
      await docker.getContainer(name).remove({ force: true });
      await docker.getVolume(volume).remove();

      const wf = loadWorkflow('restore-dispatch.yml');
      const inputs = dispatchInputs(wf, { source: `artifact:${res.prefix}-nightly`, 'run-id': '501' });
      // Days later, another run: its own runtime token, and the workflow's token for the REST API.
      const later = { ...env, ...service.env({ runId: 502, repository: 'acme/app', jobId: 'restore' }) };
      const jobs = await playWorkflow(wf, { contexts: contexts('502', { inputs }), actions: ACTIONS, env: later });
      expect(jobs.restore.result, logOf(jobs)).toBe('success');
      expect(jobs.restore.steps[0].outcome).toBe('skipped');
      expect(jobs.restore.steps.find((s) => s.id === 'restore')?.outputs.snapshot).toBe(backup.outputs.snapshot);
      await trackImage(name);
      expect(await treeDigest(name, '/data')).toEqual(before);
    } finally {
      await service.stop();
    }
  });

  it('verify-weekly: verifies every set, restores the latest under new names without starting it, then removes what it restored', async () => {
    const { name, volume } = await app('verified', 'checked');
    const before = await treeDigest(name, '/data');
    const host = `${res.prefix}-verify`;
    const tag = `verify-${res.prefix}`;
    const backup = await runStep(
      '.',
      { containers: name, destination: `registry:${reg.host}/backups/${host}`, tag, 'registry-username': reg.username, 'registry-password': reg.password },
      { env: { ...env, DOCKER_CONFIG: '/nonexistent' } },
    );
    expect(backup.code, backup.stdout + backup.stderr).toBe(0);
    const copy = res.name('verified-copy');
    const copyVolume = res.volume('verified-copy-data');
    res.image(`container-snapshot/${name}:${tag}`);
    const wf = loadWorkflow('verify-weekly.yml');
    const base = contexts('404');
    const jobs = await playWorkflow(wf, {
      contexts: { ...base, runner: { name: host }, vars: { ...vars, VERIFY_CONTAINERS: name, VERIFY_RENAME: `${name}=${copy},${volume}=${copyVolume}` } },
      actions: ACTIONS,
      env,
    });
    expect(jobs.verify.result, logOf(jobs)).toBe('success');
    const checked = jobs.verify.steps.find((s) => s.name?.startsWith('Verify every set'))!;
    expect(checked.outputs.snapshot).toBe(tag);
    expect(JSON.parse(checked.outputs.containers)).toEqual([expect.objectContaining({ snapshot: tag, name, status: 'ok' })]);
    const restore = jobs.verify.steps.find((s) => s.id === 'restore')!;
    expect(restore.outputs.snapshot).toBe(tag);
    expect(JSON.parse(restore.outputs.containers)).toEqual([expect.objectContaining({ name: copy, from: name, status: 'ok', state: 'created' })]);
    // what the test restored is gone again; the original is untouched
    expect(
      await docker
        .getContainer(copy)
        .inspect()
        .then(
          () => true,
          () => false,
        ),
    ).toBe(false);
    expect(
      await docker
        .getVolume(copyVolume)
        .inspect()
        .then(
          () => true,
          () => false,
        ),
    ).toBe(false);
    expect(
      await docker
        .getImage(`container-snapshot/${name}:${tag}`)
        .inspect()
        .then(
          () => true,
          () => false,
        ),
    ).toBe(false);
    expect((await docker.getContainer(name).inspect()).State.Running).toBe(true);
    expect(await treeDigest(name, '/data')).toEqual(before);

    // Without a rename map it stops before touching anything.
    const refused = await playWorkflow(wf, {
      contexts: { ...base, runner: { name: host }, vars: { ...vars, VERIFY_CONTAINERS: name } },
      actions: ACTIONS,
      env,
    });
    expect(refused.verify.result).toBe('failure');
    expect(refused.verify.steps.map((s) => s.outcome)).toEqual(['failure', 'skipped', 'skipped', 'skipped', 'skipped', 'skipped']);
    expect(refused.verify.steps[0].log).toContain('set the VERIFY_RENAME variable');

    // A new name that is taken already (a volume holding data): the job stops before the restore, and nothing is removed.
    const taken = res.volume('verified-taken');
    await runContainer({ name: res.name('taker'), Image: image, Cmd: ['sh', '-c', 'echo mine > /t/mine'], HostConfig: { Binds: [`${taken}:/t`] } }, 'exited');
    await docker.getContainer(res.name('taker')).remove();
    const clash = await playWorkflow(wf, {
      contexts: { ...base, runner: { name: host }, vars: { ...vars, VERIFY_CONTAINERS: name, VERIFY_RENAME: `${name}=${copy},${volume}=${taken}` } },
      actions: ACTIONS,
      env,
    });
    expect(clash.verify.result).toBe('failure');
    expect(clash.verify.steps.map((s) => s.outcome)).toEqual(['success', 'failure', 'skipped', 'skipped', 'skipped', 'skipped']);
    expect(clash.verify.steps[1].log).toContain(`VERIFY_RENAME names ${taken}, which exists already`);
    expect((await docker.getVolume(taken).inspect()).Name).toBe(taken);
  });
});
