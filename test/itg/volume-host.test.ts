import { afterAll, describe, expect, inject, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chownSync,
  linkSync,
  mkdirSync,
  symlinkSync,
  truncateSync,
  utimesSync,
  writeFileSync,
  chmodSync,
  writeSync,
  openSync,
  closeSync,
  constants,
  fstatSync,
  statSync,
  existsSync,
  readdirSync,
  readlinkSync,
  renameSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { backup, ls, restore } from '../../src/commands.js';
import { parseDestination } from '../../src/core/destination-input.js';
import type { PathListing } from '../../src/browse/ls.js';
import { parseBackupInputs, parseRestoreInputs } from '../../src/core/inputs.js';
import { Engine } from '../../src/engine/engine.js';
import { parseEngineAddress } from '../../src/core/engine-address.js';
import { trustHostDir } from '../../src/snapshot/volume-host.js';
import { hostTar, readCapabilities } from '../../src/snapshot/volume-tar.js';
import { Spool } from '../../src/snapshot/spool.js';
import { DeferredReads, readDeferred } from '../../src/snapshot/deferred-read.js';
import { Resources, docker, mountpointOf, quietLog, runContainer, treeDigest } from '../support/fixtures.js';

const env = { ...process.env, DOCKER_CONFIG: '/nonexistent' };
const inputs = (values: Record<string, string>) => (name: string) => values[name] ?? '';
const MiB = 1 << 20;

/**
 * Fills a volume's directory on this host: a symlink out of the volume, a hard-linked pair, an
 * empty directory, a fifo, a setuid file owned 1234:5678, a sparse file (data at its start and in
 * its middle), a non-ASCII name, a nested file, a file dated in 2001 and a unix socket (which no
 * archive carries). Returns a function that closes the socket's listener.
 */
async function fill(dir: string, extra?: (dir: string) => void): Promise<() => void> {
  writeFileSync(join(dir, 'a'), 'hard linked\n');
  linkSync(join(dir, 'a'), join(dir, 'b'));
  symlinkSync('/etc', join(dir, 'etc-link'));
  symlinkSync('../a', join(dir, 'rel-link'));
  mkdirSync(join(dir, 'empty'));
  mkdirSync(join(dir, 'sub/deeper'), { recursive: true });
  writeFileSync(join(dir, 'sub/deeper/file'), 'nested\n');
  execFileSync('mkfifo', [join(dir, 'fifo')]);
  writeFileSync(join(dir, 'suid'), '#!/bin/sh\n');
  chownSync(join(dir, 'suid'), 1234, 5678);
  chmodSync(join(dir, 'suid'), 0o4755);
  const sparse = join(dir, 'sparse');
  const fd = openSync(sparse, 'w');
  writeSync(fd, Buffer.alloc(4096, 7), 0, 4096, 0);
  writeSync(fd, Buffer.alloc(4096, 9), 0, 4096, 32 * MiB);
  closeSync(fd);
  truncateSync(sparse, 64 * MiB);
  writeFileSync(join(dir, 'café-日本.txt'), 'non-ASCII\n');
  // Larger than one read (1 MiB): each piece read goes to the archive as read, the next read into a buffer of its own.
  writeFileSync(join(dir, 'large'), randomBytes(3 * MiB + 5));
  writeFileSync(join(dir, 'old'), 'dated\n');
  utimesSync(join(dir, 'old'), new Date('2001-02-03T04:05:06Z'), new Date('2001-02-03T04:05:06Z'));
  // Mode 000: a file and a directory (tar-stream takes a mode of 0 for none given).
  writeFileSync(join(dir, 'shadow'), 'hashes\n');
  chmodSync(join(dir, 'shadow'), 0o000);
  mkdirSync(join(dir, 'closed'));
  writeFileSync(join(dir, 'closed/inner'), 'inner\n');
  chmodSync(join(dir, 'closed'), 0o000);
  extra?.(dir);
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(join(dir, 'sock'), resolve));
  return () => server.close();
}

/** Each entry of a tar stream: name, type, permission bits, owner, size, mtime (s), link, device, security.capability, data length and a checksum of the data. */
async function entries(stream: Readable): Promise<string[]> {
  const extract = tar.extract();
  // A failure of the archive fails the extract (the loop below throws it).
  void pipeline(stream, extract).catch(() => undefined);
  const out: string[] = [];
  for await (const entry of extract) {
    const h = entry.header;
    let bytes = 0;
    let sum = 0;
    for await (const chunk of entry) {
      bytes += (chunk as Buffer).length;
      for (const b of chunk as Buffer) sum = (sum + b) % 65521;
    }
    const mtime = Math.floor((h.mtime?.getTime() ?? 0) / 1000);
    const cap = (h.pax as Record<string, string> | undefined)?.['SCHILY.xattr.security.capability'] ?? '';
    out.push(
      [
        h.name.replace(/\/$/, ''),
        h.type,
        ((h.mode ?? 0) & 0o7777).toString(8),
        h.uid,
        h.gid,
        h.size,
        mtime,
        h.linkname ?? '',
        h.devmajor,
        h.devminor,
        cap,
        bytes,
        sum,
      ].join(' '),
    );
  }
  return out;
}

async function roundTrip(res: Resources, name: string, volume: string, tag: string): Promise<string[]> {
  const dir = join(res.tempDir(), 'store');
  const log = { ...quietLog, lines: [] as string[] };
  const b = await backup(parseBackupInputs(inputs({ containers: name, destination: `dir:${dir}`, tag })), { log, env });
  expect(b.failed, JSON.stringify(b.containers)).toBe(0);
  res.image(`container-snapshot/${name}:${tag}`);
  await docker.getContainer(name).remove({ force: true });
  await docker.getVolume(volume).remove();
  const r = await restore(parseRestoreInputs(inputs({ source: `dir:${dir}`, snapshot: tag, start: 'never' })), { log: quietLog, env });
  expect(r.failed, JSON.stringify(r.containers)).toBe(0);
  return log.lines;
}

describe('a volume read on this host', () => {
  const res = new Resources(inject('runPrefix'), 'vhost');
  const fixture = inject('fixtureImage');
  afterAll(() => res.cleanup());

  it('gives the entries the engine archive gives (sockets skipped), from the directory the engine archives', async () => {
    const volume = res.volume('same');
    const mountpoint = await mountpointOf(volume);
    const close = await fill(mountpoint, (d) => execFileSync('setcap', ['cap_net_raw+ep', join(d, 'a')], { stdio: 'ignore' }));
    const c = await runContainer({ name: res.name('same'), Image: fixture, Cmd: ['sleep', '100000'], HostConfig: { Binds: [`${volume}:/data`] } }, 'paused');
    try {
      const engine = Engine.connect(parseEngineAddress('', process.env, 'engine'));
      const dir = await trustHostDir(engine, c.id, '/data', mountpoint);
      if (typeof dir === 'string') throw new Error(dir);
      expect(await dir.owner).toBeUndefined();
      const mine = await entries(hostTar(dir, 'data', await readCapabilities(mountpoint)));
      const theirs = await entries((await c.getArchive({ path: '/data' })) as unknown as Readable);
      expect(mine).toEqual(theirs);
      expect(mine.some((e) => e.startsWith('data/sock '))).toBe(false);
      expect(mine.find((e) => e.startsWith('data/b '))).toMatch(/^data\/b link /);
      // The capability set on `a` is carried as the engine carries it (a PAX SCHILY.xattr record).
      expect(mine.find((e) => e.startsWith('data/a '))!.split(' ')[10]).not.toBe('');
    } finally {
      close();
      await c.unpause();
    }
  });

  it('round-trips a volume of links, a fifo, a setuid file of 1234:5678, a sparse file and a non-ASCII name identically', async () => {
    const name = res.name('trip');
    const volume = res.volume('trip');
    const mountpoint = await mountpointOf(volume);
    const close = await fill(mountpoint);
    const c = await runContainer({ name, Image: fixture, Cmd: ['sleep', '100000'], HostConfig: { Binds: [`${volume}:/data`] } }, 'running');
    const before = await treeDigest(c.id, '/data');
    close();
    const lines = await roundTrip(res, name, volume, 'trip');
    expect(lines.filter((l) => /reading .*: read on this host from /.test(l))).toHaveLength(1);
    const after = await treeDigest(name, '/data');
    expect(after).toEqual(before);
    expect(before.entries).toBe(18);
  });

  it('writes the held capabilities when a file with one is renamed after the read made before the hold (a pre-command): walked again', async () => {
    const name = res.name('capmove');
    const volume = res.volume('capmove');
    const mountpoint = await mountpointOf(volume);
    writeFileSync(join(mountpoint, 'capped'), '#!/bin/sh\n');
    writeFileSync(join(mountpoint, 'plain'), 'plain\n');
    execFileSync('setcap', ['cap_net_raw+ep', join(mountpoint, 'capped')], { stdio: 'ignore' });
    await runContainer({ name, Image: fixture, Cmd: ['sleep', '100000'], HostConfig: { Binds: [`${volume}:/data`] } }, 'running');
    const dir = join(res.tempDir(), 'store');
    const log = { ...quietLog, lines: [] as string[] };
    // The pre-command runs after the read made before the hold, and before the hold: the capability is now on another name.
    const b = await backup(
      parseBackupInputs(inputs({ containers: name, destination: `dir:${dir}`, tag: 'capmove', 'pre-command': 'mv /data/capped /data/moved' })),
      {
        log,
        env,
      },
    );
    expect(b.failed, JSON.stringify(b.containers)).toBe(0);
    res.image(`container-snapshot/${name}:capmove`);
    await docker.getContainer(name).remove({ force: true });
    await docker.getVolume(volume).remove();
    const r = await restore(parseRestoreInputs(inputs({ source: `dir:${dir}`, snapshot: 'capmove', start: 'never' })), { log: quietLog, env });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    const restored = await mountpointOf(volume);
    const caps = (file: string) =>
      execFileSync('getcap', [join(restored, file)], { encoding: 'utf8' })
        .trim()
        .split(' ')
        .slice(1)
        .join(' ');
    expect({ moved: caps('moved'), plain: caps('plain'), capped: existsSync(join(restored, 'capped')) }).toEqual({
      moved: 'cap_net_raw=ep',
      plain: '',
      capped: false,
    });
    // Read on this host both times: the second walk with the held capabilities.
    expect(log.lines.filter((l) => /security\.capability changed between the read before the hold and the hold: read again/.test(l))).toHaveLength(1);
    expect(log.lines.filter((l) => /reading .*: read on this host from /.test(l))).toHaveLength(1);
  });

  it('reads what the engine archives when the source of a bind mount is replaced between the read made before the hold and the hold', async () => {
    const name = res.name('rebind');
    const source = join(res.tempDir(), 'src');
    mkdirSync(source);
    writeFileSync(join(source, 'before'), 'the directory the container started with\n');
    await runContainer({ name, Image: fixture, Cmd: ['sleep', '100000'], HostConfig: { Binds: [`${source}:/data`] } }, 'running');
    /** An engine that, just before it pauses the container, puts another directory at the bind mount's source path (the engine's archive binds the path again). */
    class ReplacesSourceBeforePause extends Engine {
      override async pause(id: string): Promise<void> {
        renameSync(source, `${source}.old`);
        mkdirSync(source);
        writeFileSync(join(source, 'after'), 'the directory now at the path\n');
        return super.pause(id);
      }
    }
    const dir = join(res.tempDir(), 'store');
    const log = { ...quietLog, lines: [] as string[] };
    const b = await backup(parseBackupInputs(inputs({ containers: name, destination: `dir:${dir}`, tag: 'rebind', 'include-bind-mounts': 'true' })), {
      log,
      env,
      engine: new ReplacesSourceBeforePause(),
    });
    expect(b.failed, JSON.stringify(b.containers)).toBe(0);
    // Read on this host (not through the engine), from the directory now at the path.
    expect(log.lines.filter((l) => /reading .*: read on this host from /.test(l))).toHaveLength(1);
    res.image(`container-snapshot/${name}:rebind`);
    // The set holds at /data what the engine's archive of /data gives (the same stays true after the hold).
    const engineSees = (await entries((await docker.getContainer(name).getArchive({ path: '/data' })) as unknown as Readable)).map((e) => e.split(' ')[0]);
    const from = { spec: parseDestination(`dir:${dir}`), credentials: { username: '', password: '' } };
    const listed = (await ls(from, 'rebind', { container: name, path: '/data' }, { log: quietLog, env })) as PathListing;
    expect(listed.entries.map((e) => e.path.slice(1))).toEqual(engineSees);
    expect(engineSees).toEqual(['data', 'data/after']);
  });

  it('leaves no descriptor of the volume directory open when the hold never comes (a failing pre-command)', async () => {
    const name = res.name('prefail');
    const volume = res.volume('prefail');
    const mountpoint = await mountpointOf(volume);
    writeFileSync(join(mountpoint, 'file'), 'data\n');
    await runContainer({ name, Image: fixture, Cmd: ['sleep', '100000'], HostConfig: { Binds: [`${volume}:/data`] } }, 'running');
    const openOnVolume = () =>
      readdirSync('/proc/self/fd').filter((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`).startsWith(mountpoint);
        } catch {
          return false;
        }
      });
    const log = { ...quietLog, lines: [] as string[] };
    const b = await backup(
      parseBackupInputs(inputs({ containers: name, destination: `dir:${join(res.tempDir(), 'store')}`, tag: 'prefail', 'pre-command': 'exit 4' })),
      { log, env },
    );
    expect(b.failed).toBe(1);
    expect(b.containers[0].error).toMatch(/^pre-command exited with 4/);
    expect(openOnVolume()).toEqual([]);
  });

  it('falls back to the engine for a volume holding a name that is not UTF-8, and still round-trips it', async () => {
    const name = res.name('latin');
    const volume = res.volume('latin');
    const mountpoint = await mountpointOf(volume);
    writeFileSync(Buffer.concat([Buffer.from(`${mountpoint}/caf`), Buffer.from([0xe9])]), 'latin-1 name\n');
    const c = await runContainer({ name, Image: fixture, Cmd: ['sleep', '100000'], HostConfig: { Binds: [`${volume}:/data`] } }, 'running');
    const before = await treeDigest(c.id, '/data');
    const lines = await roundTrip(res, name, volume, 'latin');
    expect(lines.filter((l) => /: read through the engine: the host could not read it as the engine would \(.*not UTF-8/.test(l))).toHaveLength(1);
    expect(await treeDigest(name, '/data')).toEqual(before);
  });

  it('reads on this host a sparse file that starts with a hole (data only further in), and round-trips it', async () => {
    const name = res.name('hole');
    const volume = res.volume('hole');
    const mountpoint = await mountpointOf(volume);
    const sparse = join(mountpoint, 'a-hole-first');
    const fd = openSync(sparse, 'w');
    writeSync(fd, Buffer.alloc(8192, 5), 0, 8192, 3 * MiB);
    writeSync(fd, Buffer.alloc(100, 6), 0, 100, 40 * MiB + 17);
    closeSync(fd);
    truncateSync(sparse, 48 * MiB + 3);
    const c = await runContainer({ name, Image: fixture, Cmd: ['sleep', '100000'], HostConfig: { Binds: [`${volume}:/data`] } }, 'running');
    const before = await treeDigest(c.id, '/data');
    const lines = await roundTrip(res, name, volume, 'hole');
    expect(lines.filter((l) => /reading .*: read on this host from /.test(l))).toHaveLength(1);
    expect(await treeDigest(name, '/data')).toEqual(before);
  });

  it('fails the archive, not the process, when a file shrinks while it is read (another container sharing the volume)', async () => {
    const dir = res.tempDir();
    writeFileSync(join(dir, 'log'), randomBytes(4 * MiB));
    const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    // Cut to 1.5 MiB once its lstat is taken: the first MiB reads, the second comes short.
    const observe = (rel: string) => rel === 'log' && truncateSync(join(dir, 'log'), 1.5 * MiB);
    const archive = hostTar({ fd, root: fstatSync(fd, { bigint: true }) }, 'data', new Map(), { observe });
    await expect(entries(archive)).rejects.toThrow('a file shrank while it was read');
  });

  it('fails the archive, not the process, when its reader fails part-way (the spool out of room)', async () => {
    const dir = res.tempDir();
    // Files read whole (up to 1 MiB each), 25 MiB in all: the reader fails after 6 MiB.
    for (let i = 0; i < 100; i++) writeFileSync(join(dir, `f${String(i).padStart(3, '0')}`), randomBytes(256 << 10));
    const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    let got = 0;
    const full = new Writable({
      write(chunk: Buffer, _encoding, done) {
        got += chunk.length;
        setTimeout(() => done(got > 6 * MiB ? new Error('no room left') : null), 1);
      },
    });
    await expect(pipeline(hostTar({ fd, root: fstatSync(fd, { bigint: true }) }, 'data', new Map()), full)).rejects.toThrow('no room left');
    // An entry's error thrown after the pipeline settled would fail this file as an uncaught exception.
    await new Promise((resolve) => setTimeout(resolve, 100));
  });

  it.each([false, true])(
    'keeps every file of a volume of many small files and odd-sized larger ones through the spool (encrypting: %s)',
    async (encrypting) => {
      const dir = res.tempDir();
      // Per directory, a file of 64 KiB or more and of odd size (its data handed on alone, the batch left off a
      // block boundary), then small files: their data and padding fall across the archive's batches everywhere.
      const want = new Map<string, Buffer>();
      for (let d = 0; d < 24; d++) {
        mkdirSync(join(dir, `d${d}`));
        want.set(`d${d}/big`, randomBytes(65_536 + 1 + d * 7919));
        for (let f = 0; f < 300; f++) want.set(`d${d}/f${f}`, randomBytes((d * 300 + f) % 3001));
      }
      for (const [rel, data] of want) writeFileSync(join(dir, rel), data);
      const spool = Spool.for({ RUNNER_TEMP: res.tempDir() }, encrypting);
      try {
        await spool.ready();
        const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
        const spooled = await spool.take(hostTar({ fd, root: fstatSync(fd, { bigint: true }) }, 'data', new Map()));
        const extract = tar.extract();
        void pipeline(spool.read(spooled), extract).catch(() => undefined);
        let files = 0;
        for await (const entry of extract) {
          const parts: Buffer[] = [];
          for await (const part of entry) parts.push(part as Buffer);
          if (entry.header.type !== 'file') continue;
          files++;
          const rel = entry.header.name.replace(/^data\//, '');
          expect(Buffer.concat(parts).equals(want.get(rel)!), rel).toBe(true);
        }
        expect(files).toBe(want.size);
      } finally {
        await spool.close();
      }
    },
  );

  it.each([false, true])(
    'gives the same archive when settled files are left as zeros while held and read once the container is back (encrypting: %s)',
    async (encrypting) => {
      const dir = res.tempDir();
      // Small and large files across batch and block boundaries, files all or partly zero (blocks an
      // encrypting spool leaves zero), a hard-linked pair, an empty file, a symlink, a sparse file.
      const files = new Map<string, Buffer>();
      for (let d = 0; d < 6; d++) {
        mkdirSync(join(dir, `d${d}`));
        files.set(`d${d}/big`, randomBytes(MiB + 1 + d * 7919));
        files.set(`d${d}/zeros`, Buffer.alloc(8192 + d * 1000));
        files.set(`d${d}/part`, Buffer.concat([Buffer.alloc(5000), randomBytes(3000 + d), Buffer.alloc(9000)]));
        for (let f = 0; f < 200; f++) files.set(`d${d}/f${f}`, randomBytes((d * 200 + f) % 3001));
      }
      for (const [rel, data] of files) writeFileSync(join(dir, rel), data);
      linkSync(join(dir, 'd0/big'), join(dir, 'd0/big-link'));
      writeFileSync(join(dir, 'empty'), '');
      symlinkSync('d1/f1', join(dir, 'link'));
      const sparse = openSync(join(dir, 'sparse'), 'w');
      writeSync(sparse, randomBytes(4096), 0, 4096, 8 * MiB);
      closeSync(sparse);
      const withData = [...files.values()].filter((b) => b.length > 0).length;
      const spool = Spool.for({ RUNNER_TEMP: res.tempDir() }, encrypting);
      const archive = async (defer?: DeferredReads) => {
        const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
        const spooled = await spool.take(hostTar({ fd, root: fstatSync(fd, { bigint: true }) }, 'data', new Map(), { defer }));
        const read = async () => {
          const parts: Buffer[] = [];
          for await (const part of spool.read(spooled)) parts.push(part as Buffer);
          return Buffer.concat(parts);
        };
        return { spooled, read };
      };
      try {
        await spool.ready();
        const whole = await (await archive()).read();
        // Every file counts as settled: its ctime is before a cutoff in the future.
        const deferred = new DeferredReads(BigInt(Date.now() + 60_000) * 1_000_000n, { path: dir, dev: statSync(dir, { bigint: true }).dev });
        const later = await archive(deferred);
        expect(deferred.reads).toHaveLength(withData);
        expect((await later.read()).equals(whole)).toBe(false);
        const patch = spool.patch(later.spooled);
        try {
          await readDeferred(dir, deferred, patch);
        } finally {
          patch.close();
        }
        expect((await later.read()).equals(whole)).toBe(true);
      } finally {
        await spool.close();
      }
    },
  );

  describe('once its run is cancelled', () => {
    /** Reads hostTar of `dir` until `when` says to abort; the error it failed with, and how many entries and data bytes came first. */
    async function cancelledRead(dir: string, when: (entries: number, bytes: number) => boolean) {
      const controller = new AbortController();
      const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
      const extract = tar.extract();
      void pipeline(hostTar({ fd, root: fstatSync(fd, { bigint: true }) }, 'data', new Map(), { signal: controller.signal }), extract).catch(() => undefined);
      let entries = 0;
      let bytes = 0;
      try {
        for await (const entry of extract) {
          entries++;
          for await (const chunk of entry) {
            bytes += (chunk as Buffer).length;
            if (when(entries, bytes)) controller.abort(new Error('cancelled by the test'));
          }
          if (when(entries, bytes)) controller.abort(new Error('cancelled by the test'));
        }
      } catch (err) {
        return { err: err as Error, entries, bytes };
      }
      return { err: undefined, entries, bytes };
    }

    it('stops walking the directory at its next entry: the archive fails with the reason, its later entries never read', async () => {
      const dir = res.tempDir();
      // 12 MiB of 4 KiB files: three times what the archive holds ahead of its reader.
      for (let i = 0; i < 3000; i++) writeFileSync(join(dir, `f${String(i).padStart(4, '0')}`), randomBytes(4096));
      const r = await cancelledRead(dir, (entries) => entries >= 1);
      expect(r.err?.message).toBe('cancelled by the test');
      expect(r.entries).toBeLessThan(3001);
    });

    it('stops reading a large file at its next MiB', async () => {
      const dir = res.tempDir();
      writeFileSync(join(dir, 'large'), randomBytes(64 * MiB));
      const r = await cancelledRead(dir, (_entries, bytes) => bytes > 0);
      expect(r.err?.message).toBe('cancelled by the test');
      expect(r.bytes).toBeLessThan(64 * MiB);
    });
  });
});
