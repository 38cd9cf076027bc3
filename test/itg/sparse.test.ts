import { afterAll, describe, expect, inject, it } from 'vitest';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import tar from 'tar-stream';
import { backup, restore } from '../../src/commands.js';
import { parseBackupInputs, parseRestoreInputs } from '../../src/core/inputs.js';
import { RUN_LABEL } from '../../src/snapshot/fill.js';
import { storedBlobs, type SnapshotSet } from '../../src/snapshot/manifest.js';
import { runLabelValue } from '../../src/snapshot/restore-journal.js';
import { InterruptedError, RestoreTransaction } from '../../src/snapshot/transaction.js';
import { Resources, docker, quietLog, runContainer } from '../support/fixtures.js';

const env = { ...process.env, DOCKER_CONFIG: '/nonexistent' };
const inputs = (values: Record<string, string>) => (name: string) => values[name] ?? '';
const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * Sparse files made in the volume with busybox dd (seek= leaves a hole; count=0 seek=N sets the
 * size): data at the start, middle and end of `holes`; `tail` ends in a hole; `empty` is all hole;
 * `zeros` holds written (allocated) zeros then data, as a preallocated file does; `small` short zero runs only.
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
  const c = await runContainer(
    {
      name,
      Image: image,
      Cmd: ['sh', '-c', 'cd /data && for f in *; do echo "$(sha256sum "$f") $(stat -c "%s %b %B" "$f")"; done'],
      HostConfig: { Binds: [`${volume}:/data`] },
    },
    'exited',
  );
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

/** A tar of a `fallocate` that only sleeps: hole punching that takes as long as the test wants. */
function slowFallocateTar(): tar.Pack {
  const pack = tar.pack();
  pack.entry({ name: 'bin/fallocate', mode: 0o755 }, '#!/bin/sh\nexec sleep 600\n');
  pack.finalize();
  return pack;
}

/** The fixture image with `files` added, committed as `<prefix>-<tag>:1`. */
async function imageWith(res: Resources, fixture: string, tag: string, files: tar.Pack): Promise<string> {
  const made = await runContainer({ name: res.name(`make-${tag}`), Image: fixture, Cmd: ['true'] }, 'created');
  await made.putArchive(files as unknown as NodeJS.ReadableStream, { path: '/' });
  const image = res.image(`${res.prefix}-${tag}:1`);
  await made.commit({ repo: `${res.prefix}-${tag}`, tag: '1' });
  return image;
}

/**
 * Rewrites the set `tag` of the dir: store at `store` without its volumes' side records, as a set
 * written before they named sparse files (and with no other metadata to keep) looks.
 */
function withoutSideRecords(store: string, tag: string): void {
  const tagFile = join(store, 'sets', `${tag}.json`);
  const descriptor = JSON.parse(readFileSync(tagFile, 'utf8')) as { digest: string; size: number };
  const set = JSON.parse(readFileSync(join(store, 'blobs', 'sha256', descriptor.digest.slice(7)), 'utf8')) as {
    containers: Array<{ volumes: Array<{ metadata?: { record?: unknown } }> }>;
  };
  for (const v of set.containers.flatMap((c) => c.volumes)) delete v.metadata?.record;
  const body = Buffer.from(`${JSON.stringify(set, null, 2)}\n`);
  const hex = createHash('sha256').update(body).digest('hex');
  writeFileSync(join(store, 'blobs', 'sha256', hex), body);
  writeFileSync(tagFile, JSON.stringify({ ...descriptor, digest: `sha256:${hex}`, size: body.length }));
}

/** Backs up `name` (its volume `volume`), removes both, restores; returns the restore's log. `edit` may change the stored set first. */
async function roundTrip(res: Resources, name: string, volume: string, tag: string, edit?: (store: string) => void): Promise<string[]> {
  const dir = join(res.tempDir(), 'store');
  const store = `dir:${dir}`;
  const b = await backup(parseBackupInputs(inputs({ containers: name, destination: store, tag })), { log: quietLog, env });
  expect(b.failed, JSON.stringify(b.containers)).toBe(0);
  res.image(`container-snapshot/${name}:${tag}`);
  edit?.(dir);
  await docker.getContainer(name).remove({ force: true });
  await docker.getVolume(volume).remove();
  const log = { ...quietLog, lines: [] as string[] };
  const r = await restore(parseRestoreInputs(inputs({ source: store, snapshot: tag, start: 'never' })), { log, env });
  expect(r.failed, JSON.stringify(r.containers)).toBe(0);
  return log.lines;
}

/** Starts a container of `image` that makes the MAKE files in `volume` (at /data), then sleeps; returns the files' state. */
async function madeFiles(res: Resources, fixture: string, image: string, name: string, volume: string): Promise<Record<string, FileState>> {
  await runContainer(
    { name, Image: image, Cmd: ['sh', '-c', `${MAKE.join(' && ')} && exec sleep 100000`], HostConfig: { Binds: [`${volume}:/data`] } },
    'running',
  );
  await new Promise((r) => setTimeout(r, 1000));
  return volumeFiles(res, fixture, volume);
}

describe('sparse files in a volume', () => {
  const res = new Resources(inject('runPrefix'), 'sparse');
  const fixture = inject('fixtureImage');
  afterAll(() => res.cleanup());
  let dig: Promise<string> | undefined;
  /** The fixture image with util-linux fallocate, made once. */
  const digImage = () => (dig ??= imageWith(res, fixture, 'dig', fallocateTar()));

  it('come back byte-identical and sparse again when the image has util-linux fallocate; a preallocated file stays allocated; other files byte-identical', async () => {
    const image = await digImage();
    const name = res.name('app');
    const volume = res.volume('app');
    const before = await madeFiles(res, fixture, image, name, volume);
    expect(Object.keys(before).sort()).toEqual(['empty', 'holes', 'small', 'tail', 'zeros']);
    expect(before.holes.size).toBe(8 * MiB);
    expect(before.zeros.allocated).toBeGreaterThanOrEqual(4 * MiB);

    const lines = await roundTrip(res, name, volume, 'dig');
    const after = await volumeFiles(res, fixture, volume);
    for (const f of Object.keys(before)) expect({ f, sha: after[f].sha, size: after[f].size }).toEqual({ f, sha: before[f].sha, size: before[f].size });
    // Data: 192 KiB, 64 KiB, none; a few file system blocks of slack.
    expect(after.holes.allocated).toBeLessThanOrEqual(192 * KiB + 64 * KiB);
    expect(after.tail.allocated).toBeLessThanOrEqual(64 * KiB + 64 * KiB);
    expect(after.empty.allocated).toBeLessThanOrEqual(64 * KiB);
    // Written zeros (not sparse at backup) stay written, as a preallocated file must.
    expect(after.zeros.allocated).toBeGreaterThanOrEqual(before.zeros.allocated);
    expect(lines.join('\n')).toMatch(/3 sparse file\(s\) made sparse again$/m);
  });

  it('from a set that does not record which files were sparse: every file with long zero runs is made sparse, and the log says why', async () => {
    const image = await digImage();
    const name = res.name('old');
    const volume = res.volume('old');
    const before = await madeFiles(res, fixture, image, name, volume);
    const lines = await roundTrip(res, name, volume, 'old', (dir) => withoutSideRecords(dir, 'old'));
    const after = await volumeFiles(res, fixture, volume);
    for (const f of Object.keys(before)) expect({ f, sha: after[f].sha, size: after[f].size }).toEqual({ f, sha: before[f].sha, size: before[f].size });
    expect(after.empty.allocated).toBeLessThanOrEqual(64 * KiB);
    expect(after.zeros.allocated).toBeLessThanOrEqual(64 * KiB);
    expect(lines.filter((l) => /does not record which files were sparse/.test(l))).toEqual([
      expect.stringMatching(
        /4 sparse file\(s\) made sparse again; the set does not record which files were sparse \(written before it did, or the volume's directory was not readable at backup\): files with zero runs of 64 KiB or more were punched$/,
      ),
    ]);
  });

  it('come back byte-identical, fully allocated, with a warning, when the image has no fallocate that punches holes', async () => {
    const name = res.name('plain');
    const volume = res.volume('plain');
    const before = await madeFiles(res, fixture, fixture, name, volume);
    const lines = await roundTrip(res, name, volume, 'plain');
    const after = await volumeFiles(res, fixture, volume);
    for (const f of Object.keys(before)) expect({ f, sha: after[f].sha, size: after[f].size }).toEqual({ f, sha: before[f].sha, size: before[f].size });
    expect(after.empty.allocated).toBeGreaterThanOrEqual(16 * MiB);
    expect(lines.join('\n')).toMatch(
      /warning: volume '.*': 3 file\(s\) with long runs of zeros \(sparse files\) were written fully allocated, content intact: the image has no fallocate/,
    );
  });

  it('a replace restore that fails and is rolled back leaves the old sparse files sparse and the preallocated ones allocated', async () => {
    const image = await digImage();
    const name = res.name('back');
    const [first, second] = [res.volume('back-a'), res.volume('back-b')];
    const make = MAKE.map((c) => c.replaceAll('/data/', '/a/')).concat(MAKE.map((c) => c.replaceAll('/data/', '/b/')));
    // Made once: the old container is started again when it is put back.
    const once = `[ -e /a/.made ] || { ${make.join(' && ')} && touch /a/.made; }`;
    await runContainer(
      { name, Image: image, Cmd: ['sh', '-c', `${once} && exec sleep 100000`], HostConfig: { Binds: [`${first}:/a`, `${second}:/b`] } },
      'running',
    );
    await new Promise((r) => setTimeout(r, 1000));
    const dir = join(res.tempDir(), 'store');
    const b = await backup(parseBackupInputs(inputs({ containers: name, destination: `dir:${dir}`, tag: 'back' })), { log: quietLog, env });
    expect(b.failed, JSON.stringify(b.containers)).toBe(0);
    res.image(`container-snapshot/${name}:back`);
    // The volume filled second fails its check: the first was replaced and filled by then, and is put back.
    const set = JSON.parse(
      readFileSync(
        join(dir, 'blobs', 'sha256', (JSON.parse(readFileSync(join(dir, 'sets', 'back.json'), 'utf8')) as { digest: string }).digest.slice(7)),
        'utf8',
      ),
    ) as SnapshotSet;
    const [one, two] = set.containers[0].volumes.map((v) => storedBlobs(v.blob).map((b) => b.digest));
    const damaged = join(dir, 'blobs', 'sha256', two.find((d) => !one.includes(d))!.slice(7));
    const bytes = readFileSync(damaged);
    bytes[Math.floor(bytes.length / 2)] ^= 0xff;
    writeFileSync(damaged, bytes);
    const before = { a: await volumeFiles(res, fixture, first), b: await volumeFiles(res, fixture, second) };

    const log = { ...quietLog, lines: [] as string[] };
    const r = await restore(parseRestoreInputs(inputs({ source: `dir:${dir}`, snapshot: 'back', start: 'never', replace: 'true' })), { log, env });
    expect(r.failed).toBe(1);
    expect(log.lines.join('\n')).toMatch(/the previous container is back and running/);
    const after = { a: await volumeFiles(res, fixture, first), b: await volumeFiles(res, fixture, second) };
    for (const v of ['a', 'b'] as const) {
      for (const f of Object.keys(before[v]))
        expect({ v, f, sha: after[v][f].sha, size: after[v][f].size }).toEqual({ v, f, sha: before[v][f].sha, size: before[v][f].size });
      expect({
        v,
        holes: after[v].holes.allocated <= 256 * KiB,
        empty: after[v].empty.allocated <= 64 * KiB,
        zeros: after[v].zeros.allocated >= before[v].zeros.allocated,
      }).toEqual({ v, holes: true, empty: true, zeros: true });
    }
  });

  it('a restore cancelled while a helper punches holes ends promptly, puts back what it changed and leaves no helper', async () => {
    const image = await imageWith(res, fixture, 'slow', slowFallocateTar());
    const name = res.name('cancel');
    const volume = res.volume('cancel');
    await madeFiles(res, fixture, image, name, volume);
    const dir = join(res.tempDir(), 'store');
    const b = await backup(parseBackupInputs(inputs({ containers: name, destination: `dir:${dir}`, tag: 'cancel' })), { log: quietLog, env });
    expect(b.failed, JSON.stringify(b.containers)).toBe(0);
    res.image(`container-snapshot/${name}:cancel`);
    await docker.getContainer(name).remove({ force: true });
    await docker.getVolume(volume).remove();

    const run = runLabelValue();
    const txn = new RestoreTransaction(run);
    const ours = { label: [`${RUN_LABEL}=${run}`] };
    const restoring = restore(parseRestoreInputs(inputs({ source: `dir:${dir}`, snapshot: 'cancel', start: 'never' })), { log: quietLog, env, txn }).then(
      () => undefined,
      (err: unknown) => err,
    );
    let punching = false;
    for (let i = 0; i < 600 && !punching; i++) {
      await new Promise((r) => setTimeout(r, 100));
      punching = (await docker.listContainers({ filters: { ...ours, status: ['running'] } })).some((c) => c.Command.includes('--dig-holes'));
    }
    expect(punching).toBe(true);
    const cancelled = Date.now();
    txn.abort('cancelled by the test');
    const err = await restoring;
    expect(err).toBeInstanceOf(InterruptedError);
    expect(Date.now() - cancelled).toBeLessThan(20_000);
    expect(await docker.listContainers({ all: true, filters: ours })).toEqual([]);
    expect(await docker.listVolumes({ filters: { name: [volume] } }).then((v) => (v.Volumes ?? []).map((x) => x.Name))).not.toContain(volume);
  });
});
