import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { spoolRoot, sweepSpools, tempTagPrefix } from '../../src/core/recovery.js';
import { DirDestination } from '../../src/destinations/dir.js';
import { SET_SCOPE } from '../../src/destinations/types.js';
import { Spool } from '../../src/snapshot/spool.js';
import { MemoryDestination } from '../support/memory-destination.js';

const silent = { info: () => undefined, warning: () => undefined, error: () => undefined, group: <T>(_t: string, fn: () => Promise<T>) => fn() };
const dirs: string[] = [];
const temp = () => {
  const d = mkdtempSync(join(tmpdir(), 'csx-spool-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const content = () => Readable.from([Buffer.from('volume archive '.repeat(1000))]);
const files = (dir: string) => (existsSync(dir) ? readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()) : []);

describe('the spool', () => {
  it('holds a blob as a 0600 file until it is stored, then is empty; its directory goes at close', async () => {
    const env = { RUNNER_TEMP: temp() };
    const dest = new MemoryDestination();
    const spool = Spool.for([dest], env);
    const seen = { read: 0, stored: 0 };
    const counting = (key: keyof typeof seen) => new Transform({ transform: (c: Buffer, _e, done) => ((seen[key] += c.length), done(null, c)) });
    const spooled = await spool.take(content(), 'application/vnd.test+zstd', counting('read'));
    expect(statSync(spooled.path).mode & 0o777).toBe(0o600);
    expect(spooled.path.startsWith(spoolRoot(env))).toBe(true);
    expect(await spool.store(spooled, [{ dest, scope: SET_SCOPE }], 'v', counting('stored'))).toBe(true);
    // A meter sees the content as it is read, and the stored (compressed) bytes as they are copied.
    expect(seen).toEqual({ read: spooled.blob.contentSize, stored: spooled.blob.size });
    expect(dest.blobs.get(spooled.blob.digest)?.length).toBe(spooled.blob.size);
    expect(files(spoolRoot(env))).toEqual([]);
    await spool.close();
    expect(readdirSync(spoolRoot(env))).toEqual([]);
  });

  it('with a dir: destination, spools in its .tmp and renames the file into place (written once)', async () => {
    const root = join(temp(), 'store');
    const dir = new DirDestination(`dir:${root}`, root);
    await dir.check('write');
    const other = new MemoryDestination();
    const spool = Spool.for([other, dir], { RUNNER_TEMP: temp() });
    const spooled = await spool.take(content(), 'application/vnd.test+zstd');
    expect(spooled.path.startsWith(join(root, '.tmp'))).toBe(true);
    const ino = statSync(spooled.path).ino;
    await spool.store(spooled, [{ dest: other, scope: SET_SCOPE }, { dest: dir, scope: SET_SCOPE }], 'v');
    expect(statSync(join(root, 'blobs', 'sha256', spooled.blob.digest.slice(7))).ino).toBe(ino);
    expect(other.blobs.has(spooled.blob.digest)).toBe(true);
    expect(files(join(root, '.tmp'))).toEqual([]);
    await dir.close();
  });

  it('leaves no file when the source fails mid-way, nor after close with blobs never stored', async () => {
    const env = { RUNNER_TEMP: temp() };
    const spool = Spool.for([new MemoryDestination()], env);
    const failing = Readable.from(
      (async function* () {
        yield Buffer.alloc(1000);
        throw new Error('archive cut');
      })(),
    );
    await expect(spool.take(failing, 'application/vnd.test+zstd')).rejects.toThrow(/archive cut/);
    expect(files(spoolRoot(env))).toEqual([]);
    await spool.take(content(), 'application/vnd.test+zstd');
    await spool.close();
    expect(files(spoolRoot(env))).toEqual([]);
  });

  it("is removed by a later run's recovery when its process is gone, never while it is alive", async () => {
    const env = { RUNNER_TEMP: temp() };
    const dead = spawnSync('true').pid!;
    const left = join(spoolRoot(env), `${tempTagPrefix()}-${dead}-0badc0de`);
    const live = join(spoolRoot(env), `${tempTagPrefix()}-${process.pid}-0badc0de`);
    for (const d of [left, live]) {
      mkdirSync(d, { recursive: true });
      writeFileSync(join(d, 'blob-x'), 'partial');
    }
    expect(await sweepSpools(env, silent)).toBe(1);
    expect(existsSync(left)).toBe(false);
    expect(existsSync(live)).toBe(true);
  });
});
