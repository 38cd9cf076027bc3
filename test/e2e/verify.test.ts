import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Resources, docker, runContainer } from '../support/fixtures.js';
import { backUp } from '../support/commands.js';
import { runCli, runStep, type StepResult } from '../support/runner.js';
import { DirDestination } from '../../src/destinations/dir/index.js';
import { IDENTITY_ENV } from '../../src/core/words.js';
import { verifySets } from '../../src/snapshot/verify.js';
import { quietLog } from '../support/fixtures.js';

/** Flips one byte in the middle of a stored blob of a dir: location. */
function tamper(store: string, digest: string): void {
  const file = join(store, 'blobs', 'sha256', digest.slice('sha256:'.length));
  const bytes = readFileSync(file);
  bytes[bytes.length >> 1] ^= 0xff;
  writeFileSync(file, bytes);
}

/** The step's error annotations (the runner's `::error::` lines). */
const errors = (r: StepResult) => r.stdout.split('\n').filter((l) => l.startsWith('::error::'));

type Verified = { snapshot: string; name: string; from: string; blobs: number; status: string; error?: string };

/** The restore action's verify-only and the CLI's verify: every blob read and checked, per container, nothing changed. */
describe('verification through the bundled restore action and CLI', () => {
  const res = new Resources(inject('runPrefix'), 'verify');
  const app = res.name('app');
  const other = res.name('other');
  const vol = res.volume('data');
  const env = { DOCKER_CONFIG: '/nonexistent' };
  let dir = '';

  /** The engine objects of this test: containers, volumes and images whose names carry its prefix. */
  async function ours(): Promise<string[]> {
    const containers = await docker.listContainers({ all: true, filters: { name: [res.prefix] } });
    const volumes = (await docker.listVolumes({ filters: { name: [res.prefix] } })).Volumes ?? [];
    const images = await docker.listImages({ all: true });
    return [
      ...containers.map((c) => `container ${c.Id} ${c.State}`),
      ...volumes.map((v) => `volume ${v.Name}`),
      ...images.flatMap((i) => (i.RepoTags ?? []).filter((t) => t.includes(res.prefix)).map((t) => `image ${t}`)),
    ].sort();
  }

  /** A location with sets of `app` and `other`, tagged `tags` in that order (so the last is latest). */
  async function storeWith(name: string, tags: string[]): Promise<string> {
    const store = join(dir, name);
    for (const tag of tags) {
      // A change in `other` before each set, so that each holds an image config of its own (an unchanged container's is the earlier set's).
      execFileSync('docker', ['exec', other, 'sh', '-c', `echo ${tag} > /set-tag`]);
      await backUp({ containers: `${app},${other}`, destination: `dir:${store}`, tag });
    }
    return store;
  }

  /** The stored digest of container `name`'s image config in set `tag` (`other`'s: a blob no other set of storeWith shares, as it changed before each). */
  async function configDigest(store: string, tag: string, name: string): Promise<string> {
    const set = await new DirDestination(`dir:${store}`, store).readSet(tag);
    return set!.containers.find((c) => c.name === name)!.image.config.digest;
  }

  beforeAll(async () => {
    dir = res.tempDir();
    await runContainer(
      { name: app, Image: inject('fixtureImage'), Cmd: ['sh', '-c', 'echo rows > /data/t; exec sleep 100000'], HostConfig: { Binds: [`${vol}:/data`] } },
      'running',
    );
    await runContainer({ name: other, Image: inject('fixtureImage'), Cmd: ['sleep', '100000'] }, 'running');
  });
  afterAll(() => res.cleanup());

  it('verify-only on a good set reports each container and changes nothing on the engine; it needs no engine at all', async () => {
    const store = await storeWith('good', ['g-1', 'g-2']);
    const before = await ours();
    const r = await runStep('restore', { source: `dir:${store}`, 'verify-only': 'true' }, { env });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.outputs.snapshot).toBe('g-2');
    expect(r.outputs.failed).toBe('0');
    const containers = JSON.parse(r.outputs.containers) as Verified[];
    expect(containers.map((c) => [c.snapshot, c.name, c.status])).toEqual([
      ['g-2', app, 'ok'],
      ['g-2', other, 'ok'],
    ]);
    // app: image config, its layer(s), the volume (and its side record when there is one)
    expect(containers[0].blobs).toBeGreaterThanOrEqual(3);
    expect(r.stdout).toContain(`g-2: ok, 2 container(s)`);
    expect(r.stdout).toContain(`  ${app}: ok, ${containers[0].blobs} blob(s)`);
    expect(r.summary).toContain('### Verified snapshot g-2');
    expect(r.summary).toContain(`<tr><td>g-2</td><td>${other}</td>`);
    expect(await ours()).toEqual(before);

    // No engine: the main step and its post step both pass, with the same report.
    const noEngine = { ...env, DOCKER_HOST: `unix://${join(dir, 'no-engine.sock')}` };
    const blind = await runStep('restore', { source: `dir:${store}`, snapshot: 'g-1', 'verify-only': 'true' }, { env: noEngine });
    expect(blind.code, blind.stdout + blind.stderr).toBe(0);
    expect(blind.outputs.snapshot).toBe('g-1');
    const post = await runStep('restore', { 'verify-only': 'true' }, { phase: 'post', state: blind.state, env: noEngine });
    expect(post.code, post.stdout + post.stderr).toBe(0);
    expect(errors(post)).toEqual([]);
    expect(await ours()).toEqual(before);
  });

  it('refuses the inputs of a restore with verify-only, in one line', async () => {
    const r = await runStep('restore', { source: `dir:${join(dir, 'good')}`, 'verify-only': 'true', rename: `${app}=x` }, { env });
    expect(r.code).toBe(1);
    expect(errors(r)).toEqual([
      '::error::rename cannot be used with verify-only: true. Expected them empty: a verification reads every container of the set and restores nothing.',
    ]);
  });

  it('a tampered blob fails the step and the CLI with one line naming the set, the container and the blob; the other container passes', async () => {
    const store = await storeWith('tampered', ['t-1']);
    const digest = await configDigest(store, 't-1', app);
    tamper(store, digest);
    const before = await ours();
    const r = await runStep('restore', { source: `dir:${store}`, snapshot: 't-1', 'verify-only': 'true' }, { env });
    expect(r.code).toBe(1);
    expect(r.outputs.failed).toBe('1');
    const containers = JSON.parse(r.outputs.containers) as Verified[];
    expect(containers.map((c) => [c.name, c.status])).toEqual([
      [app, 'failed'],
      [other, 'ok'],
    ]);
    expect(containers[0].error).toContain(digest);
    const [line, ...more] = errors(r);
    expect(more).toEqual([]);
    expect(line).toMatch(
      new RegExp(`^::error::1 damaged: snapshot t-1 container ${app} \\(${app} image config \\(dir:.*\\): checksum mismatch \\(expected ${digest}, `),
    );
    expect(r.summary).toContain('❌');
    expect(await ours()).toEqual(before);

    const cli = await runCli(['verify', '--source', `dir:${store}`], { env });
    expect(cli.code).toBe(1);
    expect(cli.stdout).toMatch(/^t-1: DAMAGED \(1 of 2 container\(s\)\), \d+ blob\(s\) verified$/m);
    expect(cli.stdout).toContain(`  ${app}: DAMAGED: ${app} image config`);
    expect(cli.stdout).toMatch(new RegExp(`^  ${other}: ok, \\d+ blob\\(s\\)$`, 'm'));
    const stderr = cli.stderr.trim().split('\n');
    expect(stderr.filter((l) => l.startsWith('error:'))).toEqual([
      expect.stringMatching(new RegExp(`^error: 1 damaged: snapshot t-1 container ${app} .*${digest}`)),
    ]);
  });

  it('an encrypted set passes with the right key; no key or a wrong key fails with one line', async () => {
    const keyFile = join(dir, 'key.txt');
    const wrongFile = join(dir, 'wrong.txt');
    execFileSync('age-keygen', ['-o', keyFile], { stdio: 'ignore' });
    execFileSync('age-keygen', ['-o', wrongFile], { stdio: 'ignore' });
    const recipient = execFileSync('age-keygen', ['-y', keyFile], { encoding: 'utf8' }).trim();
    const store = join(dir, 'sealed');
    await backUp({ containers: `${app},${other}`, destination: `dir:${store}`, tag: 'e-1', 'encryption-recipients': recipient });
    const source = `dir:${store}`;

    const right = await runStep('restore', { source, 'verify-only': 'true', 'decryption-identity': keyFile }, { env });
    expect(right.code, right.stdout + right.stderr).toBe(0);
    expect((JSON.parse(right.outputs.containers) as Verified[]).map((c) => c.status)).toEqual(['ok', 'ok']);

    const none = await runStep('restore', { source, 'verify-only': 'true' }, { env });
    expect(none.code).toBe(1);
    expect(errors(none)).toEqual([expect.stringMatching(/^::error::.*is encrypted \(age\)\. Expected decryption-identity or decryption-passphrase\.$/)]);

    const wrong = await runStep('restore', { source, 'verify-only': 'true', 'decryption-identity': wrongFile }, { env });
    expect(wrong.code).toBe(1);
    expect(errors(wrong)).toEqual([
      expect.stringMatching(
        /^::error::.*cannot be decrypted with the key or passphrase given: it was encrypted for another\. Expected the identity or passphrase it was made with \(decryption-identity or decryption-passphrase\)/,
      ),
    ]);

    const cli = await runCli(['verify', '--source', source, '--decryption-identity', keyFile], { env });
    expect(cli.code, cli.stderr).toBe(0);
    expect(cli.stdout).toMatch(/^e-1: ok, 2 container\(s\), \d+ blob\(s\) verified$/m);
    const cliWrong = await runCli(['verify', '--source', source, '--all'], { env: { ...env, [IDENTITY_ENV]: readFileSync(wrongFile, 'utf8') } });
    expect(cliWrong.code).toBe(1);
    expect(cliWrong.stdout).toMatch(
      /^e-1: DAMAGED: Snapshot e-1 in dir:.* cannot be decrypted with the key or passphrase given: it was encrypted for another\. Expected the identity or passphrase it was made with \(--decryption-identity FILE/m,
    );
  });

  it('--all (CLI) and snapshot: all (action) verify every set, one line per set and per container, and fail naming the damaged one', async () => {
    const store = await storeWith('many', ['m-1', 'm-2', 'm-3']);
    const digest = await configDigest(store, 'm-2', other);
    tamper(store, digest);
    const before = await ours();

    const cli = await runCli(['verify', '--source', `dir:${store}`, '--all'], { env });
    expect(cli.code).toBe(1);
    const lines = cli.stdout.trim().split('\n');
    expect(lines.map((l) => l.replace(/\d+ blob/g, 'N blob').replace(/DAMAGED: .*/, 'DAMAGED: …'))).toEqual([
      'm-3: ok, 2 container(s), N blob(s) verified',
      `  ${app}: ok, N blob(s)`,
      `  ${other}: ok, N blob(s)`,
      'm-2: DAMAGED (1 of 2 container(s)), N blob(s) verified',
      `  ${app}: ok, N blob(s)`,
      `  ${other}: DAMAGED: …`,
      'm-1: ok, 2 container(s), N blob(s) verified',
      `  ${app}: ok, N blob(s)`,
      `  ${other}: ok, N blob(s)`,
    ]);
    expect(
      cli.stderr
        .trim()
        .split('\n')
        .filter((l) => l.startsWith('error:')),
    ).toEqual([expect.stringMatching(new RegExp(`^error: 1 damaged: snapshot m-2 container ${other} .*${digest}`))]);
    const both = await runCli(['verify', '--source', `dir:${store}`, '--all', '--snapshot', 'm-1'], { env });
    expect([both.code, both.stderr.trim()]).toEqual([1, 'error: --all and --snapshot both choose the sets to verify. Expected one of them.']);

    const r = await runStep('restore', { source: `dir:${store}`, snapshot: 'all', 'verify-only': 'true' }, { env });
    expect(r.code).toBe(1);
    expect(r.outputs.snapshot).toBe('m-3,m-2,m-1');
    expect(r.outputs.failed).toBe('1');
    const failed = (JSON.parse(r.outputs.containers) as Verified[]).filter((c) => c.status === 'failed');
    expect(failed.map((c) => [c.snapshot, c.name])).toEqual([['m-2', other]]);
    expect(errors(r)).toHaveLength(1);
    expect(r.summary).toContain('### Verified 3 snapshot sets');
    expect(await ours()).toEqual(before);

    mkdirSync(join(dir, 'empty'));
    const empty = await runCli(['verify', '--source', `dir:${join(dir, 'empty')}`, '--all'], { env });
    expect([empty.code, empty.stderr.trim()]).toEqual([1, `error: No snapshot set in dir:${join(dir, 'empty')}.`]);
  });

  it('over every set, reads each blob the sets share once', async () => {
    const store = await storeWith('shared', ['s-1', 's-2', 's-3']);
    const dest = new DirDestination(`dir:${store}`, store);
    const reads: string[] = [];
    const readBlob = dest.readBlob.bind(dest);
    dest.readBlob = (scope, digest) => {
      reads.push(`${JSON.stringify(scope)} ${digest}`);
      return readBlob(scope, digest);
    };
    const report = await verifySets(dest, 'all', quietLog);
    expect(report.failed).toBe(0);
    const referenced = report.sets.flatMap((s) => s.containers).reduce((n, c) => n + c.blobs, 0);
    // once per scope: a registry keeps each container's layers in a repository of its own
    expect(reads.length).toBe(new Set(reads).size);
    // each set's own image configs at least; the layers and volumes they share, once
    expect(reads.length).toBeGreaterThanOrEqual(6);
    expect(reads.length).toBeLessThan(referenced);
  });
});
