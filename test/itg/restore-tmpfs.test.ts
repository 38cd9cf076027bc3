import { afterAll, describe, expect, inject, it } from 'vitest';
import { join } from 'node:path';
import { Resources, docker, runContainer } from '../support/fixtures.js';
import { backUp, restoreFrom } from '../support/commands.js';

/** What `cmd` prints in the running container `name` (stdout). */
async function output(name: string, cmd: string): Promise<string> {
  const exec = await docker.getContainer(name).exec({ Cmd: ['sh', '-c', cmd], AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({ hijack: true, stdin: false });
  const chunks: Buffer[] = [];
  const sink = { write: (c: Buffer) => chunks.push(Buffer.from(c)) } as unknown as NodeJS.WritableStream;
  docker.modem.demuxStream(stream, sink, { write: () => true } as unknown as NodeJS.WritableStream);
  await new Promise((r) => stream.on('end', r));
  return Buffer.concat(chunks).toString('utf8').trim();
}

/**
 * A container's tmpfs mounts come back with the mode they had: runc gives a tmpfs the mode of the
 * directory it mounts on when there is one, and the mount point the runtime made at the first
 * start (0755) would otherwise be in the restored image's writable layer.
 */
describe('tmpfs mounts of a restored container', () => {
  const res = new Resources(inject('runPrefix'), 'tmpfs');
  const image = inject('fixtureImage');
  afterAll(() => res.cleanup());

  it('keep their mode (--tmpfs 1777, a tmpfs mount with a mode), whether the image had the directory or not', async () => {
    const name = res.name('app');
    await runContainer(
      {
        name,
        Image: image,
        Cmd: ['sleep', '100000'],
        HostConfig: {
          Tmpfs: { '/scratch': '', '/deep/er': 'mode=1770' },
          Mounts: [
            { Type: 'tmpfs', Target: '/tm', Source: '', TmpfsOptions: { Mode: 0o1733 } as never },
            { Type: 'tmpfs', Target: '/www', Source: '', TmpfsOptions: { Mode: 0o1777 } as never },
          ],
        },
      },
      'running',
    );
    const modes = 'stat -c "%n %a" /scratch /deep/er /tm /www';
    const before = await output(name, modes);
    // The runtime made the first three; /www is a directory of the image (runc may give the tmpfs its mode, 0755, as a restore must then too).
    expect(before.split('\n').slice(0, 3)).toEqual(['/scratch 1777', '/deep/er 1770', '/tm 1733']);
    const location = `dir:${join(res.tempDir(), 'store')}`;
    await backUp({ containers: name, destination: location, tag: 'tmpfs' });
    const copy = res.name('copy');
    const r = await restoreFrom({ source: location, snapshot: 'tmpfs', rename: `${name}=${copy}` });
    res.image(`container-snapshot/${name}:tmpfs`);
    res.image(`container-snapshot/${copy}:tmpfs`);
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    expect((await output(copy, modes)).split('\n')).toEqual(before.split('\n'));
  });
});
