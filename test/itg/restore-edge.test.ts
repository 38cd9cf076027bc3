import { afterAll, describe, expect, inject, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:net';
import { freePort } from '../support/registry.js';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { backup, verify } from '../../src/commands.js';
import { parseBackupInputs } from '../../src/core/inputs.js';
import { parseDestination } from '../../src/core/destination-input.js';
import { Resources, docker, freeSubnet, quietLog, runContainer, treeDigest, waitFor } from '../support/fixtures.js';
import { backUp, inputs, restoreFrom, testEnv } from '../support/commands.js';
import { DirDestination } from '../../src/destinations/dir/index.js';

const env = testEnv;

async function listing(container: string, path: string): Promise<string[]> {
  const { default: tar } = await import('tar-stream');
  const stream = (await docker.getContainer(container).getArchive({ path })) as unknown as NodeJS.ReadableStream;
  const extract = tar.extract();
  stream.pipe(extract);
  const names: string[] = [];
  for await (const e of extract) {
    names.push(e.header.name.replace(/\/$/, ''));
    e.resume();
  }
  return names.sort();
}

describe('restore edge cases', () => {
  const res = new Resources(inject('runPrefix'), 'edge');
  const image = inject('fixtureImage');
  afterAll(() => res.cleanup());
  const store = () => `dir:${join(res.tempDir(), 'store')}`;
  const track = async (name: string) => res.image((await docker.getContainer(name).inspect()).Config.Image);

  it('a registry set survives registry garbage collection', async () => {
    const reg = inject('registry');
    const name = res.name('gc');
    await runContainer(
      { name, Image: image, Cmd: ['sh', '-c', 'echo x > /x; exec sleep 100000'], HostConfig: { Binds: [`${res.volume('gc')}:/v`] } },
      'running',
    );
    await waitFor(
      async () =>
        await treeDigest(name, '/x').then(
          () => true,
          () => false,
        ),
    );
    const location = `registry:${reg.host}/${res.prefix}-gc`;
    const creds = { username: reg.username, password: reg.password };
    await backUp({ containers: name, destination: location, tag: 'gc', 'registry-username': reg.username, 'registry-password': reg.password });
    const out = execFileSync('docker-registry', ['garbage-collect', reg.config], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    expect(out).toMatch(/blobs marked/);
    const v = await verify(parseDestination(location), 'gc', creds, { log: quietLog, env });
    expect(v.blobs).toBeGreaterThanOrEqual(3);
  });

  it('a fixed address a running container holds is refused before any change; a failed replace puts the previous container back', async () => {
    const net = res.network('ipnet');
    const subnet = freeSubnet();
    await docker.createNetwork({ Name: net, IPAM: { Config: [{ Subnet: `${subnet}.0/24` }] } });
    const name = res.name('ip');
    const port = await freePort();
    await runContainer(
      {
        name,
        Image: image,
        Cmd: ['sleep', '100000'],
        ExposedPorts: { '80/tcp': {} },
        HostConfig: { PortBindings: { '80/tcp': [{ HostIp: '127.0.0.1', HostPort: String(port) }] } },
        NetworkingConfig: { EndpointsConfig: { [net]: { IPAMConfig: { IPv4Address: `${subnet}.10` } } } },
      },
      'running',
    );
    const location = store();
    await backUp({ containers: name, destination: location, tag: 'ip' });
    await docker.getContainer(name).stop({ t: 0 });
    const before = await docker.getContainer(name).inspect();
    // Another container takes the address: refused before any change, naming it.
    const squatter = res.name('squatter');
    await runContainer(
      {
        name: squatter,
        Image: image,
        Cmd: ['sleep', '100000'],
        NetworkingConfig: { EndpointsConfig: { [net]: { IPAMConfig: { IPv4Address: `${subnet}.10` } } } },
      },
      'running',
    );
    await expect(restoreFrom({ source: location, snapshot: 'ip', replace: 'true' })).rejects.toThrow(
      `nothing was changed: ${name} asks for address ${subnet}.10 on network ${net}, which container '${squatter}' holds there (stop '${squatter}' first, or create ${name} without starting it: start never).`,
    );
    expect((await docker.getContainer(name).inspect()).Id).toBe(before.Id);
    await docker.getContainer(squatter).remove({ force: true });
    // A process outside the engine holds the host port (the engine cannot tell): the start fails once things changed, and is put back.
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    try {
      const r = await restoreFrom({ source: location, snapshot: 'ip', replace: 'true' });
      expect(r.failed).toBe(1);
      expect(r.containers[0].error).toMatch(/[Aa]ddress already in use|already allocated/);
    } finally {
      server.close();
    }
    const after = await docker.getContainer(name).inspect();
    expect(after.Id).toBe(before.Id);
    expect(after.Name).toBe(`/${name}`);
    expect((await docker.listContainers({ all: true })).filter((c) => c.Names.some((n) => n.includes(`${name}-replaced-`)))).toEqual([]);
  });

  it('replace restores two containers that share a named volume', async () => {
    const shared = res.volume('shared');
    const [a, b] = [res.name('share-a'), res.name('share-b')];
    await runContainer(
      { name: a, Image: image, StopTimeout: 1, Cmd: ['sh', '-c', 'test -f /s/a || echo a > /s/a; exec sleep 100000'], HostConfig: { Binds: [`${shared}:/s`] } },
      'running',
    );
    await runContainer({ name: b, Image: image, StopTimeout: 1, Cmd: ['sh', '-c', 'exec sleep 100000'], HostConfig: { Binds: [`${shared}:/s`] } }, 'running');
    await waitFor(async () => (await listing(a, '/s')).includes('s/a'));
    const location = store();
    await backUp({ containers: `${a},${b}`, destination: location, tag: 'shared' });
    const r = await restoreFrom({ source: location, snapshot: 'shared', replace: 'true' });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    expect(r.containers.map((c) => c.state)).toEqual(['running', 'running']);
    expect(await listing(b, '/s')).toEqual(['s', 's/a']);
    await track(a);
    await track(b);
  });

  it('replace never touches a container whose ID merely starts with the target name', async () => {
    const bystander = res.name('bystander');
    await runContainer({ name: bystander, Image: image, Cmd: ['sleep', '100000'] }, 'running');
    const prefix = (await docker.getContainer(bystander).inspect()).Id.slice(0, 8);
    const src = res.name('src');
    await runContainer({ name: src, Image: image, Cmd: ['sleep', '100000'] }, 'created');
    const location = store();
    await backUp({ containers: src, destination: location, tag: 'hex' });
    res.name(prefix.replace(/^/, '')); // the hex-named restored container is ours to remove
    const r = await restoreFrom({ source: location, snapshot: 'hex', rename: `${src}=${prefix}`, replace: 'true' });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    await track(r.containers[0].id);
    await docker.getContainer(r.containers[0].id).remove({ force: true });
    expect((await docker.getContainer(bystander).inspect()).State.Running).toBe(true);
  });

  it('does not overwrite a bind-mounted host path without replace, even under a new name', async () => {
    const host = res.tempDir();
    writeFileSync(join(host, 'config'), 'old\n');
    const name = res.name('bind');
    await runContainer({ name, Image: image, Cmd: ['sleep', '100000'], HostConfig: { Binds: [`${host}:/conf`] } }, 'running');
    const location = store();
    await backUp({ containers: name, destination: location, tag: 'bind', 'include-bind-mounts': 'true' });
    writeFileSync(join(host, 'config'), 'new and precious\n');
    const r = await restoreFrom({ source: location, snapshot: 'bind', rename: `${name}=${res.name('bind-copy')}` });
    expect(r.failed).toBe(1);
    expect(r.containers[0].error).toContain(`host path '${host}' is not empty`);
    expect(readFileSync(join(host, 'config'), 'utf8')).toBe('new and precious\n');
  });

  it('files deleted from a volume do not come back from the image', async () => {
    // An image with a file at the volume's path: the engine copies it into a new, empty volume.
    const seeder = res.name('seeder');
    await runContainer({ name: seeder, Image: image, Cmd: ['sh', '-c', 'mkdir -p /seeded && echo seed > /seeded/seed'] }, 'exited');
    const seeded = res.image(`${res.prefix}-seeded:v1`);
    await docker.getContainer(seeder).commit({ repo: `${res.prefix}-seeded`, tag: 'v1' });
    const name = res.name('seeded');
    await runContainer(
      {
        name,
        Image: seeded,
        Cmd: ['sh', '-c', 'test -f /seeded/mine || { rm /seeded/seed; echo mine > /seeded/mine; }; exec sleep 100000'],
        HostConfig: { Binds: [`${res.volume('seeded')}:/seeded`] },
      },
      'running',
    );
    await waitFor(async () => (await listing(name, '/seeded')).includes('seeded/mine'));
    expect(await listing(name, '/seeded')).toEqual(['seeded', 'seeded/mine']);
    const location = store();
    await backUp({ containers: name, destination: location, tag: 'seed' });
    await docker.getContainer(name).remove({ force: true });
    await docker.getVolume(res.volume('seeded')).remove();
    const r = await restoreFrom({ source: location, snapshot: 'seed' });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    await track(name);
    expect(await listing(name, '/seeded')).toEqual(['seeded', 'seeded/mine']);
  });

  it('a container on the bridge and a user network gets both back, with its alias', async () => {
    const net = res.network('both');
    await docker.createNetwork({ Name: net });
    const name = res.name('both');
    await runContainer({ name, Image: image, Cmd: ['sleep', '100000'] }, 'running');
    await docker.getNetwork(net).connect({ Container: name, EndpointConfig: { Aliases: ['both-alias'] } });
    const location = store();
    await backUp({ containers: name, destination: location, tag: 'both' });
    await docker.getContainer(name).remove({ force: true });
    const r = await restoreFrom({ source: location, snapshot: 'both' });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    await track(name);
    const networks = (await docker.getContainer(name).inspect()).NetworkSettings.Networks;
    expect(Object.keys(networks).sort()).toEqual(['bridge', net].sort());
    expect(networks[net].Aliases).toContain('both-alias');
  });

  it("a container on another container's network is restored after it, pointing at the restored one", async () => {
    const peer = res.name('peer');
    const side = res.name('sidecar');
    await runContainer({ name: peer, Image: image, Cmd: ['sleep', '100000'] }, 'running');
    const peerId = (await docker.getContainer(peer).inspect()).Id;
    await runContainer({ name: side, Image: image, Cmd: ['sleep', '100000'], HostConfig: { NetworkMode: `container:${peerId}` } }, 'running');
    const location = store();
    await backUp({ containers: `${peer},${side}`, destination: location, tag: 'shared-net' });
    await docker.getContainer(side).remove({ force: true });
    await docker.getContainer(peer).remove({ force: true });
    const r = await restoreFrom({ source: location, snapshot: 'shared-net' });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    expect(r.containers.map((c) => c.name)).toEqual([peer, side]);
    const newPeer = (await docker.getContainer(peer).inspect()).Id;
    const sidecar = await docker.getContainer(side).inspect();
    expect(sidecar.State.Running).toBe(true);
    expect([`container:${newPeer}`, `container:${peer}`]).toContain(sidecar.HostConfig.NetworkMode);
    await track(peer);
    await track(side);
  });

  it('selects a container by its own name when another links to it under an alias', async () => {
    const target = res.name('linked');
    const linker = res.name('linker');
    await runContainer({ name: target, Image: image, Cmd: ['sleep', '100000'] }, 'running');
    await runContainer({ name: linker, Image: image, Cmd: ['sleep', '100000'], HostConfig: { Links: [`${target}:zalias`] } }, 'running');
    const r = await backup(parseBackupInputs(inputs({ containers: target, destination: store(), 'dry-run': 'true' })), { log: quietLog, env });
    expect(r.containers.map((c) => [c.name, c.status])).toEqual([[target, 'planned']]);
  });

  it('backs up a container with a legacy link (the engine names its target /NAME) and the container it links to', async () => {
    const target = res.name('linked-2');
    const linker = res.name('linker-2');
    await runContainer({ name: target, Image: image, Cmd: ['sleep', '100000'] }, 'running');
    await runContainer({ name: linker, Image: image, Cmd: ['sleep', '100000'], HostConfig: { Links: [`${target}:zalias`] } }, 'running');
    expect((await docker.getContainer(linker).inspect()).HostConfig.Links).toEqual([`/${target}:/${linker}/zalias`]);
    const to = store();
    const r = await backup(parseBackupInputs(inputs({ containers: `${linker},${target}`, destination: to, tag: 'linked' })), { log: quietLog, env });
    for (const c of r.containers) res.image(`container-snapshot/${c.name}:linked`);
    expect(r.containers.map((c) => [c.name, c.status]).sort()).toEqual(
      [
        [linker, 'ok'],
        [target, 'ok'],
      ].sort(),
    );
    const set = await new DirDestination(to, to.slice('dir:'.length)).readSet('linked');
    expect(set?.containers.find((c) => c.name === linker)?.spec.hostConfig.Links).toEqual([`${target}:zalias`]);
  });
});
