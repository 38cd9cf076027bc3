import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { Resources, docker, runContainer } from '../support/fixtures.js';
import { DirDestination } from '../../src/destinations/dir/index.js';
import { localImageName } from '../../src/snapshot/container-restore.js';
import { runCli } from '../support/runner.js';

const version = JSON.parse(readFileSync('package.json', 'utf8')).version as string;

describe('the bundled CLI as a newcomer meets it', () => {
  const res = new Resources(inject('runPrefix'), 'cli');
  const env = { DOCKER_CONFIG: '/nonexistent' };
  let app: string;
  let volume: string;
  let store: string;

  beforeAll(async () => {
    app = res.name('app');
    store = `dir:${join(res.tempDir(), 'store')}`;
    volume = res.volume('v');
    await runContainer(
      { name: app, Image: inject('fixtureImage'), Cmd: ['sh', '-c', 'echo rows > /v/table; exec sleep 100000'], HostConfig: { Binds: [`${volume}:/v`] } },
      'running',
    );
  });

  afterAll(() => res.cleanup());

  it.each(['backup', 'restore', 'list', 'verify', 'ls', 'extract', 'diff'])(
    '%s --help (and help with it) prints its own flags, one line each, and exit 0',
    async (command) => {
      const a = await runCli([command, '--help']);
      const b = await runCli(['help', command]);
      expect(a.code).toBe(0);
      expect(b.stdout).toBe(a.stdout);
      expect(a.stdout).toMatch(new RegExp(`^node dist/cli.js ${command}: `));
      expect(a.stdout).toMatch(
        /^ {2}--source LOCATION +where to read: .* \(default: dir:\.\/container-snapshots\)$|^ {2}--containers LIST +names, IDs, .* \(default: all\)$/m,
      );
      expect(a.stdout).toMatch(/^ {2}--registry-password-stdin +read the registry password from stdin/m);
    },
  );

  it('prints the version, and the usage with exit 2 when given nothing', async () => {
    const v = await runCli(['--version']);
    expect([v.code, v.stdout]).toEqual([0, `${version}\n`]);
    const none = await runCli([]);
    expect(none.code).toBe(2);
    expect(none.stdout).toMatch(/^Usage: node dist\/cli.js COMMAND/m);
    expect(none.stdout).toMatch(/Exit status: 0 .*, 1 .*, 2 .*, 130\/143/);
  });

  it('says a backup with no match in one line, and its JSON names no snapshot', async () => {
    const ghost = res.name('ghost');
    const r = await runCli(['backup', '--containers', ghost, '--destination', store], { env });
    expect(r.code).toBe(1);
    // The engine it read is named first (see Remote engines in the README).
    expect(r.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/^Engine: .*Engine \d+\.\d+.* \(API \d+\.\d+\) at unix:\/\//),
      `error: 1 container(s) failed: ${ghost} (no such container: ${ghost})`,
    ]);
    const json = JSON.parse(r.stdout);
    expect(json).not.toHaveProperty('snapshot');
    expect(json.failed).toBe(1);
  });

  it('names the container a missing name is a slip of a key away from', async () => {
    const slip = `${app.slice(0, -1)}x`;
    const r = await runCli(['backup', '--containers', slip, '--destination', store], { env });
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n').at(-1)).toBe(`error: 1 container(s) failed: ${slip} (no such container: ${slip}; did you mean ${app}?)`);
  });

  it('gives the reason of a failed container once, and names the set that was written without it', async () => {
    const ghost = res.name('ghost-2');
    const r = await runCli(['backup', '--containers', `${app},${ghost}`, '--destination', store, '--tag', 'partial'], { env });
    expect(r.code).toBe(1);
    expect(r.stderr.split(`no such container: ${ghost}`)).toHaveLength(2);
    expect(r.stderr).toContain(`${ghost}: not found; the others go on\n`);
    expect(
      r.stderr
        .trim()
        .split('\n')
        .filter((l) => l.startsWith('error: ')),
    ).toEqual([`error: 1 container(s) failed: ${ghost} (no such container: ${ghost})`]);
    expect(JSON.parse(r.stdout).snapshot).toBe('partial');
    const set = await new DirDestination(store, store.slice('dir:'.length)).readSet('partial');
    expect(set?.tool).toEqual({ name: 'container-snapshot', version });
  });

  it('records in the set the commit and the workflow run it was taken in, from the environment of a workflow step', async () => {
    const sha = 'c0ffee'.padEnd(40, '0');
    const inRun = { ...env, GITHUB_SHA: sha, GITHUB_REPOSITORY: 'acme/app', GITHUB_RUN_ID: '7' };
    const r = await runCli(['backup', '--containers', app, '--destination', store, '--tag', 'in-a-run'], { env: inRun });
    expect(r.code, r.stderr).toBe(0);
    const set = await new DirDestination(store, store.slice('dir:'.length)).readSet('in-a-run');
    expect(set?.source).toMatchObject({ revision: sha, run: 'acme/app/actions/runs/7' });
  });

  it('lists in a dry run the destinations it would write', async () => {
    const r = await runCli(['backup', '--containers', app, '--destination', store, '--dry-run', '--tag', 'planned'], { env });
    expect(r.code, r.stderr).toBe(0);
    const json = JSON.parse(r.stdout);
    expect(json.snapshot).toBe('planned');
    expect(json.destinations).toEqual([{ destination: store, written: false }]);
    expect(json.containers.map((c: { name: string; status: string }) => [c.name, c.status])).toEqual([[app, 'planned']]);
  });

  it('says each long phase of a backup and of a restore as it starts', async () => {
    // A store of its own: the first set of a container commits its whole writable layer; the next one stores a delta.
    const store = `dir:${join(res.tempDir(), 'phases')}`;
    const r = await runCli(['backup', '--containers', app, '--destination', store, '--tag', 'said'], { env });
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stderr.split('\n');
    const at = (pattern: RegExp) => lines.findIndex((l) => pattern.test(l));
    expect(at(new RegExp(`^${app}: committing the writable layer$`))).toBeGreaterThanOrEqual(0);
    // Read from the engine's own store: the tests run as root against a local overlay2 engine (host-image-store.ts).
    expect(at(new RegExp(`^${app}: reading the image \\(\\d+ layer\\(s\\)\\) from the engine's image store on this host$`))).toBeGreaterThan(at(/committing/));
    expect(at(new RegExp(`^${app}: (storing|checking) layer 1 of \\d+ \\(`))).toBeGreaterThan(at(/reading the image/));
    expect(at(new RegExp(`^Writing snapshot set said to ${store.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}$`))).toBeGreaterThan(at(/layer 1 of/));
    execFileSync('docker', ['exec', app, 'sh', '-c', 'echo changed > /phases-changed']);
    const next = await runCli(['backup', '--containers', app, '--destination', store, '--tag', 'said-next'], { env });
    expect(next.code, next.stderr).toBe(0);
    const nextLines = next.stderr.split('\n');
    const nextAt = (pattern: RegExp) => nextLines.findIndex((l) => pattern.test(l));
    expect(
      nextAt(new RegExp(`^${app}: reading what changed in the writable layer since the last snapshot: \\d+ path\\(s\\), \\d+ removed$`)),
    ).toBeGreaterThanOrEqual(0);
    expect(nextAt(new RegExp(`^${app}: storing the writable layer's changes \\(`))).toBeGreaterThan(nextAt(/reading what changed/));
    expect(nextAt(/committing the writable layer/)).toBe(-1);

    const copy = res.name('copy');
    const volumeCopy = res.volume('v-copy');
    res.image(`${localImageName(app)}:said`);
    const restored = await runCli(['restore', '--source', store, '--snapshot', 'said', '--rename', `${app}=${copy}`, '--rename', `${volume}=${volumeCopy}`], {
      env,
    });
    expect(restored.code, restored.stderr).toBe(0);
    const told = restored.stderr.split('\n');
    const seen = (pattern: RegExp) => told.findIndex((l) => pattern.test(l));
    expect(seen(/^Restoring 1 container\(s\); each blob is checked as it is read$/)).toBeGreaterThanOrEqual(0);
    // The layers of the base image the engine holds are said and not read (held-layers.ts).
    expect(
      seen(
        new RegExp(
          `^${app}: loading image sha256:[0-9a-f]{12} \\(\\d+ layer\\(s\\)(, (the first \\d+|all) on the engine already, not read)?\\) into the engine$`,
        ),
      ),
    ).toBeGreaterThan(seen(/^Restoring 1 container/));
    // The volume fills while the image loads: both are said, in either order.
    expect(seen(new RegExp(`^${app}: filling volume '${volumeCopy}'$`))).toBeGreaterThan(seen(/^Restoring 1 container/));
    expect((await docker.getContainer(copy).inspect()).State.Running).toBe(true);
  });

  it("says the reason of a refused restore once, in the CLI's flags, and changes nothing", async () => {
    const b = await runCli(['backup', '--containers', app, '--destination', store, '--tag', 'refused'], { env });
    expect(b.code, b.stderr).toBe(0);
    res.image(`${localImageName(app)}:refused`);
    const before = (await docker.getContainer(app).inspect()).Id;
    const r = await runCli(['restore', '--source', store, '--snapshot', 'refused'], { env });
    expect(r.code).toBe(1);
    // The copy beside it needs its volume renamed too (the original mounts it): the hint names both.
    const reason = `container '${app}' exists (--replace replaces it, --rename ${app}=NEW,${volume}=NEW restores it beside it)`;
    expect(r.stderr.split(reason)).toHaveLength(2);
    expect(r.stderr.trim().split('\n').at(-1)).toContain(reason);
    expect(r.stderr.trim().split('\n').at(-1)).toMatch(/^error: /);
    expect((await docker.getContainer(app).inspect()).Id).toBe(before);
    // Followed as said, it restores.
    const [copy, volumeCopy] = [res.name('hinted'), res.volume('v-hinted')];
    const hinted = await runCli(['restore', '--source', store, '--snapshot', 'refused', '--rename', `${app}=${copy},${volume}=${volumeCopy}`], { env });
    expect(hinted.code, hinted.stderr).toBe(0);
    expect(execFileSync('docker', ['exec', copy, 'cat', '/v/table'], { encoding: 'utf8' })).toBe('rows\n');
  });

  it('says each retry of a registry that refuses connections, then fails in one error line', async () => {
    const server = createServer();
    const port = await new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)));
    await new Promise((r) => server.close(r));
    const r = await runCli(['list', '--source', `registry:127.0.0.1:${port}/x`], { env });
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines.filter((l) => / ECONNREFUSED .*; retrying in \d+\.\d s \(try \d of 5\)$/.test(l))).toHaveLength(4);
    expect(lines.filter((l) => l.startsWith('error: '))).toEqual([lines.at(-1)]);
  }, 30_000);
});
