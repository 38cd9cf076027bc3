import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Resources, docker, runContainer } from '../support/fixtures.js';
import { runCli } from '../support/runner.js';

describe('the bundled CLI browses sets: ls, extract, diff', () => {
  const res = new Resources(inject('runPrefix'), 'browse-cli');
  const env = { DOCKER_CONFIG: '/nonexistent' };
  let app: string;
  let volume: string;
  let source: string;

  beforeAll(async () => {
    app = res.name('app');
    volume = res.volume('v');
    source = `dir:${join(res.tempDir(), 'store')}`;
    const script = 'if [ -f /v/a ]; then echo second > /v/a; rm /v/l; else echo first > /v/a; ln -s a /v/l; rm /etc/group; fi';
    await runContainer({ name: app, Image: inject('fixtureImage'), Cmd: ['sh', '-c', script], HostConfig: { Binds: [`${volume}:/v`] } }, 'exited');
    expect((await runCli(['backup', '--containers', app, '--destination', source, '--tag', 's1'], { env })).code).toBe(0);
    await docker.getContainer(app).start();
    await docker.getContainer(app).wait();
    expect((await runCli(['backup', '--containers', app, '--destination', source, '--tag', 's2'], { env })).code).toBe(0);
  });
  afterAll(() => res.cleanup());

  it('ls prints the archives of a set, a table of files with the deletion, and JSON with --json', async () => {
    const sets = await runCli(['ls', 's1', '--source', source]);
    expect(sets.code).toBe(0);
    expect(sets.stdout).toMatch(new RegExp(`^${app} +layer +.*/$`, 'm'));
    expect(sets.stdout).toMatch(new RegExp(`^${app} +volume ${volume} +.* +/v$`, 'm'));
    const files = await runCli(['ls', '--source', source, 's1', app]);
    expect(files.stdout).toMatch(/^MODE +OWNER +SIZE +MTIME \(UTC\) +FROM +PATH$/m);
    expect(files.stdout).toMatch(/^deleted +layer +\/etc\/group$/m);
    expect(files.stdout).toMatch(new RegExp(`^-rw-r--r-- +0:0 +6 +\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d +volume ${volume} +/v/a$`, 'm'));
    expect(files.stdout).toMatch(/^lrwxrwxrwx .* \/v\/l -> a$/m);
    const json = JSON.parse((await runCli(['ls', 's1', `${app}:/v/a`, '--json', '--source', source])).stdout);
    expect(json.entries).toEqual([expect.objectContaining({ path: '/v/a', type: 'file', size: 6, source: `volume ${volume}` })]);
    // No SNAPSHOT: the newest set, s2.
    const newest = await runCli(['ls', '--source', source]);
    expect(newest.code, newest.stderr).toBe(0);
    expect(newest.stdout).toBe((await runCli(['ls', 's2', '--source', source])).stdout);
    expect(newest.stderr).toContain(`snapshot s2 (the newest in ${source})`);
  });

  it('extract writes the file, refuses it again without --overwrite, and explains a missing --to', async () => {
    const to = res.tempDir();
    const first = await runCli(['extract', 's1', `${app}:/v/a`, '--to', to, '--source', source]);
    expect([first.code, readFileSync(join(to, 'a'), 'utf8')]).toEqual([0, 'first\n']);
    const again = await runCli(['extract', 's2', `${app}:/v/a`, '--to', to, '--source', source]);
    expect(again.code).toBe(1);
    expect(again.stderr.trim()).toBe(`error: ${join(to, 'a')} exists. Expected a --to directory without it, or --overwrite.`);
    expect((await runCli(['extract', 's2', `${app}:/v/a`, '--to', to, '--overwrite', '--source', source])).code).toBe(0);
    expect(readFileSync(join(to, 'a'), 'utf8')).toBe('second\n');
    const noTo = await runCli(['extract', 's1', `${app}:/v/a`, '--source', source]);
    expect([noTo.code, noTo.stderr.trim()]).toEqual([1, 'error: extract needs --to. Expected --to DIR, the host directory to write into.']);
  });

  it('diff prints what changed per archive, and names its operands when one is missing', async () => {
    const d = await runCli(['diff', 's1', 's2', '--source', source]);
    expect(d.code).toBe(0);
    expect(d.stdout).toContain(`${app} layer: unchanged`);
    expect(d.stdout).toMatch(new RegExp(`^${app} volume ${volume} at /v: 0 added, \\d changed, 1 removed$`, 'm'));
    expect(d.stdout).toMatch(/^ {2}~ \/v\/a \(size, (mtime, )?content\)$|^ {2}~ \/v\/a \(size(, mtime)?\)$/m);
    expect(d.stdout).toMatch(/^ {2}- \/v\/l$/m);
    const one = await runCli(['diff', 's1', '--source', source]);
    expect([one.code, one.stderr.trim()]).toEqual([1, "error: diff takes SNAPSHOT1 SNAPSHOT2, given 's1'. See node dist/cli.js diff --help."]);
  });

  it('restore --paths brings one path of a volume back into the existing container, and --replace is needed over an existing one', async () => {
    const back = await runCli(['restore', '--source', source, '--snapshot', 's1', '--containers', app, '--paths', '/v/l'], { env });
    expect(back.code).toBe(0);
    expect(JSON.parse(back.stdout).containers).toEqual([expect.objectContaining({ name: app, status: 'ok' })]);
    const archive = (await docker.getContainer(app).getArchive({ path: '/v/l' })) as unknown as NodeJS.ReadableStream;
    archive.resume();
    const refused = await runCli(['restore', '--source', source, '--snapshot', 's1', '--containers', app, '--paths', '/v/a'], { env });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`refused: /v/a exists in volume '${volume}' (--replace writes the snapshot's over it)`);
  });

  it('ls, extract and diff read an encrypted set with the decryption flags or environment, and say which flag is missing without', async () => {
    const keyFile = join(res.tempDir(), 'key.txt');
    execFileSync('age-keygen', ['-o', keyFile], { stdio: 'ignore' });
    const identity = readFileSync(keyFile, 'utf8')
      .split('\n')
      .find((l) => l.startsWith('AGE-SECRET-KEY-'))!;
    const recipient = execFileSync('age-keygen', ['-y', keyFile], { encoding: 'utf8' }).trim();
    const sealed = `dir:${join(res.tempDir(), 'sealed')}`;
    for (const tag of ['e1', 'e2'])
      expect((await runCli(['backup', '--containers', app, '--destination', sealed, '--tag', tag, '--encryption-recipients', recipient], { env })).code).toBe(
        0,
      );
    const listed = await runCli(['ls', 'e1', `${app}:/v/a`, '--json', '--source', sealed, '--decryption-identity', keyFile]);
    expect([listed.code, JSON.parse(listed.stdout || '{}').entries?.map((e: { path: string }) => e.path)]).toEqual([0, ['/v/a']]);
    const to = res.tempDir();
    const taken = await runCli(['extract', 'e1', `${app}:/v/a`, '--to', to, '--source', sealed], { env: { CONTAINER_SNAPSHOT_DECRYPTION_IDENTITY: identity } });
    expect([taken.code, readFileSync(join(to, 'a'), 'utf8')]).toEqual([0, 'second\n']);
    const d = await runCli(['diff', 'e1', 'e2', '--source', sealed, '--decryption-identity', keyFile]);
    expect([d.code, d.stdout]).toEqual([0, expect.stringContaining(`${app} volume ${volume} at /v:`)]);
    const hint =
      'Expected --decryption-identity FILE (or CONTAINER_SNAPSHOT_DECRYPTION_IDENTITY), or --decryption-passphrase-stdin (or CONTAINER_SNAPSHOT_DECRYPTION_PASSPHRASE).';
    for (const args of [
      ['ls', 'e1'],
      ['extract', 'e1', `${app}:/v/a`, '--to', res.tempDir()],
      ['diff', 'e1', 'e2'],
    ]) {
      const bare = await runCli([...args, '--source', sealed]);
      expect([bare.code, bare.stderr]).toEqual([1, expect.stringContaining(hint)]);
    }
  });
});
