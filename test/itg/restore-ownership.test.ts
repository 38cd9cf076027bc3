import { afterAll, describe, expect, inject, it } from 'vitest';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Resources, docker, runContainer, treeDigest, waitFor } from '../support/fixtures.js';
import { backUp, restoreFrom } from '../support/commands.js';

async function readFile(container: string, path: string): Promise<string> {
  const exec = await docker.getContainer(container).exec({ Cmd: ['cat', path], AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({});
  const chunks: Buffer[] = [];
  for await (const c of stream as AsyncIterable<Buffer>) chunks.push(c);
  // Strip the engine's 8-byte stream frame headers.
  const raw = Buffer.concat(chunks);
  let out = '';
  for (let i = 0; i + 8 <= raw.length;) {
    const len = raw.readUInt32BE(i + 4);
    out += raw.subarray(i + 8, i + 8 + len).toString();
    i += 8 + len;
  }
  return out;
}

async function remove(...names: string[]) {
  for (const n of names) await docker.getContainer(n).remove({ force: true, v: true });
}

describe('restore writes only what it owns, and fills every volume the same way', () => {
  const res = new Resources(inject('runPrefix'), 'own');
  const image = inject('fixtureImage');
  afterAll(() => res.cleanup());
  const store = () => `dir:${join(res.tempDir(), 'store')}`;
  const track = async (name: string) => res.image((await docker.getContainer(name).inspect()).Config.Image);

  it('restores a volume whose symlinks climb above its parent, relative and absolute', async () => {
    const name = res.name('web');
    const vol = res.volume('web');
    const script =
      'cd /var/www/html && test -e abs || { echo page > index && ln -s ../../../usr/share/tool tool && ln -s ../../../../../../etc/passwd deep && ln -s /etc/passwd abs; }; exec sleep 100000';
    await runContainer({ name, Image: image, Cmd: ['sh', '-c', script], HostConfig: { Binds: [`${vol}:/var/www/html`] } }, 'running');
    await waitFor(async () =>
      treeDigest(name, '/var/www/html/abs').then(
        () => true,
        () => false,
      ),
    );
    const before = await treeDigest(name, '/var/www/html');
    const location = store();
    await backUp({ containers: name, destination: location, tag: 'links' });
    await remove(name);
    await docker.getVolume(vol).remove();
    const r = await restoreFrom({ source: location, snapshot: 'links' });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    await track(name);
    expect(await treeDigest(name, '/var/www/html')).toEqual(before);
  });

  it('restores a reader that takes a named and an anonymous volume from its owner read-only', async () => {
    const db = res.name('ro-db');
    const reader = res.name('ro-reader');
    const vol = res.volume('ro-db');
    await runContainer(
      {
        name: db,
        Image: image,
        Volumes: { '/anon': {} },
        Cmd: ['sh', '-c', 'test -f /data/table || { echo rows > /data/table; echo scratch > /anon/x; }; exec sleep 100000'],
        HostConfig: { Binds: [`${vol}:/data`] },
      },
      'running',
    );
    await waitFor(async () =>
      treeDigest(db, '/anon/x').then(
        () => true,
        () => false,
      ),
    );
    await runContainer({ name: reader, Image: image, Cmd: ['sleep', '100000'], HostConfig: { VolumesFrom: [`${db}:ro`] } }, 'running');
    const location = store();
    await backUp({ containers: `${db},${reader}`, destination: location, tag: 'ro' });
    await remove(reader, db);
    await docker.getVolume(vol).remove();
    const r = await restoreFrom({ source: location, snapshot: 'ro' });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    await track(db);
    await track(reader);
    expect((await docker.getContainer(reader).inspect()).State.Running).toBe(true);
    expect(await readFile(reader, '/data/table')).toBe('rows\n');
    expect(await readFile(reader, '/anon/x')).toBe('scratch\n');
    expect((await docker.getContainer(reader).inspect()).HostConfig.VolumesFrom).toEqual([`${db}:ro`]);
  });

  it("restoring only a container that shares its owner's volume leaves the owner's live data alone", async () => {
    const db = res.name('sh-db');
    const sidecar = res.name('sh-side');
    const vol = res.volume('sh-db');
    await runContainer(
      {
        name: db,
        Image: image,
        Cmd: ['sh', '-c', 'test -f /data/table || echo row1 > /data/table; exec sleep 100000'],
        HostConfig: { Binds: [`${vol}:/data`] },
      },
      'running',
    );
    await waitFor(async () =>
      treeDigest(db, '/data/table').then(
        () => true,
        () => false,
      ),
    );
    await runContainer({ name: sidecar, Image: image, Cmd: ['sleep', '100000'], HostConfig: { VolumesFrom: [db] } }, 'running');
    const location = store();
    await backUp({ containers: `${db},${sidecar}`, destination: location, tag: 'share' });
    const exec = await docker.getContainer(db).exec({ Cmd: ['sh', '-c', 'echo row2 >> /data/table'] });
    await (await exec.start({})).resume();
    await waitFor(async () => (await readFile(db, '/data/table')) === 'row1\nrow2\n');
    await remove(sidecar);
    const r = await restoreFrom({ source: location, snapshot: 'share', containers: sidecar });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    await track(sidecar);
    expect(await readFile(db, '/data/table')).toBe('row1\nrow2\n');
    expect(await readFile(sidecar, '/data/table')).toBe('row1\nrow2\n');

    // Without its owner on the engine, the restore refuses before it changes anything.
    await remove(sidecar, db);
    const again = await restoreFrom({ source: location, snapshot: 'share', containers: sidecar });
    expect(again.failed).toBe(1);
    expect(again.containers[0].error).toMatch(new RegExp(`needs container '${db}'`));
    expect(
      await docker
        .getContainer(sidecar)
        .inspect()
        .catch(() => undefined),
    ).toBeUndefined();

    // With replace, a volume another container uses, selected or not, is a conflict.
    await restoreFrom({ source: location, snapshot: 'share', containers: db }).then((x) => expect(x.failed, JSON.stringify(x.containers)).toBe(1));
    await docker.getVolume(vol).remove();
    expect((await restoreFrom({ source: location, snapshot: 'share' })).failed).toBe(0);
    const replaced = await restoreFrom({ source: location, snapshot: 'share', containers: db, replace: 'true' });
    expect(replaced.failed).toBe(1);
    expect(replaced.containers[0].error).toMatch(new RegExp(`volume '${vol}' is in use by ${sidecar}`));
    await track(db);
  });

  it('brings back a bind-mounted directory that was deleted, and a bind-mounted file that still exists or is gone', async () => {
    const root = res.tempDir();
    const dir = join(root, 'site');
    const file = join(root, 'conf', 'app.conf');
    mkdirSync(dir);
    mkdirSync(join(root, 'conf'));
    writeFileSync(join(dir, 'page'), 'hello\n');
    writeFileSync(file, 'port=1\n');
    const name = res.name('binds');
    await runContainer({ name, Image: image, Cmd: ['sleep', '100000'], HostConfig: { Binds: [`${dir}:/srv/site`, `${file}:/etc/app.conf`] } }, 'running');
    const location = store();
    await backUp({ containers: name, destination: location, tag: 'binds', 'include-bind-mounts': 'true' });
    await remove(name);
    rmSync(dir, { recursive: true });
    writeFileSync(file, 'port=2\n');
    const refused = await restoreFrom({ source: location, snapshot: 'binds' });
    expect(refused.failed).toBe(1);
    expect(refused.containers[0].error).toMatch(/host path '.*app\.conf' exists/);
    expect(existsSync(dir)).toBe(false);
    const r = await restoreFrom({ source: location, snapshot: 'binds', replace: 'true' });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    await track(name);
    expect(readFileSync(join(dir, 'page'), 'utf8')).toBe('hello\n');
    expect(readFileSync(file, 'utf8')).toBe('port=1\n');
    expect(await readFile(name, '/etc/app.conf')).toBe('port=1\n');

    await remove(name);
    rmSync(join(root, 'conf'), { recursive: true });
    const gone = await restoreFrom({ source: location, snapshot: 'binds', replace: 'true' });
    expect(gone.failed, JSON.stringify(gone.containers)).toBe(0);
    expect(readFileSync(file, 'utf8')).toBe('port=1\n');
    expect(await readFile(name, '/etc/app.conf')).toBe('port=1\n');
  });

  it('restores a tmpfs volume as the volume it was, also under a new name', async () => {
    const vol = res.volume('tmpfs');
    const labels = { tier: 'cache' };
    await docker.createVolume({ Name: vol, DriverOpts: { type: 'tmpfs', device: 'tmpfs', o: 'size=10m' }, Labels: labels });
    const name = res.name('tmpfs-app');
    await runContainer(
      { name, Image: image, Cmd: ['sh', '-c', 'echo hot > /cache/x; exec sleep 100000'], HostConfig: { Binds: [`${vol}:/cache`] } },
      'running',
    );
    const location = store();
    await backUp({ containers: name, destination: location, tag: 'tmpfs' });
    await remove(name);
    await docker.getVolume(vol).remove();
    const r = await restoreFrom({ source: location, snapshot: 'tmpfs' });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    await track(name);
    const v = await docker.getVolume(vol).inspect();
    expect(v.Options).toEqual({ type: 'tmpfs', device: 'tmpfs', o: 'size=10m' });
    expect(v.Labels).toEqual(labels);
    expect((await docker.getContainer(name).inspect()).State.Running).toBe(true);

    const copy = res.name('tmpfs-app-copy');
    const copyVol = res.volume('tmpfs-copy');
    const renamed = await restoreFrom({ source: location, snapshot: 'tmpfs', rename: `${name}=${copy},${vol}=${copyVol}` });
    expect(renamed.failed, JSON.stringify(renamed.containers)).toBe(0);
    expect((await docker.getVolume(copyVol).inspect()).Options).toEqual({ type: 'tmpfs', device: 'tmpfs', o: 'size=10m' });
  });
});
