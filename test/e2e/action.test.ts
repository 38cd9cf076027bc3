import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Resources, docker, runContainer, treeDigest, waitFor } from '../support/fixtures.js';
import { runCli, runStep } from '../support/runner.js';

const version = JSON.parse(readFileSync('package.json', 'utf8')).version as string;

describe('the bundled actions and CLI, run as a runner runs them', () => {
  const res = new Resources(inject('runPrefix'), 'e2e');
  const reg = inject('registry');
  let store: string;
  const vol = res.volume('data');
  const env = { DOCKER_CONFIG: '/nonexistent', GITHUB_SHA: 'f'.repeat(40), GITHUB_REPOSITORY: 'acme/app', GITHUB_RUN_ID: '42' };

  beforeAll(async () => {
    store = join(res.tempDir(), 'store');
    await runContainer(
      {
        name: res.name('app'),
        Image: inject('fixtureImage'),
        Cmd: ['sh', '-c', 'test -f /data/db.txt || echo precious > /data/db.txt; exec sleep 100000'],
        HostConfig: { Binds: [`${vol}:/data`] },
      },
      'running',
    );
    await waitFor(
      async () =>
        await treeDigest(res.name('app'), '/data/db.txt').then(
          () => true,
          () => false,
        ),
    );
  });

  afterAll(() => res.cleanup());

  it('backs up with the backup action (main, then post) and restores with the restore action', async () => {
    const app = res.name('app');
    const before = await treeDigest(app, '/data');
    const main = await runStep('.', { containers: app, destination: `dir:${store}`, tag: 'e2e-1' }, { env });
    expect(main.code, main.stdout + main.stderr).toBe(0);
    expect(main.outputs.snapshot).toBe('e2e-1');
    expect(main.outputs.failed).toBe('0');
    const containers = JSON.parse(main.outputs.containers) as Array<{
      name: string;
      status: string;
      volumes: string[];
      pausedMs: number;
      destinations: Array<{ ref: string }>;
    }>;
    expect(containers).toHaveLength(1);
    expect(containers[0]).toMatchObject({ name: app, status: 'ok', volumes: [vol] });
    expect(containers[0].destinations[0].ref).toContain('e2e-1');
    expect(main.summary).toContain('<tr><th>Container</th><th>State</th><th>Result</th>');
    expect(main.summary).toContain(app);
    expect(main.summary.trimEnd().endsWith(`<sub>container-snapshot ${version}</sub>`)).toBe(true);
    expect(JSON.parse(main.state.pending)).toEqual({ paused: [], stopped: [], tempImages: [] });

    const post = await runStep('.', {}, { phase: 'post', state: main.state, env });
    expect(post.code, post.stdout).toBe(0);

    await docker.getContainer(app).remove({ force: true });
    await docker.getVolume(vol).remove();
    const restored = await runStep('restore', { source: `dir:${store}`, snapshot: 'e2e-1' }, { env });
    expect(restored.code, restored.stdout + restored.stderr).toBe(0);
    const out = JSON.parse(restored.outputs.containers) as Array<{ name: string; id: string; state: string }>;
    expect(out).toEqual([expect.objectContaining({ name: app, state: 'running', status: 'ok' })]);
    res.image((await docker.getContainer(app).inspect()).Config.Image);
    expect(await treeDigest(app, '/data')).toEqual(before);
    expect(restored.summary).toContain('Restored snapshot e2e-1');
    expect(restored.summary.trimEnd().endsWith(`<sub>container-snapshot ${version}</sub>`)).toBe(true);
  });

  it('gives no snapshot output when no container matched and no set was written', async () => {
    const none = await runStep('.', { containers: `${res.prefix}-none-*`, destination: `dir:${store}` }, { env });
    expect(none.code, none.stdout + none.stderr).toBe(0);
    expect(none.outputs.snapshot).toBe('');
    expect(none.stdout.split('\n').filter((l) => l.includes('No container matched'))).toHaveLength(1);
  });

  it('lists and verifies with the CLI, and refuses bad input in one line', async () => {
    const list = await runCli(['list', '--source', `dir:${store}`]);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/^TAG\s+CREATED/m);
    expect(list.stdout).toContain('e2e-1');
    const verify = await runCli(['verify', '--source', `dir:${store}`, '--snapshot', 'latest']);
    expect(verify.code, verify.stderr).toBe(0);
    expect(verify.stdout).toMatch(/^e2e-1: ok, 1 container\(s\), \d+ blob\(s\) verified$/m);

    const bad = await runCli(['backup', '--destination', 'ftp://x']);
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toContain('Expected dir:PATH, registry:HOST[:PORT]/PREFIX or artifact:NAME');
    const help = await runCli(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^ {2}backup +take a snapshot set/m);
    expect(help.stdout).toContain('node dist/cli.js COMMAND --help');
  });

  it('the post step unpauses a container an interrupted main step left paused', async () => {
    const app = res.name('app');
    const info = await docker.getContainer(app).inspect();
    await docker.getContainer(app).pause();
    const post = await runStep('.', {}, { phase: 'post', state: { isPost: 'true', pending: JSON.stringify({ paused: [info.Id], tempImages: [] }) }, env });
    expect(post.code, post.stdout).toBe(0);
    expect(post.stdout).toContain('Unpaused container');
    expect((await docker.getContainer(app).inspect()).State.Paused).toBe(false);
  });

  it('the post step starts again a container an interrupted main step left stopped', async () => {
    const app = res.name('app');
    const info = await docker.getContainer(app).inspect();
    await docker.getContainer(app).stop({ t: 1 });
    const post = await runStep(
      '.',
      {},
      { phase: 'post', state: { isPost: 'true', pending: JSON.stringify({ paused: [], stopped: [info.Id], tempImages: [] }) }, env },
    );
    expect(post.code, post.stdout).toBe(0);
    expect(post.stdout).toContain(`Started container ${app} again`);
    expect((await docker.getContainer(app).inspect()).State.Running).toBe(true);
  });

  it('masks the registry password and keeps it out of outputs, state and summary', async () => {
    const app = res.name('app');
    const main = await runStep(
      '.',
      {
        containers: app,
        destination: `registry:${reg.host}/${res.prefix}`,
        tag: 'e2e-reg',
        'registry-username': reg.username,
        'registry-password': reg.password,
      },
      { env },
    );
    expect(main.code, main.stdout + main.stderr).toBe(0);
    expect(main.stdout).toContain(`::add-mask::${reg.password}`);
    const elsewhere = [
      main.stdout.replaceAll(`::add-mask::${reg.password}`, ''),
      main.stderr,
      JSON.stringify(main.outputs),
      JSON.stringify(main.state),
      main.summary,
    ].join('\n');
    expect(elsewhere).not.toContain(reg.password);
    const wrong = await runStep(
      '.',
      {
        containers: app,
        destination: `registry:${reg.host}/${res.prefix}`,
        tag: 'e2e-bad',
        'registry-username': reg.username,
        'registry-password': 'not-the-password',
      },
      { env },
    );
    expect(wrong.code).toBe(1);
    expect(wrong.stdout).toMatch(/::error::.*(authentication|unauthorized|401)/i);
  });

  it('takes credentials from a Docker config file, as docker login writes it', async () => {
    const app = res.name('app');
    const config = res.tempDir();
    mkdirSync(config, { recursive: true });
    const auth = Buffer.from(`${reg.username}:${reg.password}`).toString('base64');
    writeFileSync(join(config, 'config.json'), JSON.stringify({ auths: { [reg.host]: { auth } } }));
    const main = await runStep(
      '.',
      { containers: app, destination: `registry:${reg.host}/${res.prefix}`, tag: 'e2e-cfg' },
      { env: { ...env, DOCKER_CONFIG: config } },
    );
    expect(main.code, main.stdout + main.stderr).toBe(0);
    expect(main.stdout).toContain(`::add-mask::${auth}`);
    const list = await runCli(['list', '--source', `registry:${reg.host}/${res.prefix}`], { env: { DOCKER_CONFIG: config } });
    expect(list.stdout).toContain('e2e-cfg');
    expect(list.stdout).toContain('e2e-reg');
  });
});
