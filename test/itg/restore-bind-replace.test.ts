import { afterAll, describe, expect, inject, it } from 'vitest';
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { ContainerCreateOptions } from 'dockerode';
import { createServer } from 'node:net';
import { Resources, docker, runContainer } from '../support/fixtures.js';
import { freePort } from '../support/registry.js';
import { backUp, restoreFrom } from '../support/commands.js';

/** Every entry under `root`, by path: type, permission bits, owner, and content or link target. */
function tree(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: string, rel: string) => {
    const st = lstatSync(dir);
    out[rel || '.'] = `dir ${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`;
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      const r = rel ? `${rel}/${name}` : name;
      const s = lstatSync(path);
      if (s.isDirectory()) walk(path, r);
      else if (s.isSymbolicLink()) out[r] = `link ${readlinkSync(path)}`;
      else out[r] = `file ${(s.mode & 0o7777).toString(8)} ${s.uid}:${s.gid} ${readFileSync(path, 'utf8')}`;
    }
  };
  walk(root, '');
  return out;
}

/** Container options publishing port 80 on 127.0.0.1:`port` of the host. */
const published = (port: number) => ({
  ExposedPorts: { '80/tcp': {} },
  HostConfig: { PortBindings: { '80/tcp': [{ HostIp: '127.0.0.1', HostPort: String(port) }] } },
});

/** Runs `fn` while a process outside the engine listens on 127.0.0.1:`port` (the engine cannot see it, so a start publishing it fails late). */
async function whileHeld<T>(port: number, fn: () => Promise<T>): Promise<T> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  try {
    return await fn();
  } finally {
    server.close();
  }
}

/** Siblings of `path` a restore kept its old content under. */
const asides = (path: string) => readdirSync(dirname(path)).filter((n) => n.startsWith(`${basename(path)}.csx-aside-`));

/**
 * Restore with `replace` over a bind-mounted host path: the path ends up holding exactly what the
 * set holds (files added since are gone, files deleted since are back), its old content is kept
 * aside until the restore succeeds, and a failed restore puts it back as it was.
 */
describe('replacing a bind-mounted host path', () => {
  const res = new Resources(inject('runPrefix'), 'bindrep');
  const image = inject('fixtureImage');
  afterAll(() => res.cleanup());
  const store = () => `dir:${join(res.tempDir(), 'store')}`;

  /** A container bind-mounting a new host directory at /conf, backed up (with bind mounts) as `tag`; the directory is changed after. */
  async function backedUp(tag: string, extra: Pick<ContainerCreateOptions, 'ExposedPorts' | 'HostConfig'> = {}) {
    const host = join(res.tempDir(), 'conf');
    mkdirSync(join(host, 'sub'), { recursive: true });
    chmodSync(host, 0o750);
    writeFileSync(join(host, 'a'), 'a as backed up\n');
    writeFileSync(join(host, 'sub', 'b'), 'b as backed up\n');
    symlinkSync('sub/b', join(host, 'link'));
    const name = res.name(tag);
    await runContainer(
      { name, Image: image, StopTimeout: 1, Cmd: ['sleep', '100000'], ...extra, HostConfig: { ...extra.HostConfig, Binds: [`${host}:/conf`] } },
      'running',
    );
    const location = store();
    await backUp({ containers: name, destination: location, tag, 'include-bind-mounts': 'true' });
    res.image(`container-snapshot/${name}:${tag}`);
    const inSet = tree(host);
    // After the backup: a file changed, one deleted, one added, a directory renamed.
    writeFileSync(join(host, 'a'), 'a changed since\n');
    rmSync(join(host, 'sub', 'b'));
    writeFileSync(join(host, 'added'), 'added since\n');
    writeFileSync(join(host, 'sub', 'c'), 'c\n');
    const live = tree(host);
    return { host, name, location, inSet, live };
  }

  it('holds exactly the set’s content after the restore, and nothing is left aside', async () => {
    const b = await backedUp('exact');
    const r = await restoreFrom({ source: b.location, snapshot: 'exact', replace: 'true' });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    expect(tree(b.host)).toEqual(b.inSet);
    expect(asides(b.host)).toEqual([]);
  });

  it('a restore that fails after the path was filled puts its old content back as it was', async () => {
    const port = await freePort();
    const b = await backedUp('fails', published(port));
    await docker.getContainer(b.name).stop({ t: 0 });
    // A process outside the engine holds the host port, so the restored container cannot start: its host path was filled by then.
    const r = await whileHeld(port, () => restoreFrom({ source: b.location, snapshot: 'fails', replace: 'true' }));
    expect(r.failed).toBe(1);
    expect(r.containers[0].error).toMatch(/[Aa]ddress already in use|already allocated/);
    expect(tree(b.host)).toEqual(b.live);
    expect(asides(b.host)).toEqual([]);
  });

  it('a restore that fails removes what it wrote into a host path that was missing, and empties one that was empty again', async () => {
    for (const [tag, before] of [
      ['fails-missing', 'missing'],
      ['fails-empty', 'empty'],
    ] as const) {
      const port = await freePort();
      const b = await backedUp(tag, published(port));
      await docker.getContainer(b.name).stop({ t: 0 });
      rmSync(b.host, { recursive: true });
      if (before === 'empty') {
        mkdirSync(b.host, { mode: 0o711 });
        chmodSync(b.host, 0o711);
      }
      const was = before === 'empty' ? tree(b.host) : undefined;
      const mtime = before === 'empty' ? lstatSync(b.host).mtimeMs : undefined;
      const r = await whileHeld(port, () => restoreFrom({ source: b.location, snapshot: tag, replace: 'true' }));
      expect(r.failed, tag).toBe(1);
      expect(r.containers[0].error, tag).toMatch(/[Aa]ddress already in use|already allocated/);
      if (before === 'missing') expect(existsSync(b.host), tag).toBe(false);
      else {
        expect(tree(b.host), tag).toEqual(was);
        expect(Math.floor(lstatSync(b.host).mtimeMs / 1000), tag).toBe(Math.floor(mtime! / 1000));
      }
      expect(asides(b.host), tag).toEqual([]);
    }
  });

  it('a bind-mounted single file is replaced whole', async () => {
    const dir = res.tempDir();
    const file = join(dir, 'app.conf');
    writeFileSync(file, 'as backed up\n');
    const name = res.name('file');
    await runContainer({ name, Image: image, StopTimeout: 1, Cmd: ['sleep', '100000'], HostConfig: { Binds: [`${file}:/etc/app.conf`] } }, 'running');
    const location = store();
    await backUp({ containers: name, destination: location, tag: 'file', 'include-bind-mounts': 'true' });
    res.image(`container-snapshot/${name}:file`);
    writeFileSync(file, 'changed since, and longer than it was\n');
    const r = await restoreFrom({ source: location, snapshot: 'file', replace: 'true' });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    expect(readFileSync(file, 'utf8')).toBe('as backed up\n');
    expect(asides(file)).toEqual([]);
  });

  it('is refused, untouched, while a container outside the restore mounts it', async () => {
    const b = await backedUp('shared');
    const other = res.name('shared-other');
    await runContainer({ name: other, Image: image, Cmd: ['sleep', '100000'], HostConfig: { Binds: [`${b.host}/sub:/sub`] } }, 'running');
    const r = await restoreFrom({ source: b.location, snapshot: 'shared', replace: 'true' });
    expect(r.failed).toBe(1);
    expect(r.containers[0].error).toContain(`host path '${b.host}' is in use by ${other}`);
    expect(tree(b.host)).toEqual(b.live);
    expect((await docker.getContainer(b.name).inspect()).State.Running).toBe(true);
  });

  it('without replace, a path that holds data is refused and left as it is', async () => {
    const b = await backedUp('kept');
    const r = await restoreFrom({ source: b.location, snapshot: 'kept', rename: `${b.name}=${res.name('kept-copy')}` });
    expect(r.failed).toBe(1);
    expect(r.containers[0].error).toContain(`host path '${b.host}' is not empty (replace: true replaces it)`);
    expect(tree(b.host)).toEqual(b.live);
    expect(existsSync(join(b.host, 'added'))).toBe(true);
  });

  it('is refused while a container mounts it through a volume that binds it (type=none, o=bind, as Compose writes it)', async () => {
    const b = await backedUp('composed');
    const vol = res.volume('composed');
    await docker.createVolume({ Name: vol, Driver: 'local', DriverOpts: { type: 'none', o: 'bind', device: b.host } });
    const other = res.name('composed-other');
    await runContainer({ name: other, Image: image, Cmd: ['sleep', '100000'], HostConfig: { Binds: [`${vol}:/conf`] } }, 'running');
    const r = await restoreFrom({ source: b.location, snapshot: 'composed', replace: 'true' });
    expect(r.failed).toBe(1);
    expect(r.containers[0].error).toContain(`host path '${b.host}' is in use by ${other}`);
    expect(tree(b.host)).toEqual(b.live);
  });

  it('an empty host path is filled in place: a container outside the restore that mounts it sees the restored files', async () => {
    const b = await backedUp('empty');
    for (const name of readdirSync(b.host)) rmSync(join(b.host, name), { recursive: true });
    const other = res.name('empty-other');
    await runContainer({ name: other, Image: image, Cmd: ['sleep', '100000'], HostConfig: { Binds: [`${b.host}:/seen`] } }, 'running');
    const r = await restoreFrom({ source: b.location, snapshot: 'empty', replace: 'true' });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    expect(tree(b.host)).toEqual(b.inSet);
    const exec = await docker.getContainer(other).exec({ Cmd: ['cat', '/seen/a'], AttachStdout: true });
    const out = await new Promise<string>((resolve, reject) =>
      exec.start({}, (err, stream) => {
        if (err || !stream) return reject(err ?? new Error('no stream'));
        let text = '';
        stream.on('data', (d: Buffer) => (text += d.toString('latin1')));
        stream.on('end', () => resolve(text));
      }),
    );
    expect(out).toContain('a as backed up');
  });

  it('a bind-mounted symbolic link (as /etc/localtime) is left as it is, and the restore goes on', async () => {
    const dir = res.tempDir();
    writeFileSync(join(dir, 'zone'), 'zone as it is\n');
    const link = join(dir, 'localtime');
    symlinkSync(join(dir, 'zone'), link);
    const name = res.name('link');
    await runContainer({ name, Image: image, StopTimeout: 1, Cmd: ['sleep', '100000'], HostConfig: { Binds: [`${link}:/etc/localtime:ro`] } }, 'running');
    const location = store();
    await backUp({ containers: name, destination: location, tag: 'link', 'include-bind-mounts': 'true' });
    res.image(`container-snapshot/${name}:link`);
    writeFileSync(join(dir, 'zone'), 'zone changed since\n');
    for (const replace of ['false', 'true']) {
      const r = await restoreFrom({
        source: location,
        snapshot: 'link',
        replace,
        ...(replace === 'false' ? { rename: `${name}=${res.name('link-copy')}` } : {}),
      });
      expect(r.failed, JSON.stringify(r.containers)).toBe(0);
      expect(lstatSync(link).isSymbolicLink()).toBe(true);
      expect(readFileSync(link, 'utf8')).toBe('zone changed since\n');
    }
  });
});
