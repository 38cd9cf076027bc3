import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DirDestination } from '../../src/destinations/dir/index.js';
import { Engine } from '../../src/engine/engine.js';
import { recoverAbandonedRestores } from '../../src/snapshot/restore-journal.js';
import { restoreFrom } from '../support/commands.js';
import { Resources, docker, quietLog, runContainer, signalWhen, treeDigest, waitFor } from '../support/fixtures.js';
import { runCli } from '../support/runner.js';
import { storedBlobs } from '../../src/snapshot/manifest.js';

/**
 * Networks and volumes a restore creates are part of its transaction: a restore that fails, or
 * is killed and recovered by the next run, removes them again, unless they existed before or
 * another container joined them since.
 */
describe('networks and volumes a restore created', () => {
  const res = new Resources(inject('runPrefix'), 'rnet');
  const image = inject('fixtureImage');
  const name = res.name('web');
  const other = res.name('other');
  const net = res.network('net');
  const vol = res.volume('data');
  const store = join(res.tempDir(), 'store');
  let blobFile = '';
  let blobBytes: Buffer;
  afterAll(() => res.cleanup());

  const exists = {
    network: () =>
      docker
        .getNetwork(net)
        .inspect()
        .then(
          (n: { Id: string }) => n.Id,
          () => undefined,
        ),
    volume: () =>
      docker
        .getVolume(vol)
        .inspect()
        .then(
          () => true,
          () => false,
        ),
    container: () =>
      docker
        .getContainer(name)
        .inspect()
        .then(
          () => true,
          () => false,
        ),
  };
  const removeAll = async () => {
    await docker
      .getContainer(name)
      .remove({ force: true, v: true })
      .catch(() => undefined);
    await docker
      .getVolume(vol)
      .remove()
      .catch(() => undefined);
    await docker
      .getNetwork(net)
      .remove()
      .catch(() => undefined);
  };
  const damage = (on: boolean) => {
    const bytes = Buffer.from(blobBytes);
    if (on) bytes[Math.floor(bytes.length / 2)] ^= 0xff;
    writeFileSync(blobFile, bytes);
  };
  const restoreKilledOnceNetworkExists = async () => {
    const sent: { at?: number; pid?: number } = {};
    const r = await runCli(['restore', '--source', `dir:${store}`, '--snapshot', 'good'], {
      onSpawn: signalWhen(async () => (await exists.network()) !== undefined, 'SIGKILL', sent),
    });
    expect(sent.at, r.stderr).toBeDefined();
    expect(await exists.network()).toBeDefined();
  };

  beforeAll(async () => {
    await docker.createNetwork({ Name: net });
    // The anonymous volume /w is filled after the network is created: large enough to be killed in.
    const script = 'test -f /w/big || dd if=/dev/urandom of=/w/big bs=1M count=60 2>/dev/null; echo v > /data/v; touch /w/ready; exec sleep 100000';
    await runContainer(
      { name, Image: image, StopTimeout: 1, Volumes: { '/w': {} }, Cmd: ['sh', '-c', script], HostConfig: { NetworkMode: net, Binds: [`${vol}:/data`] } },
      'running',
    );
    await waitFor(
      async () =>
        treeDigest(name, '/w/ready').then(
          () => true,
          () => false,
        ),
      60_000,
    );
    const backup = await runCli(['backup', '--containers', name, '--destination', `dir:${store}`, '--tag', 'good']);
    expect(backup.code, backup.stderr).toBe(0);
    res.image(`container-snapshot/${name}:good`);
    const set = (await new DirDestination('dir:store', store).readSet('good'))!;
    const anonymous = set.containers[0].volumes.find((v) => v.destination === '/w')!;
    blobFile = join(store, 'blobs', 'sha256', storedBlobs(anonymous.blob)[0].digest.slice('sha256:'.length));
    blobBytes = readFileSync(blobFile);
  });

  it('a restore failing once it created its network and volume removes both', async () => {
    await removeAll();
    damage(true);
    quietLog.lines.length = 0;
    const r = await restoreFrom({ source: `dir:${store}`, snapshot: 'good' });
    expect(r.failed).toBe(1);
    expect(quietLog.lines).toContain(`${name}: created network ${net}`);
    expect(await exists.network()).toBeUndefined();
    expect(await exists.volume()).toBe(false);
    expect(await exists.container()).toBe(false);
  });

  it('a group put back after two members joined the network one of them created: the network is removed', async () => {
    const group = `${res.prefix}-g`;
    const groupNet = res.network('gnet');
    const [a, b, c] = ['ga', 'gb', 'gc'].map((m) => res.name(m));
    const cVolume = res.volume('gc-data');
    await docker.createNetwork({ Name: groupNet });
    for (const m of [a, b])
      await runContainer(
        { name: m, Image: image, Labels: { 'container-snapshot.group': group }, Cmd: ['sleep', '100000'], HostConfig: { NetworkMode: groupNet } },
        'running',
      );
    await runContainer(
      {
        name: c,
        Image: image,
        Labels: { 'container-snapshot.group': group },
        Cmd: ['sh', '-c', 'echo c > /data/c; exec sleep 100000'],
        HostConfig: { Binds: [`${cVolume}:/data`] },
      },
      'running',
    );
    await waitFor(async () =>
      treeDigest(c, '/data/c').then(
        () => true,
        () => false,
      ),
    );
    const groupStore = join(res.tempDir(), 'store');
    const backup = await runCli(['backup', '--containers', [a, b, c].join(','), '--destination', `dir:${groupStore}`, '--tag', 'group']);
    expect(backup.code, backup.stderr).toBe(0);
    [a, b, c].forEach((m) => res.image(`container-snapshot/${m}:group`));
    for (const m of [a, b, c]) await docker.getContainer(m).remove({ force: true });
    await docker.getVolume(cVolume).remove();
    await docker.getNetwork(groupNet).remove();
    // c, restored last, fails on its damaged volume once a and b are restored on the network a created.
    const set = (await new DirDestination('dir:store', groupStore).readSet('group'))!;
    expect(set.containers.map((m) => m.name)).toEqual([a, b, c]);
    const file = join(groupStore, 'blobs', 'sha256', storedBlobs(set.containers[2].volumes[0].blob)[0].digest.slice('sha256:'.length));
    const bytes = readFileSync(file);
    bytes[Math.floor(bytes.length / 2)] ^= 0xff;
    writeFileSync(file, bytes);
    quietLog.lines.length = 0;
    const r = await restoreFrom({ source: `dir:${groupStore}`, snapshot: 'group' });
    expect(r.failed).toBe(3);
    expect(quietLog.lines).toEqual(expect.arrayContaining([`${a}: created network ${groupNet}`, `${a}: restored (running)`, `${b}: restored (running)`]));
    expect(quietLog.lines.filter((l) => l.includes('kept'))).toEqual([]);
    expect(
      await docker
        .getNetwork(groupNet)
        .inspect()
        .then(
          () => true,
          () => false,
        ),
    ).toBe(false);
    for (const m of [a, b, c])
      expect(
        await docker
          .getContainer(m)
          .inspect()
          .then(
            () => true,
            () => false,
          ),
        m,
      ).toBe(false);
  });

  it('a network that existed before the failed restore is kept', async () => {
    await removeAll();
    damage(true);
    const before = (await docker.createNetwork({ Name: net })).id;
    quietLog.lines.length = 0;
    const r = await restoreFrom({ source: `dir:${store}`, snapshot: 'good' });
    expect(r.failed).toBe(1);
    expect(quietLog.lines).not.toContain(`${name}: created network ${net}`);
    expect(await exists.network()).toBe(before);
    expect(await exists.volume()).toBe(false);
  });

  it("a killed restore's network and volume are removed by the next run's recovery", async () => {
    await removeAll();
    damage(false);
    await restoreKilledOnceNetworkExists();
    const next = await recoverAbandonedRestores(new Engine(), quietLog, process.env);
    expect(next.problems).toEqual([]);
    expect(next.recovered).toBe(1);
    expect(await exists.network()).toBeUndefined();
    expect(await exists.volume()).toBe(false);
    expect(await exists.container()).toBe(false);
  });

  it('a network another container joined since the killed restore is kept, and said so', async () => {
    await removeAll();
    damage(false);
    await restoreKilledOnceNetworkExists();
    await runContainer({ name: other, Image: image, Cmd: ['sleep', '100000'], HostConfig: { NetworkMode: net } }, 'running');
    quietLog.lines.length = 0;
    const next = await recoverAbandonedRestores(new Engine(), quietLog, process.env);
    expect(next.problems).toEqual([]);
    expect(await exists.network()).toBeDefined();
    expect(quietLog.lines).toContain(`warning: network ${net} kept: the restore created it, but ${other} joined it since`);
    expect(await exists.container()).toBe(false);
    expect(await exists.volume()).toBe(false);
  });
});
