import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createConnection, createServer, type AddressInfo, type Server } from 'node:net';
import { networkInterfaces } from 'node:os';
import { backup, list, verify } from '../../src/commands.js';
import { parseBackupInputs, parseSource } from '../../src/core/inputs.js';
import { CLI_WORDS } from '../../src/core/words.js';
import { Resources, quietLog, runContainer } from '../support/fixtures.js';

const env = { ...process.env, DOCKER_CONFIG: '/nonexistent' };
const inputs = (values: Record<string, string>) => (name: string) => values[name] ?? '';

/** A non-loopback IPv4 address of this host; the test fails without one (it is what it tests). */
function hostAddress(): string {
  const found = Object.values(networkInterfaces())
    .flat()
    .find((i) => i?.family === 'IPv4' && !i.internal);
  if (!found) throw new Error('This host has no non-loopback IPv4 address: a plain-HTTP registry on the network cannot be tested');
  return found.address;
}

/** The test registry (on loopback) reached through a TCP forwarder on `address`: the same server under a non-loopback name. */
async function forwarder(address: string, target: string): Promise<{ server: Server; host: string; connections: () => number }> {
  const [hostname, port] = target.split(':');
  let connections = 0;
  const server = createServer((client) => {
    connections++;
    const upstream = createConnection({ host: hostname, port: Number(port) });
    client.pipe(upstream).pipe(client);
    const drop = () => (client.destroy(), upstream.destroy());
    client.on('error', drop);
    upstream.on('error', drop);
  });
  await new Promise<void>((resolve) => server.listen(0, address, resolve));
  return { server, host: `${address}:${(server.address() as AddressInfo).port}`, connections: () => connections };
}

describe('a registry on the network that serves plain HTTP (registry-insecure)', () => {
  const res = new Resources(inject('runPrefix'), 'insecure');
  const reg = inject('registry');
  const creds = { 'registry-username': reg.username, 'registry-password': reg.password };
  let fwd: Awaited<ReturnType<typeof forwarder>>;
  let location: string;

  beforeAll(async () => {
    fwd = await forwarder(hostAddress(), reg.host);
    location = `registry:${fwd.host}/${res.prefix}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => fwd.server.close(resolve));
    fwd.server.unref();
    await res.cleanup();
  });

  it('backs up to it and verifies every blob there when it is named, over HTTP', async () => {
    const name = res.name('app');
    await runContainer(
      { name, Image: inject('fixtureImage'), Cmd: ['sh', '-c', 'seq 1 999 > /v/f; exec sleep 100000'], HostConfig: { Binds: [`${res.volume('v')}:/v`] } },
      'running',
    );
    const insecure = { 'registry-insecure': fwd.host };
    const r = await backup(parseBackupInputs(inputs({ containers: name, destination: location, tag: 'plain', ...creds, ...insecure })), { log: quietLog, env });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    const source = parseSource(inputs({ source: location, ...insecure }));
    expect(source).toMatchObject({ kind: 'registry', host: fwd.host, insecure: true });
    const v = await verify(source, 'plain', { username: reg.username, password: reg.password }, { log: quietLog, env });
    expect(v.blobs).toBeGreaterThanOrEqual(3);
    expect(fwd.connections()).toBeGreaterThan(0);
  });

  it('is refused over HTTPS when it is not named, in one line that says which input names it', async () => {
    const before = fwd.connections();
    const source = parseSource(inputs({ source: location }), CLI_WORDS);
    expect(source).not.toHaveProperty('insecure');
    const failed = list(source, { username: reg.username, password: reg.password }, { log: quietLog, env, words: CLI_WORDS });
    await expect(failed).rejects.toThrow(
      `cannot talk to ${fwd.host} (TLS handshake failed; a registry that serves plain HTTP must be named in --registry-insecure)`,
    );
    expect(fwd.connections()).toBeGreaterThan(before);
  });
});
