import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, statfsSync, writeFileSync, chmodSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { backup, list, verify } from '../../src/commands.js';
import { parseBackupInputs } from '../../src/core/inputs.js';
import { parseDestination } from '../../src/core/destination-input.js';
import { startFaultyProxy } from '../support/faulty-proxy.js';
import { Resources, commitsOf, quietLog, runContainer, treeDigest, waitFor } from '../support/fixtures.js';
import { runCli, runStep } from '../support/runner.js';

const env = { ...process.env, DOCKER_CONFIG: '/nonexistent' };
const inputs = (values: Record<string, string>) => (name: string) => values[name] ?? '';
const errorLines = (stderr: string) => stderr.split('\n').filter((l) => l.startsWith('error: '));
const esc = (t: string) => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Every directory and file under `root`, with its permission bits. */
function modes(root: string): Array<{ path: string; dir: boolean; mode: number }> {
  const out = [];
  for (const name of readdirSync(root, { recursive: true }) as string[]) {
    const s = statSync(join(root, name));
    out.push({ path: name, dir: s.isDirectory(), mode: s.mode & 0o777 });
  }
  return out;
}

describe('destinations: a set written everywhere or reported as it is, checked before any change, private', () => {
  const res = new Resources(inject('runPrefix'), 'dst');
  const reg = inject('registry');
  let app: string;

  beforeAll(async () => {
    app = res.name('app');
    const script = 'test -f /v/f || seq 1 999 > /v/f; exec sleep 100000';
    await runContainer(
      { name: app, Image: inject('fixtureImage'), Cmd: ['sh', '-c', script], Env: ['DB_PASSWORD=hunter2'], HostConfig: { Binds: [`${res.volume('v')}:/v`] } },
      'running',
    );
    await waitFor(() =>
      treeDigest(app, '/v/f').then(
        () => true,
        () => false,
      ),
    );
  });

  afterAll(() => res.cleanup());

  it('a registry whose set manifest PUT fails: outputs and summary list the dir: alone, the step fails naming the registry, a retry with the tag completes it', async () => {
    const store = join(res.tempDir(), 'store');
    let failing = true;
    const setManifest = `/v2/${res.prefix}/manifests/t6`;
    const proxy = await startFaultyProxy(reg.host, (req) => (failing && req.method === 'PUT' && req.url === setManifest ? 400 : 'pass'));
    try {
      const registry = `registry:${proxy.host}/${res.prefix}`;
      const dir = `dir:${store}`;
      const step = await runStep(
        '.',
        { containers: app, destination: `${dir}\n${registry}`, tag: 't6', 'registry-username': reg.username, 'registry-password': reg.password },
        { env: { DOCKER_CONFIG: '/nonexistent' } },
      );
      expect(step.code).toBe(1);
      const places = JSON.parse(step.outputs.destinations) as Array<{ destination: string; written: boolean; error?: string }>;
      expect(places).toEqual([
        { destination: dir, written: true },
        {
          destination: registry,
          written: false,
          error: expect.stringMatching(new RegExp(`^Snapshot t6 \\(${esc(app)}\\) not written to ${esc(registry)}: set document: .*400`)),
        },
      ]);
      const containers = JSON.parse(step.outputs.containers) as Array<{ status: string; destinations: Array<{ destination: string }> }>;
      expect(containers.map((c) => [c.status, c.destinations.map((d) => d.destination)])).toEqual([['ok', [dir]]]);
      expect(step.summary).toContain(`- ✅ ${dir}`);
      expect(step.summary).toContain(`- ❌ ${registry}: Snapshot t6`);
      const errors = step.stdout.split('\n').filter((l) => l.startsWith('::error::'));
      expect(errors).toEqual([
        expect.stringMatching(new RegExp(`not written to ${esc(registry)}: set document: .*It is complete in ${esc(dir)}; run again with tag t6`)),
      ]);
      expect((await list(parseDestination(dir), {}, { log: quietLog, env })).map((s) => s.tag)).toEqual(['t6']);
      const creds = { username: reg.username, password: reg.password };
      expect((await list(parseDestination(registry), creds, { log: quietLog, env })).map((s) => s.tag)).toEqual([]);

      failing = false;
      const retry = await runCli(
        [
          'backup',
          '--containers',
          app,
          '--destination',
          dir,
          '--destination',
          registry,
          '--tag',
          't6',
          '--registry-username',
          reg.username,
          '--registry-password-stdin',
        ],
        {
          input: reg.password,
          env: { DOCKER_CONFIG: '/nonexistent' },
        },
      );
      expect(retry.code, retry.stderr).toBe(0);
      const json = JSON.parse(retry.stdout) as { destinations: unknown; containers: Array<{ destinations: Array<{ destination: string }> }> };
      expect(json.destinations).toEqual([
        { destination: dir, written: true },
        { destination: registry, written: true },
      ]);
      expect(json.containers[0].destinations.map((d) => d.destination)).toEqual([dir, registry]);
      expect(retry.stderr).toContain('no container is taken again');
      const [inDir] = await list(parseDestination(dir), {}, { log: quietLog, env });
      const [inRegistry] = await list(parseDestination(registry), creds, { log: quietLog, env });
      expect(inRegistry).toEqual(inDir);
      expect((await verify(parseDestination(registry), 't6', creds, { log: quietLog, env })).blobs).toBeGreaterThanOrEqual(3);

      const third = await runCli(['backup', '--containers', app, '--destination', dir, '--tag', 't6']);
      expect(third.code).toBe(1);
      expect(errorLines(third.stderr)).toEqual([`error: Snapshot t6 already exists in ${dir}. Expected a new tag.`]);
    } finally {
      await proxy.close();
    }
  });

  it('a different set under the tag is refused before any change', async () => {
    const [b, c, d] = ['b', 'c', 'd'].map((n) => `dir:${join(res.tempDir(), n)}`);
    for (const dest of [b, c]) {
      const r = await backup(parseBackupInputs(inputs({ containers: app, destination: dest, tag: 'same' })), { log: quietLog, env });
      expect(r.failed).toBe(0);
    }
    const run = backup(parseBackupInputs(inputs({ containers: app, destination: `${b}\n${c}\n${d}`, tag: 'same' })), { log: quietLog, env });
    await expect(run).rejects.toThrow(`Snapshot same differs between ${b} and ${c}. Expected a new tag.`);
    expect(existsSync(d.slice(4))).toBe(false);
  });

  it('one destination written twice (dir:/x and dir:/x/) is one clear input error, before any change', async () => {
    const store = join(res.tempDir(), 'twice');
    const r = await runCli(['backup', '--containers', app, '--destination', `dir:${store}`, '--destination', `dir:${store}/`]);
    expect(r.code).toBe(1);
    expect(errorLines(r.stderr)).toEqual([
      `error: Invalid --destination: 'dir:${store}' and 'dir:${store}/' are the same place (dir:${store}). Expected each destination once.`,
    ]);
    expect(existsSync(store)).toBe(false);
  });

  it('a full disk at the set document: the error names the set, its container, the phase and the destination; no partial set file is left', async () => {
    const mnt = join(res.tempDir(), 'tiny');
    mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mnt]);
    try {
      // Host entries make the set document (which records them) many pages long; the image config does not carry them.
      const name = res.name('hosts');
      const hosts = Array.from({ length: 300 }, (_v, i) => `host-${i}.example.internal:10.9.${i >> 8}.${i & 255}`);
      await runContainer({ name, Image: inject('fixtureImage'), Cmd: ['sleep', '100000'], HostConfig: { ExtraHosts: hosts } }, 'running');
      const store = `dir:${mnt}/store`;
      const first = await runCli(['backup', '--containers', name, '--destination', store, '--tag', 'first']);
      expect(first.code, first.stderr).toBe(0);
      // Room for the new image config (one page) and not for the set document: every other blob is stored already.
      const fs = statfsSync(mnt);
      writeFileSync(join(mnt, 'filler'), Buffer.alloc((fs.bavail - 2) * fs.bsize));
      const full = await runCli(['backup', '--containers', name, '--destination', store, '--tag', 'second']);
      expect(full.code).toBe(1);
      expect(errorLines(full.stderr)).toEqual([
        `error: Snapshot second (${name}) not written to ${store}: set document: ENOSPC: no space left on device, write.`,
      ]);
      expect(readdirSync(join(mnt, 'store', '.tmp'))).toEqual([]);
      expect(readdirSync(join(mnt, 'store', 'sets'))).toEqual(['first.json']);
      rmSync(join(mnt, 'filler'));
      const after = await runCli(['backup', '--containers', name, '--destination', store, '--tag', 'third']);
      expect(after.code, after.stderr).toBe(0);
      expect(after.stderr).not.toContain('interrupted backup');
    } finally {
      execFileSync('umount', [mnt]);
    }
  });

  it('dry run refuses what the real run would: an existing tag, a wrong registry password, a dir: that is a file', async () => {
    const store = `dir:${join(res.tempDir(), 'dry')}`;
    const made = await backup(parseBackupInputs(inputs({ containers: app, destination: store, tag: 'there' })), { log: quietLog, env });
    expect(made.failed).toBe(0);
    const dry = (values: Record<string, string>) =>
      backup(parseBackupInputs(inputs({ containers: app, 'dry-run': 'true', ...values })), { log: quietLog, env });
    await expect(dry({ destination: store, tag: 'there' })).rejects.toThrow(`Snapshot there already exists in ${store}. Expected a new tag.`);
    const registry = `registry:${reg.host}/${res.prefix}-dry`;
    await expect(dry({ destination: registry, 'registry-username': reg.username, 'registry-password': 'wrong' })).rejects.toThrow(
      /401|credentials|unauthorized/i,
    );
    const file = join(res.tempDir(), 'a-file');
    writeFileSync(file, 'x');
    await expect(dry({ destination: `dir:${file}` })).rejects.toThrow(`Cannot write to dir:${file}: ${file} is not a directory`);
    await expect(dry({ destination: `dir:${file}/sub/store` })).rejects.toThrow(`Cannot write to dir:${file}/sub/store: ${file} is not a directory`);
    // And what the real run takes, the dry run plans, creating nothing.
    const fresh = join(res.tempDir(), 'fresh', 'store');
    const planned = await dry({ destination: `dir:${fresh}\n${registry}`, 'registry-username': reg.username, 'registry-password': reg.password });
    expect(planned.containers.map((c) => c.status)).toEqual(['planned']);
    expect(existsSync(join(fresh, '..'))).toBe(false);
    expect(await commitsOf([planned.containers[0].id])).toEqual([]);
  });

  it('input and the environment are checked before any change: the CLI password flags, CONTAINER_SNAPSHOT_LOCK_TIMEOUT', async () => {
    const store = join(res.tempDir(), 'input');
    const cli = (args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv } = {}) =>
      runCli(['backup', '--containers', app, '--destination', `dir:${store}`, ...args], opts);
    const noUser = await cli(['--registry-password-stdin'], { input: 'secret' });
    expect([noUser.code, errorLines(noUser.stderr)]).toEqual([
      1,
      ['error: --registry-password-stdin needs --registry-username. Expected --registry-username U --registry-password-stdin.'],
    ]);
    const empty = await cli(['--registry-username', 'u', '--registry-password-stdin'], { input: '' });
    expect([empty.code, errorLines(empty.stderr)]).toEqual([
      1,
      ['error: --registry-password-stdin read an empty password. Expected the registry password on stdin.'],
    ]);
    const lock = await cli([], { env: { CONTAINER_SNAPSHOT_LOCK_TIMEOUT: 'abc' } });
    expect([lock.code, errorLines(lock.stderr)]).toEqual([
      1,
      ["error: Invalid CONTAINER_SNAPSHOT_LOCK_TIMEOUT 'abc'. Expected a number of seconds, like 600."],
    ]);
    const step = await runStep('.', { containers: app, destination: `dir:${store}` }, { env: { CONTAINER_SNAPSHOT_LOCK_TIMEOUT: 'abc' } });
    expect(step.code).toBe(1);
    expect(step.stdout.split('\n').filter((l) => l.startsWith('::error::'))).toEqual([
      "::error::Invalid CONTAINER_SNAPSHOT_LOCK_TIMEOUT 'abc'. Expected a number of seconds, like 600.",
    ]);
    expect(existsSync(store)).toBe(false);
  });

  it('dir: sets are private whatever the umask: new directories 0700, files 0600; an existing open directory is kept and warned about', async () => {
    const store = join(res.tempDir(), 'private', 'store');
    const umask = process.umask(0);
    try {
      const r = await backup(parseBackupInputs(inputs({ containers: app, destination: `dir:${store}`, tag: 'private' })), { log: quietLog, env });
      expect(r.failed).toBe(0);
    } finally {
      process.umask(umask);
    }
    const found = modes(join(store, '..'));
    expect(found.filter((f) => f.path.startsWith('store/sets/')).length).toBe(1);
    expect(found.filter((f) => f.dir && f.mode !== 0o700)).toEqual([]);
    expect(found.filter((f) => !f.dir && f.mode !== 0o600)).toEqual([]);
    expect(statSync(join(store, '..')).mode & 0o777).toBe(0o700);
    // The set document (a blob the tag's descriptor names) holds the environment: that is why it is private.
    const { digest } = JSON.parse(readFileSync(join(store, 'sets', 'private.json'), 'utf8')) as { digest: string };
    const document = join(store, 'blobs', 'sha256', digest.replace('sha256:', ''));
    expect(readFileSync(document, 'utf8')).toContain('DB_PASSWORD=hunter2');
    expect(statSync(document).mode & 0o777).toBe(0o600);

    const open = res.tempDir();
    chmodSync(open, 0o755);
    quietLog.lines.length = 0;
    const r = await backup(parseBackupInputs(inputs({ containers: app, destination: `dir:${open}`, tag: 'open' })), { log: quietLog, env });
    expect(r.failed).toBe(0);
    expect(statSync(open).mode & 0o777).toBe(0o755);
    expect(quietLog.lines).toContain(
      `warning: dir:${open} is open to other users (mode 0755); the files this backup writes there are 0600, but names and older files may be visible. Expected 0700 (chmod 700 ${open}).`,
    );
    expect(modes(open).filter((f) => (f.dir ? f.mode !== 0o700 : f.mode !== 0o600))).toEqual([]);
  });
});
