import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as core from '@actions/core';
import { afterAll, describe, expect, it } from 'vitest';
import { parseEngineAddress } from '../../src/core/engine-address.js';
import { parsePortMap } from '../../src/core/port-map.js';
import { parseRestoreInputs } from '../../src/core/inputs.js';
import { CLI_WORDS } from '../../src/core/words.js';
import { InputError } from '../../src/core/input-error.js';
import {
  addressClashes,
  hostBindings,
  mapPorts,
  missingFeatures,
  portClashes,
  subnetClashes,
  canonicalAddress,
  unusedMappings,
  willStart,
} from '../../src/snapshot/target-check.js';
import type { ContainerSpec } from '../../src/snapshot/spec.js';
import { engineLine, restoreSummary } from '../../src/report.js';

const certs = mkdtempSync(join(tmpdir(), 'csx-certs-'));
for (const f of ['ca.pem', 'cert.pem', 'key.pem']) writeFileSync(join(certs, f), 'pem');
const partial = join(certs, 'partial');
mkdirSync(partial);
writeFileSync(join(partial, 'ca.pem'), 'pem');
afterAll(() => rmSync(certs, { recursive: true, force: true }));

describe('the engine address: docker-host over DOCKER_HOST', () => {
  it('takes the input first, then DOCKER_HOST, then the local socket', () => {
    expect(parseEngineAddress('', {}, 'docker-host')).toEqual({ kind: 'unix', socketPath: '/var/run/docker.sock', raw: 'unix:///var/run/docker.sock' });
    expect(parseEngineAddress('', { DOCKER_HOST: 'unix:///run/b.sock' }, 'docker-host')).toMatchObject({ kind: 'unix', socketPath: '/run/b.sock' });
    expect(parseEngineAddress('tcp://10.0.0.5:2375', { DOCKER_HOST: 'unix:///run/b.sock' }, 'docker-host')).toEqual({
      kind: 'tcp',
      host: '10.0.0.5',
      port: 2375,
      raw: 'tcp://10.0.0.5:2375',
    });
  });

  it('uses TLS with the client certificate of DOCKER_CERT_PATH when DOCKER_TLS_VERIFY is set, as the docker CLI does', () => {
    const a = parseEngineAddress('tcp://engine-b.example:23760', { DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: certs }, '--docker-host');
    expect(a).toEqual({
      kind: 'tcp',
      host: 'engine-b.example',
      port: 23760,
      raw: 'tcp://engine-b.example:23760',
      tls: { ca: join(certs, 'ca.pem'), cert: join(certs, 'cert.pem'), key: join(certs, 'key.pem') },
    });
    expect(parseEngineAddress('tcp://[::1]', { DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: certs }, 'docker-host')).toMatchObject({ host: '::1', port: 2376 });
    expect(() => parseEngineAddress('tcp://h:2376', { DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: partial }, 'docker-host')).toThrow(
      `DOCKER_TLS_VERIFY is set, but cert.pem cannot be read in ${partial} (DOCKER_CERT_PATH). Expected ca.pem, cert.pem and key.pem there, as docker --tlsverify reads them.`,
    );
  });

  it('takes ssh with a user and port', () => {
    expect(parseEngineAddress('ssh://deploy@host-b:2222', { SSH_AUTH_SOCK: '/tmp/agent' }, 'docker-host')).toEqual({
      kind: 'ssh',
      host: 'host-b',
      port: 2222,
      username: 'deploy',
      agent: '/tmp/agent',
      raw: 'ssh://deploy@host-b:2222',
    });
    expect(() => parseEngineAddress('ssh://host-b', {}, '--docker-host')).toThrow(
      "--docker-host 'ssh://host-b' needs an SSH agent with the key for the user@host-b. Expected SSH_AUTH_SOCK (ssh-agent, then ssh-add).",
    );
  });

  it('refuses a bad value in one line naming where it came from, in the words of the interface', () => {
    expect(() => parseEngineAddress('http://h:2375', {}, '--docker-host')).toThrow(
      new InputError("Invalid --docker-host 'http://h:2375'. Expected unix:///PATH, tcp://HOST:PORT or ssh://[USER@]HOST[:PORT], not http://."),
    );
    expect(() => parseEngineAddress('', { DOCKER_HOST: 'tcp://h:99999' }, 'docker-host')).toThrow(
      "Invalid DOCKER_HOST 'tcp://h:99999'. Expected unix:///PATH, tcp://HOST:PORT or ssh://[USER@]HOST[:PORT]: a port from 1 to 65535.",
    );
    expect(() => parseEngineAddress('tcp://h:2375/v1', {}, 'docker-host')).toThrow(/^Invalid docker-host 'tcp:\/\/h:2375\/v1'\. .*no path\.$/);
    expect(() => parseEngineAddress('unix://run/docker.sock', {}, 'docker-host')).toThrow(/unix:\/\/ needs an absolute socket path/);
    expect(() => parseEngineAddress('localhost:2375', {}, 'docker-host')).toThrow(/^Invalid docker-host 'localhost:2375'\. Expected/);
  });

  it('is parsed with the restore inputs, with port-map', () => {
    const values: Record<string, string> = { snapshot: 'latest', 'docker-host': 'tcp://127.0.0.1:2375', 'port-map': '8080=18080\n53/udp=5353' };
    const opts = parseRestoreInputs((n) => values[n] ?? '', CLI_WORDS, {});
    expect(opts.engine).toMatchObject({ kind: 'tcp', port: 2375 });
    expect(opts.portMap).toEqual([
      { from: 8080, to: 18080 },
      { from: 53, protocol: 'udp', to: 5353 },
    ]);
    values['port-map'] = '8080:18080';
    expect(() => parseRestoreInputs((n) => values[n] ?? '', CLI_WORDS, {})).toThrow(
      "Invalid --port-map '8080:18080'. Expected HOSTPORT[/tcp|udp|sctp]=NEWHOSTPORT, like 8080=18080 or 53/udp=5353 (ports 1 to 65535).",
    );
  });
});

describe('port-map', () => {
  it('refuses a host port mapped twice and ports out of range', () => {
    expect(() => parsePortMap(['8080=1', '8080/tcp=2'], 'port-map')).toThrow(
      "Invalid port-map '8080/tcp=2': host port 8080 is mapped twice. Expected each host port once.",
    );
    expect(parsePortMap(['53/tcp=1', '53/udp=2'], 'port-map')).toHaveLength(2);
    expect(() => parsePortMap(['0=80'], 'port-map')).toThrow(/ports 1 to 65535/);
    expect(() => parsePortMap(['80=70000'], 'port-map')).toThrow(/ports 1 to 65535/);
  });
});

const spec = (hostConfig: Record<string, unknown>): ContainerSpec => ({ config: {}, hostConfig, networks: [] });
const web = spec({
  PortBindings: {
    '80/tcp': [
      { HostIp: '', HostPort: '8080' },
      { HostIp: '127.0.0.1', HostPort: '8443' },
    ],
    '53/udp': [{ HostIp: '', HostPort: '53' }],
    '9000/tcp': [{ HostIp: '', HostPort: '' }],
  },
});

describe('published ports on the target engine', () => {
  it('lists fixed host ports only (the engine picks the others; the host network publishes none)', () => {
    expect(hostBindings('h', { ...web, hostConfig: { ...web.hostConfig, NetworkMode: 'host' } })).toEqual([]);
    expect(hostBindings('web', web)).toEqual([
      { container: 'web', containerPort: '80/tcp', ip: '', port: 8080, protocol: 'tcp' },
      { container: 'web', containerPort: '80/tcp', ip: '127.0.0.1', port: 8443, protocol: 'tcp' },
      { container: 'web', containerPort: '53/udp', ip: '', port: 53, protocol: 'udp' },
    ]);
  });

  it('maps host ports by port and protocol, leaving the rest as they were', () => {
    const mapped = mapPorts(web, [
      { from: 8080, to: 18080 },
      { from: 53, protocol: 'tcp', to: 5353 },
    ]);
    expect(mapped.hostConfig.PortBindings).toEqual({
      '80/tcp': [
        { HostIp: '', HostPort: '18080' },
        { HostIp: '127.0.0.1', HostPort: '8443' },
      ],
      '53/udp': [{ HostIp: '', HostPort: '53' }],
      '9000/tcp': [{ HostIp: '', HostPort: '' }],
    });
    expect(
      unusedMappings(
        [{ container: 'web', spec: web }],
        [
          { from: 8080, to: 1 },
          { from: 53, protocol: 'tcp', to: 2 },
          { from: 7, to: 3 },
        ],
      ),
    ).toEqual([
      { from: 53, protocol: 'tcp', to: 2 },
      { from: 7, to: 3 },
    ]);
  });

  it('finds a port held there on an overlapping address and protocol, or wanted twice', () => {
    const wanted = hostBindings('web', web);
    expect(
      portClashes(
        wanted,
        [
          { container: 'other', ip: '127.0.0.1', port: 8080, protocol: 'tcp' },
          { container: 'dns', ip: '', port: 53, protocol: 'tcp' },
          { container: 'x', ip: '10.0.0.1', port: 8443, protocol: 'tcp' },
        ],
        '--port-map',
      ),
    ).toEqual(["web publishes host port 8080/tcp (for 80/tcp), which container 'other' holds on this engine (--port-map 8080=NEWPORT publishes it elsewhere)"]);
    expect(portClashes([...wanted, ...hostBindings('api', spec({ PortBindings: { '81/tcp': [{ HostPort: '8080' }] } }))], [], 'port-map')).toEqual([
      'api and web both publish host port 8080/tcp',
    ]);
  });

  it('checks only containers the restore starts', () => {
    expect([
      willStart({ state: 'running' }, 'auto'),
      willStart({ state: 'exited' }, 'auto'),
      willStart({ state: 'exited' }, 'always'),
      willStart({ state: 'running' }, 'never'),
    ]).toEqual([true, false, true, false]);
  });
});

describe('features the target engine lacks', () => {
  const features = { runtimes: ['runc'], logDrivers: ['json-file', 'syslog'], volumeDrivers: ['local'], networkDrivers: ['bridge', 'null'] };

  it('names each missing runtime, log, volume and network driver with who needs it', () => {
    const needs = {
      containers: [
        { name: 'gpu', spec: spec({ Runtime: 'nvidia', LogConfig: { Type: 'gelf' } }), volumeDrivers: ['rexray'] },
        { name: 'gpu2', spec: spec({ Runtime: 'nvidia', LogConfig: { Type: 'none' } }), volumeDrivers: ['local'] },
        { name: 'ok', spec: spec({ Runtime: 'runc', LogConfig: { Type: 'json-file' } }), volumeDrivers: [] },
      ],
      networks: [{ name: 'overlay-net', driver: 'overlay' }],
    };
    expect(missingFeatures(needs, features)).toEqual([
      "runtime 'nvidia' (gpu, gpu2)",
      "log driver 'gelf' (gpu)",
      "volume driver 'rexray' (gpu)",
      "network driver 'overlay' (network overlay-net)",
    ]);
    expect(missingFeatures({ containers: [needs.containers[2]], networks: [] }, features)).toEqual([]);
  });
});

describe('subnets of the networks a restore creates', () => {
  it('finds an IPv4 subnet overlapping one the engine has, either way round, and leaves IPv6 and disjoint ones', () => {
    const existing = [
      { network: 'bridge', subnet: '172.17.0.0/16' },
      { network: 'apps', subnet: '10.20.30.0/24' },
      { network: 'v6', subnet: 'fd00::/64' },
    ];
    const networks = [
      { name: 'inner', driver: 'bridge', subnets: ['172.17.5.0/24'] },
      { name: 'outer', driver: 'bridge', subnets: ['10.20.0.0/16', 'fd00::/64'] },
      { name: 'apart', driver: 'bridge', subnets: ['10.20.31.0/24'] },
      { name: 'auto', driver: 'bridge' },
    ];
    expect(subnetClashes(networks, existing)).toEqual([
      'network inner would be created with subnet 172.17.5.0/24, which overlaps network bridge (172.17.0.0/16) on this engine',
      'network outer would be created with subnet 10.20.0.0/16, which overlaps network apps (10.20.30.0/24) on this engine',
    ]);
  });
});

describe('reports name the engines', () => {
  it('says where a set was restored and where it was taken', () => {
    const a = { name: 'host-a', id: 'AAAA:BBBB:CCCC:DDDD', version: '20.10.24', apiVersion: '1.41' };
    expect(engineLine({ ...a, address: 'unix:///var/run/docker.sock' })).toBe(
      'host-a, ID AAAA:BBBB:CCCC, Engine 20.10.24 (API 1.41) at unix:///var/run/docker.sock',
    );
    expect(engineLine({ version: '20.10.24', apiVersion: '1.41' })).toBe('Engine 20.10.24 (API 1.41)');
    const summary = restoreSummary(core.summary.emptyBuffer(), {
      tag: 't',
      containers: [],
      failed: 0,
      engine: { name: 'host-b', version: '26.1.5', apiVersion: '1.45', address: 'tcp://b:2376 (TLS)' },
      sourceEngine: { ...a, os: 'linux', arch: 'amd64' },
    }).stringify();
    expect(summary).toContain('Restored onto: host-b, Engine 26.1.5 (API 1.45) at tcp://b:2376 (TLS)\n');
    expect(summary).toContain('Taken on: host-a, ID AAAA:BBBB:CCCC, Engine 20.10.24 (API 1.41)\n');
  });
});

describe('addressClashes', () => {
  it('names the running holder of a fixed address on that network, and two restored containers asking for one address', () => {
    const held = new Map([['app', new Map([['10.0.7.10', 'web']])]]);
    const wanted = [
      { container: 'web-copy', network: 'app', address: '10.0.7.10' },
      { container: 'a', network: 'back', address: '10.0.8.5' },
      { container: 'b', network: 'back', address: '10.0.8.5' },
      { container: 'c', network: 'other', address: '10.0.7.10' },
    ];
    expect(addressClashes(wanted, held, CLI_WORDS)).toEqual([
      "web-copy asks for address 10.0.7.10 on network app, which container 'web' holds there (stop 'web' first, or create web-copy without starting it: --start never)",
      'b and a both ask for address 10.0.8.5 on network back',
    ]);
    // Restored under its own name: replace would set the holder aside, so it is offered.
    expect(addressClashes([{ container: 'web', network: 'app', address: '10.0.7.10' }], held, CLI_WORDS)).toEqual([
      "web asks for address 10.0.7.10 on network app, which container 'web' holds there (stop 'web' first, restore over it with --replace, or create web without starting it: --start never)",
    ]);
  });

  it('compares IPv6 addresses in their canonical text, without a prefix length', () => {
    expect(canonicalAddress('FD00:0:0::10')).toBe('fd00::10');
    expect(canonicalAddress('fd00::10/64')).toBe('fd00::10');
    expect(canonicalAddress('10.0.7.10/24')).toBe('10.0.7.10');
  });
});
