import { afterAll, describe, expect, inject, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import tar from 'tar-stream';
import { backup, restore } from '../../src/commands.js';
import { parseBackupInputs, parseRestoreInputs } from '../../src/core/inputs.js';
import { Resources, docker, quietLog, runContainer } from '../support/fixtures.js';

const env = { ...process.env, DOCKER_CONFIG: '/nonexistent' };
const inputs = (values: Record<string, string>) => (name: string) => values[name] ?? '';
const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * Sparse files made in the volume with busybox dd (seek= leaves a hole; count=0 seek=N sets the
 * size): data at the start, middle and end of `holes`; `tail` ends in a hole; `empty` is all hole;
 * `zeros` holds written (allocated) zeros then data; `small` short zero runs only.
 */
const MAKE = [
  'dd if=/dev/urandom of=/data/holes bs=64k seek=127 count=1',
  'dd if=/dev/urandom of=/data/holes bs=64k count=1 conv=notrunc',
  'dd if=/dev/urandom of=/data/holes bs=64k seek=64 count=1 conv=notrunc',
  'dd if=/dev/urandom of=/data/tail bs=64k count=1',
  'dd if=/dev/zero of=/data/tail bs=1 count=0 seek=4194304',
  'dd if=/dev/zero of=/data/empty bs=1 count=0 seek=16777216',
  'dd if=/dev/zero of=/data/zeros bs=64k count=64',
  'dd if=/dev/urandom bs=1k count=3 >> /data/zeros',
  'dd if=/dev/zero of=/data/small bs=1k count=10',
  'echo text >> /data/small',
].map((c) => `${c} 2>/dev/null`);

interface FileState {
  sha: string;
  size: number;
  allocated: number;
}

/** Each file of /data in `volume`: content digest, apparent size and allocated bytes, read through a throwaway container of `image`. */
async function volumeFiles(res: Resources, image: string, volume: string): Promise<Record<string, FileState>> {
  const name = res.name(`look-${Math.random().toString(16).slice(2, 8)}`);
  const c = await runContainer({ name, Image: image, Cmd: ['sh', '-c', 'cd /data && for f in *; do echo "$(sha256sum "$f") $(stat -c "%s %b %B" "$f")"; done'], HostConfig: { Binds: [`${volume}:/data`] } }, 'exited');
  const out = (await c.logs({ stdout: true, stderr: true })).toString('latin1');
  await c.remove({ force: true });
  const files: Record<string, FileState> = {};
  for (const line of out.split('\n')) {
    const m = /^([0-9a-f]{64})\s+(\S+) (\d+) (\d+) (\d+)$/.exec(line.replace(/^[\s\S]*?(?=[0-9a-f]{64})/, ''));
    if (m) files[m[2]] = { sha: m[1], size: Number(m[3]), allocated: Number(m[4]) * Number(m[5]) };
  }
  return files;
}

/** A tar of the host's util-linux fallocate and the two libraries it loads (Debian 12, x86-64), for an image that can punch holes. */
function fallocateTar(): tar.Pack {
  const pack = tar.pack();
  pack.entry({ name: 'bin/fallocate', mode: 0o755 }, readFileSync('/usr/bin/fallocate'));
  for (const lib of ['lib/x86_64-linux-gnu/libc.so.6', 'lib64/ld-linux-x86-64.so.2']) pack.entry({ name: lib, mode: 0o755 }, readFileSync(`/${lib}`));
  pack.finalize();
  return pack;
}

/** Backs up `name` (its volume `volume`), removes both, restores; returns the restore's log. */
async function roundTrip(res: Resources, name: string, volume: string, tag: string): Promise<string[]> {
  const store = `dir:${join(res.tempDir(), 'store')}`;
  const b = await backup(parseBackupInputs(inputs({ containers: name, destination: store, tag })), { log: quietLog, env });
  expect(b.failed, JSON.stringify(b.containers)).toBe(0);
  res.image(`container-snapshot/${name}:${tag}`);
  await docker.getContainer(name).remove({ force: true });
  await docker.getVolume(volume).remove();
  const log = { ...quietLog, lines: [] as string[] };
  const r = await restore(parseRestoreInputs(inputs({ source: store, snapshot: tag, start: 'never' })), { log, env });
  expect(r.failed, JSON.stringify(r.containers)).toBe(0);
  return log.lines;
}

describe('sparse files in a volume', () => {
  const res = new Resources(inject('runPrefix'), 'sparse');
  const fixture = inject('fixtureImage');
  afterAll(() => res.cleanup());

  it('come back byte-identical and sparse again when the image has util-linux fallocate; other files byte-identical', async () => {
    const maker = res.name('maker');
    const made = await runContainer({ name: maker, Image: fixture, Cmd: ['true'] }, 'created');
    await made.putArchive(fallocateTar() as unknown as NodeJS.ReadableStream, { path: '/' });
    const image = res.image(`${res.prefix}-dig:1`);
    await made.commit({ repo: `${res.prefix}-dig`, tag: '1' });
    const name = res.name('app');
    const volume = res.volume('app');
    await runContainer({ name, Image: image, Cmd: ['sh', '-c', `${MAKE.join(' && ')} && exec sleep 100000`], HostConfig: { Binds: [`${volume}:/data`] } }, 'running');
    await new Promise((r) => setTimeout(r, 1000));
    const before = await volumeFiles(res, fixture, volume);
    expect(Object.keys(before).sort()).toEqual(['empty', 'holes', 'small', 'tail', 'zeros']);
    expect(before.holes.size).toBe(8 * MiB);

    const lines = await roundTrip(res, name, volume, 'dig');
    const after = await volumeFiles(res, fixture, volume);
    for (const f of Object.keys(before)) expect({ f, sha: after[f].sha, size: after[f].size }).toEqual({ f, sha: before[f].sha, size: before[f].size });
    // Data: 192 KiB, 64 KiB, none, 3 KiB; a few file system blocks of slack.
    expect(after.holes.allocated).toBeLessThanOrEqual(192 * KiB + 64 * KiB);
    expect(after.tail.allocated).toBeLessThanOrEqual(64 * KiB + 64 * KiB);
    expect(after.empty.allocated).toBeLessThanOrEqual(64 * KiB);
    expect(after.zeros.allocated).toBeLessThanOrEqual(64 * KiB);
    expect(lines.join('\n')).toMatch(/4 sparse file\(s\) made sparse again/);
  });

  it('come back byte-identical, fully allocated, with a warning, when the image has no fallocate that punches holes', async () => {
    const name = res.name('plain');
    const volume = res.volume('plain');
    await runContainer({ name, Image: fixture, Cmd: ['sh', '-c', `${MAKE.join(' && ')} && exec sleep 100000`], HostConfig: { Binds: [`${volume}:/data`] } }, 'running');
    await new Promise((r) => setTimeout(r, 1000));
    const before = await volumeFiles(res, fixture, volume);
    const lines = await roundTrip(res, name, volume, 'plain');
    const after = await volumeFiles(res, fixture, volume);
    for (const f of Object.keys(before)) expect({ f, sha: after[f].sha, size: after[f].size }).toEqual({ f, sha: before[f].sha, size: before[f].size });
    expect(after.empty.allocated).toBeGreaterThanOrEqual(16 * MiB);
    expect(lines.join('\n')).toMatch(/warning: volume '.*': 4 file\(s\) with long runs of zeros \(sparse files\) were written fully allocated, content intact: the image has no fallocate/);
  });
});
