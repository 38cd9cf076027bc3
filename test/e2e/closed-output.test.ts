import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Resources, docker, runContainer } from '../support/fixtures.js';
import { ROOT } from '../support/runner.js';

describe('the CLI whose reader goes away (`| head`) finishes its run as it would have', () => {
  const res = new Resources(inject('runPrefix'), 'closed');
  let app: string;

  beforeAll(async () => {
    app = res.name('app');
    const volume = res.volume('data');
    await runContainer(
      { name: app, Image: inject('fixtureImage'), Cmd: ['sh', '-c', 'echo rows > /v/table; exec sleep 100000'], HostConfig: { Binds: [`${volume}:/v`] } },
      'running',
    );
  });
  afterAll(() => res.cleanup());

  it('a backup with stdout and stderr closed from the start: the set written, the container running, exit 0', async () => {
    const store = res.tempDir();
    const child = spawn(process.execPath, [join(ROOT, 'dist', 'cli.js'), 'backup', '--containers', app, '--destination', `dir:${store}`], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // The reader goes away before the first line: every write of the run fails with EPIPE.
    child.stdout.destroy();
    child.stderr.destroy();
    const code = await new Promise<number>((done) => child.on('close', (c, signal) => done(c ?? (signal ? 128 : 1))));
    expect(code).toBe(0);
    expect(readdirSync(join(store, 'sets')).filter((f) => f.endsWith('.json'))).toHaveLength(1);
    const info = await docker.getContainer(app).inspect();
    expect([info.State.Running, info.State.Paused]).toEqual([true, false]);
  });
});

// Debian 12's own Node (18 or 20) is on the machines this project runs on; the README says an older
// Node is refused with one line. Needs such a Node at /usr/bin/node (scripts/testbed.sh installs one).
describe('dist/cli.js on a Node older than 24', () => {
  it('is refused in one line saying what is expected, not a SyntaxError of the loader', () => {
    expect(existsSync('/usr/bin/node'), '/usr/bin/node (Debian nodejs, installed by scripts/testbed.sh)').toBe(true);
    const version = spawnSync('/usr/bin/node', ['--version'], { encoding: 'utf8' }).stdout.trim();
    expect(Number(version.slice(1).split('.')[0]), `/usr/bin/node is ${version}: expected an older Node than 24`).toBeLessThan(24);
    const run = spawnSync('/usr/bin/node', [join(ROOT, 'dist', 'cli.js'), '--version'], { cwd: ROOT, encoding: 'utf8' });
    expect(run.status).not.toBe(0);
    expect(run.stderr.trim().split('\n')).toEqual([
      `error: Node ${version.slice(1)} is too old. Expected Node 24 or later: after npm ci, run node_modules/.bin/node dist/cli.js.`,
    ]);
  });
});
