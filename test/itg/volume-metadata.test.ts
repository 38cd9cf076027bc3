import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { linkSync, lstatSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { backup, restore } from '../../src/commands.js';
import { parseBackupInputs, parseRestoreInputs } from '../../src/core/inputs.js';
import { DirDestination } from '../../src/destinations/dir/index.js';
import { Engine } from '../../src/engine/engine.js';
import { openContent } from '../../src/snapshot/blobs.js';
import { SET_SCOPE } from '../../src/destinations/types.js';
import { putVolumeArchive, readMetadataRecord } from '../../src/snapshot/metadata-merge.js';
import { Resources, docker, quietLog, runContainer } from '../support/fixtures.js';

const tool = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: 'utf8' });

/** Everything of a tree the engine's archive drops, as `getfattr`, `getfacl` and lstat see it (paths relative). */
function metadataOf(root: string, paths: string[]) {
  return Object.fromEntries(
    paths.map((p) => {
      const abs = join(root, p);
      const xattrs = tool('getfattr', ['--absolute-names', '-d', '-m', '-', '-e', 'base64', abs])
        .split('\n')
        .filter((l) => l.includes('='))
        .sort();
      const acl = tool('getfacl', ['-c', '-p', abs]).trim();
      return [p, { xattrs, acl, mtimeNs: String(lstatSync(abs, { bigint: true }).mtimeNs) }];
    }),
  );
}

/** A unix socket left at `path` (a listener unlinks its own path on close; a hard link to it stays). */
async function leaveSocket(path: string): Promise<void> {
  const tmp = `${path}.listening`;
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(tmp, resolve));
  linkSync(tmp, path);
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

describe('file metadata the engine archive drops: xattrs, ACLs, sub-second times, sockets', () => {
  const res = new Resources(inject('runPrefix'), 'meta');
  const image = inject('fixtureImage');
  const vol = res.volume('data');
  const fresh = res.volume('fresh');
  const bare = res.volume('bare');
  const paths = ['.', 'f', 'd', 'd/g', 'flink'];
  let mountpoint = '';
  let before: ReturnType<typeof metadataOf>;

  beforeAll(async () => {
    for (const v of [vol, fresh, bare]) await docker.createVolume({ Name: v });
    mountpoint = (await docker.getVolume(vol).inspect()).Mountpoint;
    // The case: 2 user xattrs and an ACL on a file, a default ACL on a directory, sub-second times, a socket.
    writeFileSync(join(mountpoint, 'f'), 'rows\n');
    mkdirSync(join(mountpoint, 'd'));
    writeFileSync(join(mountpoint, 'd', 'g'), 'more\n');
    tool('setfattr', ['-n', 'user.one', '-v', '1', join(mountpoint, 'f')]);
    tool('setfattr', ['-n', 'user.two', '-v', '0x00ff10', join(mountpoint, 'f')]);
    tool('setfacl', ['-m', 'u:1000:rw,g:1000:r', join(mountpoint, 'f')]);
    tool('setfacl', ['-d', '-m', 'u:1000:rwx', join(mountpoint, 'd')]);
    await leaveSocket(join(mountpoint, 'd', 'sock'));
    // Symbolic links have no attributes of their own here: neither one to f nor a dangling one is in the record (nor makes it fail).
    tool('ln', ['-s', 'f', join(mountpoint, 'flink')]);
    tool('ln', ['-s', '/nowhere', join(mountpoint, 'dangling')]);
    tool('touch', ['-h', '-d', '2020-01-01 00:00:00', join(mountpoint, 'flink'), join(mountpoint, 'dangling')]);
    tool('touch', ['-h', '-d', '2020-01-01 00:00:00.123456789', join(mountpoint, 'f'), join(mountpoint, 'd', 'g'), join(mountpoint, 'd')]);
    tool('touch', ['-d', '2020-01-02 00:00:00.5', mountpoint]);
    await runContainer({ name: res.name('app'), Image: image, Cmd: ['sleep', '100000'], HostConfig: { Binds: [`${vol}:/data`] } }, 'running');
    before = metadataOf(mountpoint, paths);
  });

  afterAll(() => res.cleanup());

  it('a backup keeps them in a side record, says so per volume and warns of the socket; merged back, a PUT restores them', async () => {
    expect(before.f.xattrs).toEqual(expect.arrayContaining(['user.one=0sMQ==', 'user.two=0sAP8Q']));
    expect(before.f.acl.split('\n').filter((l) => !l.startsWith('#'))).toHaveLength(6);
    const store = `${res.tempDir()}/store`;
    const inputs: Record<string, string> = { containers: res.name('app'), destination: `dir:${store}`, tag: 'meta-1' };
    quietLog.lines.length = 0;
    const result = await backup(
      parseBackupInputs((n) => inputs[n] ?? ''),
      { log: quietLog, env: { ...process.env, DOCKER_CONFIG: '/nonexistent' } },
    );
    expect(result.failed, JSON.stringify(result.containers.filter((c) => c.error))).toBe(0);
    // Read here, the scan made by the same walk.
    expect(quietLog.lines).toContain(`${res.name('app')}: reading ${vol}: read on this host from ${mountpoint}`);

    const said = quietLog.lines.filter((l) => l.includes(`volume ${vol}`));
    expect(said).toContain(
      `${res.name('app')}: volume ${vol}: kept in a side record, as the engine's archive drops them: 1 file(s) with extended attributes, 2 file(s) with POSIX ACLs, 4 file(s) with sub-second modification times`,
    );
    expect(said).toContain(`warning: ${res.name('app')}: volume ${vol}: not kept: 1 unix socket(s) (d/sock)`);

    const dest = new DirDestination('dir:store', store);
    const set = (await dest.readSet('meta-1'))!;
    const v = set.containers[0].volumes[0];
    expect(v.metadata?.dropped).toEqual({ xattrs: 1, acls: 2, subSecondTimes: 4, sockets: 1 });
    expect(v.metadata?.notKept).toBe('1 unix socket(s) (d/sock)');
    const record = await readMetadataRecord(dest, v.metadata!.record!, 'data');
    expect(record.sockets).toEqual(['d/sock']);
    expect(record.entries.map((e) => e.path)).toEqual(['.', 'd', 'd/g', 'f']);

    // What a restore's helper does: a never-started container mounting a fresh volume, the archive PUT into it.
    const engine = new Engine();
    const fill = async (volume: string, withRecord: boolean) => {
      const helper = await docker.createContainer({
        name: res.name(`fill-${volume.slice(-5)}`),
        Image: image,
        Cmd: ['true'],
        HostConfig: { Binds: [`${volume}:/data`] },
      });
      await putVolumeArchive(engine, helper.id, '/', await openContent(dest, SET_SCOPE, v.blob, 'data'), withRecord ? record : undefined);
      return metadataOf((await docker.getVolume(volume).inspect()).Mountpoint, paths);
    };
    // The plain archive loses them all (this is what the side record is for) ...
    const lost = await fill(bare, false);
    expect(lost.f.xattrs).toEqual([]);
    expect(lost.f.mtimeNs).toBe('1577836800000000000');
    // ... merged with the side record, every one comes back.
    expect(await fill(fresh, true)).toEqual(before);

    // And through a real restore, under new names: the same.
    const copyVol = res.volume('data-copy');
    const back: Record<string, string> = {
      source: `dir:${store}`,
      snapshot: 'meta-1',
      rename: `${res.name('app')}=${res.name('app-copy')},${vol}=${copyVol}`,
      start: 'never',
    };
    const restored = await restore(
      parseRestoreInputs((n) => back[n] ?? ''),
      { log: quietLog, env: { ...process.env, DOCKER_CONFIG: '/nonexistent' } },
    );
    expect(restored.failed, JSON.stringify(restored.containers)).toBe(0);
    res.image(`container-snapshot/${res.name('app')}:meta-1`);
    expect(metadataOf((await docker.getVolume(copyVol).inspect()).Mountpoint, paths)).toEqual(before);
  });
});
