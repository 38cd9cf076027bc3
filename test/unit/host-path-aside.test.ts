import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import {
  asideBlocker,
  asidePathOf,
  emptyFilledPath,
  filledPathRecord,
  inodeOf,
  mountInside,
  moveAside,
  putBackHostPath,
  removeAsidePath,
  usersOf,
} from '../../src/snapshot/host-path-aside.js';
import { processStart } from '../../src/core/process-liveness.js';
import type { PathProbe } from '../../src/snapshot/fill.js';
import { forgetLeftovers, hasPending, type RestorePending } from '../../src/snapshot/transaction.js';

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

/** A directory `data` holding one file, in a new temporary directory. */
function hostPath(): string {
  const root = mkdtempSync(join(tmpdir(), 'csx-aside-'));
  dirs.push(root);
  const path = join(root, 'data');
  mkdirSync(path);
  writeFileSync(join(path, 'old'), 'old content\n');
  return path;
}

/** What the engine would report for `path`, from this host's own stat. */
function probeOf(path: string): PathProbe {
  const st = lstatSync(path);
  return {
    exists: true,
    kind: st.isDirectory() ? 'directory' : 'file',
    hasData: true,
    root: { uid: st.uid, gid: st.gid, mode: st.mode & 0o7777, mtime: Math.floor(st.mtimeMs / 1000) },
  };
}

describe('host path kept aside', () => {
  it('names a sibling of the path', () => {
    expect(asidePathOf('/srv/app/data')).toMatch(/^\/srv\/app\/data\.csx-aside-[0-9a-f]{6}$/);
  });

  it('puts the old content back over what the restore wrote, and is safe to run again', async () => {
    const path = hostPath();
    const r = { path, aside: asidePathOf(path) };
    await moveAside(r);
    mkdirSync(path);
    writeFileSync(join(path, 'new'), 'restored\n');
    await putBackHostPath(r);
    expect(readFileSync(join(path, 'old'), 'utf8')).toBe('old content\n');
    expect(existsSync(join(path, 'new'))).toBe(false);
    expect(existsSync(r.aside)).toBe(false);
    // Run again (a recovery after a rollback that was killed once done): nothing moves.
    await putBackHostPath(r);
    expect(readFileSync(join(path, 'old'), 'utf8')).toBe('old content\n');
  });

  it('leaves the path alone when it was never moved (killed between the record and the rename)', async () => {
    const path = hostPath();
    await putBackHostPath({ path, aside: asidePathOf(path) });
    expect(readFileSync(join(path, 'old'), 'utf8')).toBe('old content\n');
  });

  it('a commit removes a sibling deeper than PATH_MAX (4096 bytes), which node alone cannot', async () => {
    const path = hostPath();
    const r = { path, aside: asidePathOf(path) };
    // Made one level at a time, each from the one above: no path handed to the kernel is longer than PATH_MAX.
    const name = 'D'.repeat(120);
    execFileSync('bash', ['-c', `cd "$1" && for i in $(seq 40); do mkdir ${name} && cd ${name}; done && echo x > leaf`, 'deep', path]);
    await moveAside(r);
    await removeAsidePath(r.aside);
    expect(existsSync(r.aside)).toBe(false);
  });

  it('a commit removes the sibling, once or twice', async () => {
    const path = hostPath();
    const r = { path, aside: asidePathOf(path) };
    await moveAside(r);
    await removeAsidePath(r.aside);
    await removeAsidePath(r.aside);
    expect(existsSync(r.aside)).toBe(false);
  });

  it('can move a path this host sees as the engine does', async () => {
    const path = hostPath();
    expect(await asideBlocker(path, probeOf(path))).toBeUndefined();
  });

  it('refuses a path the engine sees otherwise (another host), one that is not here, and the root directory', async () => {
    const path = hostPath();
    const probe = probeOf(path);
    expect(await asideBlocker(path, { ...probe, root: { ...probe.root!, mtime: probe.root!.mtime - 60 } })).toMatch(/does not see the path the engine mounts/);
    expect(await asideBlocker(path, { ...probe, kind: 'file' })).toMatch(/does not see the path the engine mounts/);
    expect(await asideBlocker(join(path, 'missing'), probe)).toMatch(/does not see the path the engine mounts/);
    expect(await asideBlocker('/', probeOf('/'))).toBe('it is the root directory');
  });

  it('refuses a top-level directory, one holding the engine’s data, and one with a file system mounted inside', async () => {
    expect(await asideBlocker('/proc', probeOf('/proc'))).toBe('it is a top-level directory of the host');
    const path = hostPath();
    expect(await asideBlocker(path, probeOf(path), join(path, 'docker'))).toBe(`it holds the engine's own data (${join(path, 'docker')})`);
    // The engine's data below another directory of the path's parent is no reason.
    expect(await asideBlocker(path, probeOf(path), `${path}-other/docker`)).toBeUndefined();
    const mountinfo = `22 1 0:21 / /proc rw - proc proc rw\n40 22 0:50 / ${join(path, 'with\\040space')} rw - tmpfs tmpfs rw\n`;
    expect(await asideBlocker(path, probeOf(path), undefined, () => mountinfo)).toBe(`a file system is mounted inside it, at ${join(path, 'with space')}`);
  });

  it('reads mount points from mountinfo, their escapes undone, at or below a directory only', () => {
    const info = '36 35 98:0 /mnt1 /mnt/a\\040b rw - ext3 /dev/root rw\n37 35 98:0 / /mnt/abc rw - ext3 /dev/root rw\n';
    expect(mountInside('/mnt/a b', info)).toBe('/mnt/a b');
    expect(mountInside('/mnt', info)).toBe('/mnt/a b');
    expect(mountInside('/mnt/ab', info)).toBeUndefined();
  });

  it('finds the containers that mount the path, one inside it, or it through a symbolic link, not one holding it', () => {
    const path = hostPath();
    const link = `${path}-link`;
    symlinkSync(path, link);
    const mounts = [
      { id: 'a', name: 'same', paths: [path] },
      { id: 'b', name: 'inside', paths: [join(path, 'old')] },
      { id: 'c', name: 'holding', paths: [join(path, '..')] },
      { id: 'd', name: 'linked', paths: [link] },
      { id: 'e', name: 'beside', paths: [`${path}2`, '/elsewhere'] },
    ];
    // One that mounts a directory holding it sees the new content there: not one that keeps the old.
    expect(usersOf(path, mounts).map((u) => u.name)).toEqual(['same', 'inside', 'linked']);
  });

  it('takes over the put back of a process that ended, never of one still running', async () => {
    const path = hostPath();
    const r = { path, aside: asidePathOf(path) };
    await moveAside(r);
    mkdirSync(path);
    // Claimed by a running process (this one's parent): left to it.
    const live = `${r.aside}.claim-${process.ppid}-${processStart(process.ppid)}`;
    renameSync(r.aside, live);
    await putBackHostPath(r);
    expect(existsSync(join(path, 'old'))).toBe(false);
    // Its claim outlived it (a pid no process has): taken, and put back.
    renameSync(live, `${r.aside}.claim-4194303-1`);
    await putBackHostPath(r);
    expect(readFileSync(join(path, 'old'), 'utf8')).toBe('old content\n');
    expect(existsSync(`${r.aside}.claim-4194303-1`)).toBe(false);
  });
});

describe('host path filled in place (missing or empty before)', () => {
  it('is recorded only where this host sees it as the engine does: missing here too, or empty with the same owner, mode and time', async () => {
    const path = hostPath();
    const missing = join(path, 'new');
    expect(await filledPathRecord(missing, { exists: false, hasData: false }, 0)).toEqual({ path: missing, existed: false });
    // Its directory not here: another host's path.
    expect(await filledPathRecord(join(path, 'no', 'new'), { exists: false, hasData: false }, 0)).toBeUndefined();
    const empty = join(path, 'empty');
    mkdirSync(empty);
    const probe = { ...probeOf(empty), hasData: false };
    const st = lstatSync(empty, { bigint: true });
    expect(await filledPathRecord(empty, probe, 0)).toEqual({ path: empty, existed: true, root: probe.root, inode: `${st.dev}:${st.ino}` });
    // What the engine's helper writes is root's: a runner that is not root could not remove it again.
    expect(await filledPathRecord(empty, probe, 1000)).toBeUndefined();
    expect(await filledPathRecord(empty, { ...probe, root: { ...probe.root!, mode: 0o700 } }, 0)).toBeUndefined();
    // Missing for the engine, there here (or the reverse): another host.
    expect(await filledPathRecord(empty, { exists: false, hasData: false }, 0)).toBeUndefined();
    expect(await filledPathRecord(missing, probe, 0)).toBeUndefined();
    writeFileSync(join(empty, 'f'), 'x');
    expect(await filledPathRecord(empty, probe, 0)).toBeUndefined();
  });

  it('is undone: a path the fill made removed, an empty one emptied with its owner, mode and time back; safe to run again', async () => {
    const path = hostPath();
    const made = { path: join(path, 'made'), existed: false };
    mkdirSync(join(made.path, 'sub'), { recursive: true });
    writeFileSync(join(made.path, 'sub', 'f'), 'restored');
    await emptyFilledPath(made);
    expect(existsSync(made.path)).toBe(false);
    await emptyFilledPath(made);

    const empty = join(path, 'empty');
    mkdirSync(empty, { mode: 0o711 });
    const before = lstatSync(empty);
    const record = { path: empty, existed: true, root: { uid: before.uid, gid: before.gid, mode: before.mode & 0o7777, mtime: 1_600_000_000 } };
    execFileSync('chmod', ['0755', empty]);
    mkdirSync(join(empty, 'd'));
    writeFileSync(join(empty, 'd', 'f'), 'restored');
    symlinkSync('d/f', join(empty, 'l'));
    await emptyFilledPath(record);
    await emptyFilledPath(record);
    const after = lstatSync(empty);
    expect(readdirSync(empty)).toEqual([]);
    expect([after.mode & 0o7777, after.uid, after.gid, Math.floor(after.mtimeMs / 1000)]).toEqual([0o711, before.uid, before.gid, 1_600_000_000]);
  });

  it('leaves a path that is not the one filled any more: moved away and a symbolic link put there, or another directory', async () => {
    const path = hostPath();
    const empty = join(path, 'empty');
    mkdirSync(empty);
    const record = (await filledPathRecord(empty, { ...probeOf(empty), hasData: false }, 0))!;
    // Moved elsewhere, a link to it put in its place: the data it leads to is not the restore's to empty.
    const moved = join(path, 'moved');
    renameSync(empty, moved);
    writeFileSync(join(moved, 'kept'), 'kept');
    symlinkSync(moved, empty);
    await emptyFilledPath(record);
    expect(readFileSync(join(moved, 'kept'), 'utf8')).toBe('kept');
    expect(lstatSync(empty).isSymbolicLink()).toBe(true);
    // A path the fill made, replaced since by another directory.
    const made = join(path, 'made');
    mkdirSync(made);
    const inode = await inodeOf(made);
    // Moved away (its inode still in use, so the new directory cannot reuse it).
    renameSync(made, join(path, 'made-away'));
    mkdirSync(made);
    writeFileSync(join(made, 'other'), 'other');
    await emptyFilledPath({ path: made, existed: false, inode });
    expect(existsSync(join(made, 'other'))).toBe(true);
  });
});

describe('leftovers naming host paths', () => {
  it('are pending until removed, and journals without them still read', () => {
    const pending: RestorePending = { run: 'r', targets: [], leftovers: { containers: [], images: [], volumes: [], paths: ['/a.csx-aside-000000'] } };
    expect(hasPending(pending)).toBe(true);
    forgetLeftovers(pending, { containers: [], images: [], volumes: [], paths: ['/a.csx-aside-000000'] });
    expect(pending.leftovers).toBeUndefined();
    const older: RestorePending = { run: 'r', targets: [], leftovers: { containers: ['c'], images: [], volumes: [] } };
    forgetLeftovers(older, { containers: ['c'], images: [], volumes: [] });
    expect([older.leftovers, hasPending(older)]).toEqual([undefined, false]);
  });
});
