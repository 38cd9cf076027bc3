import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { existsSync, mkdirSync, readFileSync, readdirSync, watch, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { processHost } from '../../src/core/process-liveness.js';
import { stateDir } from '../../src/core/state-dir.js';
import { Engine } from '../../src/engine/engine.js';
import { RUN_LABEL } from '../../src/snapshot/fill.js';
import { recoverAbandonedRestores } from '../../src/snapshot/restore-journal.js';
import type { RestorePending } from '../../src/snapshot/transaction.js';
import { Resources, docker, quietLog, runContainer, signalWhen, treeDigest, waitFor } from '../support/fixtures.js';
import { runCli, runStep } from '../support/runner.js';

/**
 * What puts back an interrupted restore must do it once, whatever interrupts it in turn: the post
 * step and the next run's recovery must not undo what the other put back, a recovery killed
 * half-way must finish on the next run, and containers sharing a volume get its old content back.
 */
describe('putting back an interrupted restore', () => {
  const res = new Resources(inject('runPrefix'), 'rrec');
  const image = inject('fixtureImage');
  afterAll(() => res.cleanup());

  beforeAll(() => {
    expect(stateDir(process.env)).toContain('csx-test-state');
  });

  const gone = async (id: string) =>
    !(await docker
      .getContainer(id)
      .inspect()
      .then(
        () => true,
        () => false,
      ));
  const asideVolumes = async (vol: string) =>
    ((await docker.listVolumes({ filters: { label: [RUN_LABEL] } })).Volumes ?? []).filter((v) => v.Name.startsWith(`${vol}-aside-`));
  const journalOf = (pid?: number) => {
    const dir = join(stateDir(process.env), 'restore-journal');
    return existsSync(dir) ? readdirSync(dir).filter((f) => f === `${processHost()}-${pid}.json`) : [];
  };
  const exec = async (name: string, cmd: string) => {
    const e = await docker.getContainer(name).exec({ Cmd: ['sh', '-c', cmd] });
    await (await e.start({})).resume();
    await waitFor(async () => (await e.inspect()).Running === false);
  };

  interface Service {
    names: string[];
    ids: string[];
    vol: string;
    store: string;
    /** Digests of `paths` in the first container: in the set, and after it wrote on. */
    inSet: string[];
    live: string[];
    paths: string[];
  }

  let seq = 0;
  /**
   * `count` containers sharing the named volume /v (the first writes `mb` MB into it), and with
   * `anonymousMb` > 0 an anonymous volume /w of that size in the first, and `layerMb` MB in its
   * writable layer; backed up as `good`, then each path written on.
   */
  async function service(count: number, mb: number, anonymousMb = 0, layerMb = 0): Promise<Service> {
    const suffix = `s${seq++}`;
    const vol = res.volume(suffix);
    const store = join(res.tempDir(), 'store');
    const names: string[] = [];
    const fill = (dir: string, n: number) => `(test -f ${dir}/big || dd if=/dev/urandom of=${dir}/big bs=1M count=${n} 2>/dev/null)`;
    for (let i = 0; i < count; i++) {
      const name = res.name(`${suffix}-c${i}`);
      const script =
        i === 0
          ? `${fill('/v', mb)}; ${anonymousMb ? fill('/w', anonymousMb) + ';' : ''} test -f /v/ready || touch /v/ready; exec sleep 100000`
          : 'exec sleep 100000';
      const Volumes = anonymousMb && i === 0 ? { '/w': {} } : undefined;
      await runContainer({ name, Image: image, StopTimeout: 1, Cmd: ['sh', '-c', script], Volumes, HostConfig: { Binds: [`${vol}:/v`] } }, 'running');
      names.push(name);
      if (i === 0)
        await waitFor(
          async () =>
            treeDigest(name, '/v/ready').then(
              () => true,
              () => false,
            ),
          60_000,
        );
    }
    await exec(names[0], `echo set > /layer${layerMb ? `; dd if=/dev/urandom of=/big bs=1M count=${layerMb} 2>/dev/null` : ''}`);
    const paths = ['/v', '/layer', ...(anonymousMb ? ['/w'] : [])];
    const backup = await runCli(['backup', '--containers', names.join(','), '--destination', `dir:${store}`, '--tag', 'good']);
    expect(backup.code, backup.stderr).toBe(0);
    names.forEach((n) => res.image(`container-snapshot/${n}:good`));
    const digests = async () => Promise.all(paths.map(async (p) => (await treeDigest(names[0], p)).digest));
    const inSet = await digests();
    await exec(names[0], `echo later > /v/later; echo later > /layer${anonymousMb ? '; echo later > /w/later' : ''}`);
    const live = await digests();
    const ids = await Promise.all(names.map(async (n) => (await docker.getContainer(n).inspect()).Id));
    return { names, ids, vol, store, inSet, live, paths };
  }

  /** Every old container is back under its name and running, the first one with its data as it was. */
  async function expectOldBack(s: Service) {
    for (const n of s.names) expect((await docker.getContainer(n).inspect()).State.Running).toBe(true);
    for (const [i, p] of s.paths.entries()) expect((await treeDigest(s.names[0], p)).digest, p).toBe(s.live[i]);
    expect(await asideVolumes(s.vol)).toEqual([]);
  }

  const journalDir = join(stateDir(process.env), 'restore-journal');
  /** Kills the restore (SIGKILL) the moment its journal records a commit (a `leftovers` entry), before or while what it kept aside is removed. */
  const killAtCommit = (sent: { at?: number; pid?: number }) => (child: ChildProcess) => {
    mkdirSync(journalDir, { recursive: true, mode: 0o700 });
    const file = join(journalDir, `${processHost()}-${child.pid}.json`);
    const watcher = watch(journalDir, () => {
      if (sent.at) return;
      const text = (() => {
        try {
          return readFileSync(file, 'utf8');
        } catch {
          return '';
        }
      })();
      if (!text.includes('"leftovers"')) return;
      sent.at = Date.now();
      sent.pid = child.pid;
      child.kill('SIGKILL');
      watcher.close();
    });
    child.on('close', () => watcher.close());
  };

  const restoreArgs = (s: Service) => ['restore', '--source', `dir:${s.store}`, '--snapshot', 'good', '--replace'];

  it('the action killed once its new container exists: the post step puts the old one back, and the next run leaves it so', async () => {
    const s = await service(1, 2, 60);
    const sent: { at?: number; pid?: number } = {};
    const created = async () => {
      const now = await docker
        .getContainer(s.names[0])
        .inspect()
        .catch(() => undefined);
      return !!now && now.Id !== s.ids[0];
    };
    const main = await runStep('restore', { source: `dir:${s.store}`, snapshot: 'good', replace: 'true' }, { onSpawn: signalWhen(created, 'SIGKILL', sent) });
    expect(sent.at, main.stderr).toBeDefined();
    expect(main.code).toBe(128);
    const post = await runStep('restore', { source: `dir:${s.store}`, snapshot: 'good', replace: 'true' }, { phase: 'post', state: main.state });
    expect(post.code, post.stdout + post.stderr).toBe(0);
    await expectOldBack(s);
    expect(journalOf(sent.pid)).toEqual([]);
    // The next run finds nothing left to put back.
    const next = await recoverAbandonedRestores(new Engine(), quietLog, process.env);
    expect(next.problems, next.problems.join('; ')).toEqual([]);
    await expectOldBack(s);
  });

  it('containers sharing a volume, killed while it is filled: the next run gives both the old content back', async () => {
    // Large enough that the kill lands while the volume is filled, not after the first container committed.
    const s = await service(2, 200);
    const sent: { at?: number; pid?: number } = {};
    const filling = async () => (await gone(s.ids[0])) && (await gone(s.ids[1])) && (await asideVolumes(s.vol)).length > 0;
    const r = await runCli(restoreArgs(s), { onSpawn: signalWhen(filling, 'SIGKILL', sent) });
    expect(sent.at, r.stderr).toBeDefined();
    const next = await recoverAbandonedRestores(new Engine(), quietLog, process.env);
    expect(next.problems, next.problems.join('; ')).toEqual([]);
    await expectOldBack(s);
    expect((await treeDigest(s.names[1], '/v')).digest).toBe(s.live[0]);
    expect(journalOf(sent.pid)).toEqual([]);
  });

  it('killed once its commit is written: the next run finishes the commit (removes what was kept aside) and keeps what was restored', async () => {
    // The old containers share the volume being replaced, so each is committed to an image and removed;
    // the commit removes those images and the volume's copy aside. Killed the moment the journal records
    // the commit (a `leftovers` entry), before or while they are removed.
    const s = await service(2, 2, 0, 1);
    const asideImages = async (id: string) => (await docker.listImages({ filters: { reference: [`container-snapshot-aside/${id.slice(0, 12)}`] } })).length;
    const sent: { at?: number; pid?: number } = {};
    const r = await runCli(restoreArgs(s), { onSpawn: killAtCommit(sent) });
    expect(sent.at, r.stderr).toBeDefined();
    expect(r.code).toBe(128);
    // What the killed run left: its first container committed, with what the commit had yet to remove.
    const left = JSON.parse(readFileSync(join(journalDir, `${processHost()}-${sent.pid}.json`), 'utf8')) as { pending: RestorePending };
    expect(left.pending.targets.map((t) => t.target)).not.toContain(s.names[0]);
    expect(left.pending.leftovers?.images.length).toBeGreaterThan(0);
    const next = await recoverAbandonedRestores(new Engine(), quietLog, process.env);
    expect(next.problems, next.problems.join('; ')).toEqual([]);
    // The first container is the restored one, with the set's content; nothing of the old one is left.
    const now = await docker.getContainer(s.names[0]).inspect();
    expect(now.Id).not.toBe(s.ids[0]);
    expect(now.State.Running).toBe(true);
    for (const [i, p] of s.paths.entries()) expect((await treeDigest(s.names[0], p)).digest, p).toBe(s.inSet[i]);
    // The second was put back as it was (its restore had not begun), on the volume's restored content.
    expect((await docker.getContainer(s.names[1]).inspect()).State.Running).toBe(true);
    expect((await treeDigest(s.names[1], '/v')).digest).toBe(s.inSet[0]);
    expect(await asideVolumes(s.vol)).toEqual([]);
    expect(await asideImages(s.ids[0])).toBe(0);
    expect(await asideImages(s.ids[1])).toBe(0);
    expect(journalOf(sent.pid)).toEqual([]);
  });

  it('a recovery killed once it put the volume back: the next run finishes it, and a plain re-run restores', async () => {
    const s = await service(1, 60);
    const first: { at?: number; pid?: number } = {};
    const filling = async () => (await gone(s.ids[0])) && (await asideVolumes(s.vol)).length > 0;
    await runCli(restoreArgs(s), { onSpawn: signalWhen(filling, 'SIGKILL', first) });
    expect(first.at).toBeDefined();
    // The next run puts the volume back first; it is killed once the copy aside is gone.
    const second: { at?: number; pid?: number } = {};
    const putBack = async () => (await asideVolumes(s.vol)).length === 0;
    await runCli(restoreArgs(s), { onSpawn: signalWhen(putBack, 'SIGKILL', second) });
    expect(second.at).toBeDefined();
    const next = await recoverAbandonedRestores(new Engine(), quietLog, process.env);
    expect(next.problems, next.problems.join('; ')).toEqual([]);
    await expectOldBack(s);
    expect([...journalOf(first.pid), ...journalOf(second.pid)]).toEqual([]);
    const again = await runCli(restoreArgs(s));
    expect(again.code, again.stderr).toBe(0);
    expect((await treeDigest(s.names[0], '/v')).digest).toBe(s.inSet[0]);
  });

  it('killed once the old content is copied aside, before the volume is emptied: the next run puts the old container back as it was', async () => {
    const s = await service(1, 2, 1, 150);
    const sent: { at?: number; pid?: number } = {};
    const helpers = async (prefix: string) =>
      (await docker.listContainers({ all: true, filters: { label: [RUN_LABEL] } })).filter((c) => c.Mounts.some((m) => m.Name?.startsWith(prefix)));
    // The copy aside is made once its helpers came and went; the old container is committed and removed next.
    let copying = false;
    const committing = async () => {
      copying ||= (await helpers(`${s.vol}-aside-`)).length > 0;
      return copying && (await helpers(s.vol)).length === 0 && !(await gone(s.ids[0]));
    };
    const r = await runCli(restoreArgs(s), { onSpawn: signalWhen(committing, 'SIGKILL', sent) });
    expect(sent.at, r.stderr).toBeDefined();
    const next = await recoverAbandonedRestores(new Engine(), quietLog, process.env);
    expect(next.problems, next.problems.join('; ')).toEqual([]);
    await expectOldBack(s);
    expect((await docker.getContainer(s.names[0]).inspect()).Id).toBe(s.ids[0]);
    expect(journalOf(sent.pid)).toEqual([]);
  });

  it('an owner and a container that takes its volumes (--volumes-from), killed while they are filled: the next run puts both back', async () => {
    const vol = res.volume('vf');
    const owner = res.name('vf-owner');
    const taker = res.name('vf-taker');
    const store = join(res.tempDir(), 'store');
    const script =
      'test -f /data/big || dd if=/dev/urandom of=/data/big bs=1M count=60 2>/dev/null; test -f /data/ready || touch /data/ready; exec sleep 100000';
    await runContainer(
      { name: owner, Image: image, StopTimeout: 1, Volumes: { '/anon': {} }, Cmd: ['sh', '-c', script], HostConfig: { Binds: [`${vol}:/data`] } },
      'running',
    );
    await waitFor(
      async () =>
        treeDigest(owner, '/data/ready').then(
          () => true,
          () => false,
        ),
      60_000,
    );
    await runContainer({ name: taker, Image: image, StopTimeout: 1, Cmd: ['sleep', '100000'], HostConfig: { VolumesFrom: [owner] } }, 'running');
    const backup = await runCli(['backup', '--containers', `${owner},${taker}`, '--destination', `dir:${store}`, '--tag', 'good']);
    expect(backup.code, backup.stderr).toBe(0);
    [owner, taker].forEach((n) => res.image(`container-snapshot/${n}:good`));
    await exec(owner, 'echo later > /data/later; echo later > /anon/later');
    const live = await Promise.all(['/data', '/anon'].map(async (p) => (await treeDigest(owner, p)).digest));
    const ids = await Promise.all([owner, taker].map(async (n) => (await docker.getContainer(n).inspect()).Id));
    const sent: { at?: number; pid?: number } = {};
    const filling = async () => (await gone(ids[0])) && (await gone(ids[1])) && (await asideVolumes(vol)).length > 0;
    await runCli(['restore', '--source', `dir:${store}`, '--snapshot', 'good', '--replace'], { onSpawn: signalWhen(filling, 'SIGKILL', sent) });
    expect(sent.at).toBeDefined();
    const next = await recoverAbandonedRestores(new Engine(), quietLog, process.env);
    expect(next.problems, next.problems.join('; ')).toEqual([]);
    for (const n of [owner, taker]) {
      expect((await docker.getContainer(n).inspect()).State.Running, n).toBe(true);
      expect(await Promise.all(['/data', '/anon'].map(async (p) => (await treeDigest(n, p)).digest)), n).toEqual(live);
    }
    expect(await asideVolumes(vol)).toEqual([]);
    expect(journalOf(sent.pid)).toEqual([]);
  });

  /**
   * A container bind-mounting a new host directory (a `mb` MB random file and a small one), backed
   * up with its bind mounts as `good`, then the directory changed: digests of both states.
   */
  async function bindService(mb: number) {
    const host = join(res.tempDir(), 'data');
    mkdirSync(host);
    execFileSync('dd', ['if=/dev/urandom', `of=${join(host, 'big')}`, 'bs=1M', `count=${mb}`], { stdio: 'ignore' });
    writeFileSync(join(host, 'small'), 'as backed up\n');
    const name = res.name(`bind${seq++}`);
    await runContainer({ name, Image: image, StopTimeout: 1, Cmd: ['sleep', '100000'], HostConfig: { Binds: [`${host}:/data`] } }, 'running');
    const store = join(res.tempDir(), 'store');
    const backup = await runCli(['backup', '--containers', name, '--destination', `dir:${store}`, '--tag', 'good', '--include-bind-mounts']);
    expect(backup.code, backup.stderr).toBe(0);
    res.image(`container-snapshot/${name}:good`);
    const inSet = (await treeDigest(name, '/data')).digest;
    writeFileSync(join(host, 'small'), 'changed since\n');
    writeFileSync(join(host, 'later'), 'added since\n');
    const live = (await treeDigest(name, '/data')).digest;
    const id = (await docker.getContainer(name).inspect()).Id;
    const asides = () => readdirSync(dirname(host)).filter((n) => n.startsWith('data.csx-aside-'));
    return { host, name, id, store, inSet, live, asides };
  }

  it('a bind-mounted host path, killed while it is filled: the next run puts its old content back', async () => {
    const b = await bindService(150);
    const sent: { at?: number; pid?: number } = {};
    const filling = async () => b.asides().length > 0;
    const r = await runCli(['restore', '--source', `dir:${b.store}`, '--snapshot', 'good', '--replace'], { onSpawn: signalWhen(filling, 'SIGKILL', sent) });
    expect(sent.at, r.stderr).toBeDefined();
    const next = await recoverAbandonedRestores(new Engine(), quietLog, process.env);
    expect(next.problems, next.problems.join('; ')).toEqual([]);
    const now = await docker.getContainer(b.name).inspect();
    expect([now.Id, now.State.Running]).toEqual([b.id, true]);
    expect((await treeDigest(b.name, '/data')).digest).toBe(b.live);
    expect(b.asides()).toEqual([]);
    expect(journalOf(sent.pid)).toEqual([]);
  });

  it('a bind-mounted host path, killed once the commit is written: the next run removes its old content and keeps the restored one', async () => {
    const b = await bindService(2);
    const sent: { at?: number; pid?: number } = {};
    const r = await runCli(['restore', '--source', `dir:${b.store}`, '--snapshot', 'good', '--replace'], { onSpawn: killAtCommit(sent) });
    expect(sent.at, r.stderr).toBeDefined();
    const left = JSON.parse(readFileSync(join(journalDir, `${processHost()}-${sent.pid}.json`), 'utf8')) as { pending: RestorePending };
    expect(left.pending.leftovers?.paths?.length).toBe(1);
    const next = await recoverAbandonedRestores(new Engine(), quietLog, process.env);
    expect(next.problems, next.problems.join('; ')).toEqual([]);
    const now = await docker.getContainer(b.name).inspect();
    expect(now.Id).not.toBe(b.id);
    expect((await treeDigest(b.name, '/data')).digest).toBe(b.inSet);
    expect(b.asides()).toEqual([]);
    expect(journalOf(sent.pid)).toEqual([]);
  });
});
