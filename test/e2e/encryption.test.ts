import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Resources, docker, runContainer, treeDigest, waitFor } from '../support/fixtures.js';
import { startArtifactService, type RunningArtifactService, type RunSpec } from '../support/artifact-service.js';
import { runCli, runStep, type StepResult } from '../support/runner.js';

const REPOSITORY = 'octo-org/octo-repo';
const PASSWORD = 'pw-5d1e0b77-never-in-clear';
const TOKEN = 'tk-c03a9e12-never-in-clear';

/** Every file under `root`, recursively. */
function filesUnder(root: string): string[] {
  return readdirSync(root, { recursive: true, encoding: 'utf8' })
    .map((f) => join(root, f))
    .filter((f) => statSync(f).isFile());
}

/** What a step left anywhere a secret must not be: its log (but the runner's mask commands), outputs, state and summary. */
function leftBehind(r: StepResult): string {
  const log = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => !l.startsWith('::add-mask::'));
  return JSON.stringify([log, r.outputs, r.state, r.summary]);
}

/** The bundled actions and CLI with keys: artifact: and dir: encrypted, the keys and the environment's secrets kept out of everything. */
describe('encryption at rest through the bundled actions and the CLI', () => {
  const res = new Resources(inject('runPrefix'), 'enc');
  const app = res.name('app');
  const vol = res.volume('data');
  let service: RunningArtifactService;
  let identity = '';
  let recipient = '';
  let store = '';
  let clearStore = '';
  const run: RunSpec = { runId: 9301, repository: REPOSITORY, jobId: 'backup' };
  const stepEnv = (jobId: string) => ({ ...service.env({ ...run, jobId }), DOCKER_CONFIG: '/nonexistent' });
  const destination = () => `artifact:${res.prefix}\ndir:${store}`;

  beforeAll(async () => {
    service = await startArtifactService();
    const dir = res.tempDir();
    store = join(dir, 'store');
    clearStore = join(dir, 'clear');
    execFileSync('age-keygen', ['-o', join(dir, 'key.txt')], { stdio: 'ignore' });
    identity = readFileSync(join(dir, 'key.txt'), 'utf8')
      .split('\n')
      .find((l) => l.startsWith('AGE-SECRET-KEY-'))!;
    recipient = execFileSync('age-keygen', ['-y', join(dir, 'key.txt')], { encoding: 'utf8' }).trim();
    await runContainer(
      {
        name: app,
        Image: inject('fixtureImage'),
        Env: [`DB_PASSWORD=${PASSWORD}`, `API_TOKEN=${TOKEN}`, 'MODE=primary'],
        Cmd: ['sh', '-c', 'test -f /data/db.txt || echo precious > /data/db.txt; exec sleep 100000'],
        HostConfig: { Binds: [`${vol}:/data`] },
      },
      'running',
    );
    await waitFor(() =>
      treeDigest(app, '/data/db.txt').then(
        () => true,
        () => false,
      ),
    );
  });
  afterAll(async () => {
    await service?.stop();
    await res.cleanup();
  });

  it('a backup without a key warns, naming the variables that look secret and never their values', async () => {
    const r = await runStep('.', { containers: app, destination: `dir:${clearStore}`, tag: 'clear-1' }, { env: stepEnv('clear') });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const warnings = r.stdout.split('\n').filter((l) => l.startsWith('::warning::'));
    expect(warnings.some((w) => w.includes('API_TOKEN, DB_PASSWORD, whose names look secret'))).toBe(true);
    expect(leftBehind(r)).not.toContain(PASSWORD);
    expect(leftBehind(r)).not.toContain(TOKEN);
  });

  it('backs up to artifact: and dir: encrypted: no secret in the stored bytes, the log, the outputs, the state or the summary', async () => {
    const r = await runStep('.', { containers: app, destination: destination(), tag: 'e-1', 'encryption-recipients': recipient }, { env: stepEnv('backup') });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).not.toContain('whose names look secret');
    for (const secret of [PASSWORD, TOKEN]) {
      expect(leftBehind(r)).not.toContain(secret);
      for (const f of [...filesUnder(store), ...filesUnder(service.dir)]) expect(readFileSync(f).includes(secret), f).toBe(false);
    }
    // The clear store, for contrast, holds them (the set document and the image config).
    expect(filesUnder(clearStore).some((f) => readFileSync(f).includes(PASSWORD))).toBe(true);
  });

  it('the CLI lists the encrypted set without a key, verifies it with the key from the environment, and refuses a key on argv', async () => {
    const list = await runCli(['list', '--source', `dir:${store}`], { env: { DOCKER_CONFIG: '/nonexistent' } });
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`^e-1\\s.*${app}`, 'm'));
    const noKey = await runCli(['verify', '--source', `dir:${store}`, '--snapshot', 'e-1'], { env: { DOCKER_CONFIG: '/nonexistent' } });
    expect(noKey.code).toBe(1);
    expect(noKey.stderr.trim()).toBe(
      `error: Snapshot e-1 in dir:${store} is encrypted (age). Expected --decryption-identity FILE (or CONTAINER_SNAPSHOT_DECRYPTION_IDENTITY), or --decryption-passphrase-stdin (or CONTAINER_SNAPSHOT_DECRYPTION_PASSPHRASE).`,
    );
    const verify = await runCli(['verify', '--source', `dir:${store}`, '--snapshot', 'e-1'], {
      env: { DOCKER_CONFIG: '/nonexistent', CONTAINER_SNAPSHOT_DECRYPTION_IDENTITY: identity },
    });
    expect(verify.code, verify.stderr).toBe(0);
    expect(verify.stdout).toMatch(/^e-1: ok, 1 container\(s\), \d+ blob\(s\) verified$/m);
    expect(verify.stdout + verify.stderr).not.toContain(identity);
    const onArgv = await runCli(['restore', '--source', `dir:${store}`, '--decryption-identity', identity], { env: { DOCKER_CONFIG: '/nonexistent' } });
    expect(onArgv.code).toBe(1);
    expect(onArgv.stderr).toContain('--decryption-identity takes a file: a key on the command line shows in ps.');
  });

  it('a restore with a wrong key fails with one error and changes nothing; with the key it brings the container back', async () => {
    // This test's volumes only: other runs share the engine.
    const ours = async () =>
      ((await docker.listVolumes()).Volumes ?? [])
        .map((v) => v.Name)
        .filter((n) => n.includes(res.prefix))
        .sort();
    const volumesBefore = await ours();
    const other = execFileSync('age-keygen', { encoding: 'utf8' })
      .split('\n')
      .find((l) => l.startsWith('AGE-SECRET-KEY-'))!;
    const wrong = await runStep(
      'restore',
      { source: `artifact:${res.prefix}`, rename: `${app}=${app}-copy,${vol}=${vol}-copy`, 'decryption-identity': other },
      { env: stepEnv('wrong') },
    );
    expect(wrong.code).toBe(1);
    const errors = wrong.stdout.split('\n').filter((l) => l.startsWith('::error::'));
    expect(errors).toEqual([
      `::error::Snapshot e-1 in artifact:${res.prefix} cannot be decrypted with the key or passphrase given: it was encrypted for another. Expected the identity or passphrase it was made with (decryption-identity or decryption-passphrase).`,
    ]);
    expect(leftBehind(wrong)).not.toContain(other);
    await expect(docker.getContainer(`${app}-copy`).inspect()).rejects.toMatchObject({ statusCode: 404 });
    expect(await ours()).toEqual(volumesBefore);

    const before = await treeDigest(app, '/data');
    await docker.getContainer(app).remove({ force: true });
    await docker.getVolume(vol).remove();
    const r = await runStep('restore', { source: `artifact:${res.prefix}`, 'decryption-identity': identity }, { env: stepEnv('restore') });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain(`::add-mask::${identity}`);
    for (const secret of [identity, PASSWORD, TOKEN]) expect(leftBehind(r)).not.toContain(secret);
    const info = await docker.getContainer(app).inspect();
    res.image(info.Config.Image);
    expect(info.Config.Env).toEqual(expect.arrayContaining([`DB_PASSWORD=${PASSWORD}`, `API_TOKEN=${TOKEN}`]));
    expect(await treeDigest(app, '/data')).toEqual(before);
  });

  it('a passphrase round trip: artifact: and dir: by the actions, the CLI reading the passphrase on stdin', async () => {
    const passphrase = 'e2e passphrase 6f0d';
    const name = `${res.prefix}-pass`;
    const passStore = join(store, '..', 'pass');
    const b = await runStep(
      '.',
      { containers: app, destination: `artifact:${name}\ndir:${passStore}`, tag: 'p-1', 'encryption-passphrase': passphrase },
      { env: stepEnv('pass-backup') },
    );
    expect(b.code, b.stdout + b.stderr).toBe(0);
    expect(b.stdout).toContain(`::add-mask::${passphrase}`);
    for (const secret of [passphrase, PASSWORD]) expect(leftBehind(b)).not.toContain(secret);
    for (const f of filesUnder(passStore)) expect(readFileSync(f).includes(PASSWORD), f).toBe(false);

    const verify = await runCli(['verify', '--source', `dir:${passStore}`, '--snapshot', 'p-1', '--decryption-passphrase-stdin'], {
      env: { DOCKER_CONFIG: '/nonexistent' },
      input: `${passphrase}\n`,
    });
    expect(verify.code, verify.stderr).toBe(0);
    expect(verify.stdout).toMatch(/^p-1: ok, 1 container\(s\), \d+ blob\(s\) verified$/m);

    const copy = res.name('pass-copy');
    const copyVol = res.volume('pass-data');
    const r = await runStep(
      'restore',
      { source: `artifact:${name}`, rename: `${app}=${copy},${vol}=${copyVol}`, 'decryption-passphrase': passphrase },
      { env: stepEnv('pass-restore') },
    );
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(leftBehind(r)).not.toContain(passphrase);
    const info = await docker.getContainer(copy).inspect();
    res.image(info.Config.Image);
    expect(info.Config.Env).toContain(`DB_PASSWORD=${PASSWORD}`);
    expect(await treeDigest(copy, '/data')).toEqual(await treeDigest(app, '/data'));
  });
});
