import { afterAll, describe, expect, inject, it } from 'vitest';
import { join } from 'node:path';
import tar from 'tar-stream';
import { restore } from '../../src/commands.js';
import { parseRestoreInputs } from '../../src/core/inputs.js';
import { Resources, docker, freeSubnet, quietLog, runContainer, treeDigest, waitFor } from '../support/fixtures.js';
import { backUp, inputs, testEnv } from '../support/commands.js';
import { apiAtLeast, engineAtLeast, engineLabel } from '../support/engine.js';

/**
 * Behaviour that differs between engine versions, tested on the engine the run has
 * (Engine 20.10 and a current one in CI): each test's name says which engine and which branch.
 */
const engine = inject('engine');
const label = engineLabel(engine);
const env = testEnv;

async function restoreFrom(values: Record<string, string>) {
  const r = await restore(parseRestoreInputs(inputs(values)), { log: quietLog, env });
  expect(r.failed, JSON.stringify(r.containers.filter((c) => c.error))).toBe(0);
  return r;
}

describe(`${label}: behaviour that depends on the engine version`, () => {
  const res = new Resources(inject('runPrefix'), 'ver');
  const image = inject('fixtureImage');
  const reg = inject('registry');
  afterAll(() => res.cleanup());

  async function runWithFile(suffix: string): Promise<string> {
    const name = res.name(suffix);
    await runContainer({ name, Image: image, Cmd: ['sh', '-c', `test -f /made || echo ${suffix} > /made; exec sleep 100000`] }, 'running');
    await waitFor(async () =>
      treeDigest(name, '/made').then(
        () => true,
        () => false,
      ),
    );
    return name;
  }

  const zstd = engineAtLeast(engine, 23);
  it(`${label}: compression auto to a registry stores ${zstd ? 'zstd' : 'gzip'} layers (engines pull zstd from 23.0) and the engine pulls the snapshot image`, async () => {
    const name = await runWithFile('auto');
    const r = await backUp({
      containers: name,
      destination: `registry:${reg.host}/${res.prefix}`,
      tag: 'auto-1',
      compression: 'auto',
      'registry-username': reg.username,
      'registry-password': reg.password,
    });
    const ref = r.containers[0].destinations[0].ref;
    const [repo, tag] = ref.slice(reg.host.length + 1).split(':');
    const auth = `Basic ${Buffer.from(`${reg.username}:${reg.password}`).toString('base64')}`;
    const manifest = (await (
      await fetch(`http://${reg.host}/v2/${repo}/manifests/${tag}`, { headers: { authorization: auth, accept: 'application/vnd.oci.image.manifest.v1+json' } })
    ).json()) as { layers: Array<{ mediaType: string }> };
    expect(manifest.layers.length).toBeGreaterThan(0);
    expect(new Set(manifest.layers.map((l) => l.mediaType))).toEqual(new Set([`application/vnd.oci.image.layer.v1.tar+${zstd ? 'zstd' : 'gzip'}`]));

    const stream = await docker.pull(ref, { authconfig: { username: reg.username, password: reg.password, serveraddress: reg.host } });
    const events = await new Promise<Array<{ error?: string }>>((resolve, reject) =>
      docker.modem.followProgress(stream, (err, out) => (err ? reject(err) : resolve(out))),
    );
    res.image(ref);
    expect(events.filter((e) => e.error)).toEqual([]);
    const copy = res.name('auto-pulled');
    await runContainer({ name: copy, Image: ref, Cmd: ['sleep', '100000'] }, 'running');
    expect(await treeDigest(copy, '/made')).toEqual(await treeDigest(name, '/made'));
  });

  const oci = engineAtLeast(engine, 25);
  // A local backup reads images from the engine's store (host-image-store.ts); docker save is its
  // fallback, and the path of remote engines: host-image-store.test.ts stores an image through it on each engine.
  it(`${label}: docker save writes ${oci ? 'an OCI layout (from Engine 25)' : 'a Docker archive (before Engine 25)'}, and a backup restores the container's files`, async () => {
    const name = await runWithFile('save');
    const committed = res.image(`${res.prefix}-save:probe`);
    const [repo, tag] = committed.split(':');
    await docker.getContainer(name).commit({ repo, tag });
    const entries: string[] = [];
    const extract = tar.extract();
    ((await docker.getImage(committed).get()) as unknown as NodeJS.ReadableStream).pipe(extract);
    for await (const e of extract) {
      entries.push(e.header.name);
      e.resume();
    }
    expect(entries).toContain('manifest.json');
    expect(entries.includes('oci-layout') && entries.includes('index.json')).toBe(oci);
    expect(entries.some((n) => n.endsWith('/layer.tar'))).toBe(!oci);

    const location = `dir:${join(res.tempDir(), 'store')}`;
    await backUp({ containers: name, destination: location, tag: 'save-1' });
    const copy = res.name('save-copy');
    const r = await restoreFrom({ source: location, snapshot: 'save-1', rename: `${name}=${copy}`, start: 'always' });
    res.image((await docker.getContainer(r.containers[0].id).inspect()).Config.Image);
    expect(await treeDigest(copy, '/made')).toEqual(await treeDigest(name, '/made'));
  });

  const endpointMac = apiAtLeast(engine, '1.44');
  it(`${label}: configured MACs come back ${endpointMac ? 'on each network, from the endpoint settings (API 1.44 and later)' : 'from Config.MacAddress, on the first network (before API 1.44)'}`, async () => {
    const nets = [res.network('mac-a'), res.network('mac-b')];
    const subnets: string[] = [];
    for (const net of nets) {
      const subnet = freeSubnet();
      subnets.push(subnet);
      await docker.createNetwork({ Name: net, IPAM: { Config: [{ Subnet: `${subnet}.0/24` }] } });
    }
    const macs = ['02:aa:bb:cc:ee:01', '02:aa:bb:cc:ee:02'];
    const name = res.name('mac');
    if (endpointMac) {
      await runContainer(
        {
          name,
          Image: image,
          Cmd: ['sleep', '100000'],
          HostConfig: { NetworkMode: nets[0] },
          NetworkingConfig: { EndpointsConfig: { [nets[0]]: { MacAddress: macs[0] }, [nets[1]]: { MacAddress: macs[1] } } },
        } as never,
        'running',
      );
    } else {
      await runContainer({ name, Image: image, Cmd: ['sleep', '100000'], MacAddress: macs[0], HostConfig: { NetworkMode: nets[0] } }, 'running');
    }
    const shown = async () =>
      Object.fromEntries(Object.entries((await docker.getContainer(name).inspect()).NetworkSettings.Networks).map(([n, e]) => [n, e.MacAddress]));
    const expected = endpointMac ? { [nets[0]]: macs[0], [nets[1]]: macs[1] } : { [nets[0]]: macs[0] };
    expect(await shown()).toEqual(expected);

    const location = `dir:${join(res.tempDir(), 'store')}`;
    await backUp({ containers: name, destination: location, tag: 'mac-1' });
    await docker.getContainer(name).remove({ force: true });
    const r = await restoreFrom({ source: location, snapshot: 'mac-1' });
    res.image((await docker.getContainer(r.containers[0].id).inspect()).Config.Image);
    expect(await shown()).toEqual(expected);
  });

  const subpaths = apiAtLeast(engine, '1.45');
  it(`${label}: ${subpaths ? 'a volume mounted at a subpath comes back at that subpath, two subpaths of one volume each at its own, and replace of such a volume that holds data is refused (API 1.45 and later)' : 'the engine drops a subpath of a volume mount (before API 1.45): the container, and so the set and the restore, mount the whole volume'}`, async () => {
    const vol = res.volume('subvol');
    const mount = (target: string, subpath: string) => ({ Type: 'volume', Source: vol, Target: target, VolumeOptions: { Subpath: subpath } });
    const seed = res.name('sub-seed');
    await runContainer(
      {
        name: seed,
        Image: image,
        Cmd: [
          'sh',
          '-c',
          'mkdir -p /v/one/deep /v/two && echo 1 > /v/one/deep/f && echo 2 > /v/two/g && echo outside > /v/top && chown 1000 /v/one && chmod 700 /v/one',
        ],
        HostConfig: { Binds: [`${vol}:/v`] },
      },
      'exited',
    );
    await docker.getContainer(seed).remove();
    const name = res.name('sub');
    await runContainer(
      { name, Image: image, StopTimeout: 1, Cmd: ['sleep', '100000'], HostConfig: { Mounts: [mount('/a', 'one/deep'), mount('/b', 'two')] } } as never,
      'running',
    );
    const kept = ((await docker.getContainer(name).inspect()).HostConfig.Mounts ?? []).map(
      (m) => (m.VolumeOptions as { Subpath?: string } | undefined)?.Subpath,
    );
    expect(kept).toEqual(subpaths ? ['one/deep', 'two'] : [undefined, undefined]);
    const location = `dir:${join(res.tempDir(), 'store')}`;
    await backUp({ containers: name, destination: location, tag: 'sub' });
    res.image(`container-snapshot/${name}:sub`);
    const [a, b] = [await treeDigest(name, '/a'), await treeDigest(name, '/b')];
    // Under new names, into a new volume: each subpath is made and filled, and the container starts.
    const copy = res.name('sub-copy');
    const copyVol = res.volume('subvol-copy');
    const r = await restoreFrom({ source: location, snapshot: 'sub', rename: `${name}=${copy},${vol}=${copyVol}`, start: 'always' });
    res.image((await docker.getContainer(r.containers[0].id).inspect()).Config.Image);
    expect((await docker.getContainer(copy).inspect()).State.Running).toBe(true);
    expect([await treeDigest(copy, '/a'), await treeDigest(copy, '/b')]).toEqual([a, b]);
    if (!subpaths) return;
    // In place with replace: the volume holds what the set does not (/v/top), so it is refused, and kept.
    const refused = await restore(parseRestoreInputs(inputs({ source: location, snapshot: 'sub', replace: 'true' })), { log: quietLog, env });
    expect(refused.containers[0].error).toContain(`volume '${vol}' is not empty, and the set holds only its subpath`);
    expect((await docker.getContainer(name).inspect()).State.Running).toBe(true);

    // With a container that mounts the whole volume in the same set: the whole volume comes back (its
    // /top too), whichever is restored first, and the subpath's directories keep their owner and mode.
    await docker.getContainer(name).stop({ t: 0 });
    const holder = await runContainer(
      {
        name: res.name('sub-whole'),
        Image: image,
        StopTimeout: 1,
        Cmd: ['sleep', '100000'],
        HostConfig: { Binds: [`${vol}:/v`] },
      },
      'running',
    ).then(() => res.name('sub-whole'));
    await docker.getContainer(name).start();
    await backUp({ containers: `${name},${holder}`, destination: location, tag: 'sub-whole' });
    res.image(`container-snapshot/${name}:sub-whole`);
    res.image(`container-snapshot/${holder}:sub-whole`);
    const whole = await treeDigest(holder, '/v');
    const [copy2, holder2, vol2] = [res.name('sub-copy2'), res.name('sub-whole-copy'), res.volume('subvol-copy2')];
    const both = await restoreFrom({
      source: location,
      snapshot: 'sub-whole',
      rename: `${name}=${copy2},${holder}=${holder2},${vol}=${vol2}`,
      start: 'always',
    });
    for (const c of both.containers) res.image((await docker.getContainer(c.id).inspect()).Config.Image);
    expect(await treeDigest(holder2, '/v')).toEqual(whole);
    expect([await treeDigest(copy2, '/a'), await treeDigest(copy2, '/b')]).toEqual([a, b]);
  });
});
