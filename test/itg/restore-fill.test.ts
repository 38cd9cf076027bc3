import { afterAll, describe, expect, inject, it } from 'vitest';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { backup, restore } from '../../src/commands.js';
import { parseBackupInputs, parseRestoreInputs } from '../../src/core/inputs.js';
import { Resources, docker, quietLog, runContainer, treeDigest } from '../support/fixtures.js';

const env = { ...process.env, DOCKER_CONFIG: '/nonexistent' };
const inputs = (values: Record<string, string>) => (name: string) => values[name] ?? '';

/** Restore writes each volume and bind mount whatever the image holds at a path of the same name. */
describe('restore fills', () => {
  const res = new Resources(inject('runPrefix'), 'fill');
  const image = inject('fixtureImage');
  afterAll(() => res.cleanup());

  it('a volume and a bind-mounted directory named like a symlink of the image (/lib -> usr/lib, as in merged-/usr images)', async () => {
    const maker = res.name('maker');
    await runContainer({ name: maker, Image: image, Cmd: ['sh', '-c', 'mkdir -p /usr/lib && rm -rf /lib && ln -s usr/lib /lib'] }, 'exited');
    const merged = res.image(`${res.prefix}-merged:1`);
    await docker.getContainer(maker).commit({ repo: `${res.prefix}-merged`, tag: '1' });
    const name = res.name('app');
    const vol = res.volume('app');
    const host = join(res.tempDir(), 'lib');
    mkdirSync(host);
    writeFileSync(join(host, 'conf'), 'bound\n');
    await runContainer(
      {
        name,
        Image: merged,
        Cmd: ['sh', '-c', 'echo kept > /opt/app/lib/data; exec sleep 100000'],
        HostConfig: { Binds: [`${vol}:/opt/app/lib`, `${host}:/srv/lib`] },
      },
      'running',
    );
    const store = `dir:${join(res.tempDir(), 'store')}`;
    await new Promise((r) => setTimeout(r, 500));
    const before = await treeDigest(name, '/opt/app/lib');
    const b = await backup(parseBackupInputs(inputs({ containers: name, destination: store, tag: 'lib', 'include-bind-mounts': 'true' })), {
      log: quietLog,
      env,
    });
    expect(b.failed, JSON.stringify(b.containers)).toBe(0);
    res.image(`container-snapshot/${name}:lib`);
    await docker.getContainer(name).remove({ force: true });
    await docker.getVolume(vol).remove();
    rmSync(host, { recursive: true });
    const r = await restore(parseRestoreInputs(inputs({ source: store, snapshot: 'lib', start: 'never' })), { log: quietLog, env });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    expect(await treeDigest(name, '/opt/app/lib')).toEqual(before);
    expect(readFileSync(join(host, 'conf'), 'utf8')).toBe('bound\n');
  });
});
