import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { copyFileSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import type Docker from 'dockerode';
import { existsSync, readdirSync } from 'node:fs';
import { processHost } from '../../src/core/process-liveness.js';
import { stateDir } from '../../src/core/state-dir.js';
import { Resources, docker, runContainer, signalWhen, treeDigest, waitFor } from '../support/fixtures.js';
import { buildFixtureImage } from '../support/engine.js';
import { ENGINE_B, engineBEnv, requireEngineB } from '../support/engine-b.js';
import { runCli, runStep } from '../support/runner.js';

/** The bundled CLI and actions, reaching engine B over tcp+TLS by --docker-host / docker-host. */
describe('the bundles on another engine', () => {
  const res = new Resources(inject('runPrefix'), 'rmte2e');
  const env = { DOCKER_CONFIG: '/nonexistent' };
  const [app, viaCli, viaAction, killed, onB, backHome] = [
    res.name('app'),
    res.name('cli'),
    res.name('action'),
    res.name('killed'),
    res.name('on-b'),
    res.name('home'),
  ];
  const volume = res.volume('v');
  const key = readFileSync(join(ENGINE_B.certPath, 'key.pem'), 'utf8');
  let b: Docker;
  let store: string;

  beforeAll(async () => {
    b = await requireEngineB();
    store = `dir:${join(res.tempDir(), 'store')}`;
    await runContainer(
      {
        name: app,
        Image: inject('fixtureImage'),
        Cmd: ['sh', '-c', 'test -f /v/table || echo rows > /v/table; exec sleep 100000'],
        HostConfig: { Binds: [`${volume}:/v`] },
      },
      'running',
    );
  });

  afterAll(async () => {
    if (b) {
      for (const name of [viaCli, viaAction, killed, onB]) {
        const image = await b
          .getContainer(name)
          .inspect()
          .then(
            (i) => i.Config.Image,
            () => undefined,
          );
        if (image) res.image(image);
      }
      res.trackVolume(`${volume}-cli`);
      res.trackVolume(`${volume}-action`);
      res.trackVolume(`${volume}-killed`);
      await res.cleanup(b);
    }
    await res.cleanup();
  });

  it('backs up with the action (its summary names the engine), restores onto B with the CLI and with the action', async () => {
    const a = (await docker.info()) as { ID: string; Name: string };
    const backedUp = await runStep('.', { containers: app, destination: store, tag: 'moved' }, { env });
    expect(backedUp.code, backedUp.stdout).toBe(0);
    expect(backedUp.summary).toContain(`Engine: ${a.Name}, ID ${a.ID.slice(0, 14)}, Engine `);

    const bId = ((await b.info()) as { ID: string }).ID;
    const cli = await runCli(
      [
        'restore',
        '--source',
        store,
        '--snapshot',
        'moved',
        '--docker-host',
        ENGINE_B.host,
        '--rename',
        `${app}=${viaCli}`,
        '--rename',
        `${volume}=${volume}-cli`,
      ],
      { env: { ...env, ...engineBEnv } },
    );
    expect(cli.code, cli.stderr).toBe(0);
    const json = JSON.parse(cli.stdout);
    expect(json.engine).toMatchObject({ id: bId, address: `${ENGINE_B.host} (TLS)` });
    expect(json.sourceEngine).toMatchObject({ id: a.ID, name: a.Name });
    expect((await b.getContainer(viaCli).inspect()).State.Running).toBe(true);

    const step = await runStep(
      'restore',
      { source: store, snapshot: 'moved', 'docker-host': ENGINE_B.host, rename: `${app}=${viaAction}\n${volume}=${volume}-action` },
      { env: { ...env, ...engineBEnv } },
    );
    expect(step.code, step.stdout).toBe(0);
    expect(step.summary).toContain(`Restored onto: `);
    expect(step.summary).toContain(`ID ${bId.slice(0, 14)}, Engine `);
    expect(step.summary).toContain(`at ${ENGINE_B.host} (TLS)`);
    expect(step.summary).toContain(`Taken on: ${a.Name}, ID ${a.ID.slice(0, 14)}`);
    expect((await b.getContainer(viaAction).inspect()).State.Running).toBe(true);
    for (const text of [cli.stdout, cli.stderr, step.stdout, step.stderr, step.summary]) expect(text).not.toContain(key.split('\n')[1]);
  });

  it('refuses a bad engine address in one line, in the words of each interface', async () => {
    const cli = await runCli(['restore', '--source', store, '--docker-host', 'http://127.0.0.1:2375'], { env });
    expect([cli.code, cli.stderr]).toEqual([
      1,
      "error: Invalid --docker-host 'http://127.0.0.1:2375'. Expected unix:///PATH, tcp://HOST:PORT or ssh://[USER@]HOST[:PORT], not http://.\n",
    ]);
    const noCerts = await runCli(['backup', '--containers', app, '--destination', store], {
      env: { ...env, DOCKER_HOST: ENGINE_B.host, DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: '/nonexistent' },
    });
    expect(noCerts.stderr).toBe(
      'error: DOCKER_TLS_VERIFY is set, but ca.pem cannot be read in /nonexistent (DOCKER_CERT_PATH). Expected ca.pem, cert.pem and key.pem there, as docker --tlsverify reads them.\n',
    );
    // Engine B over plain HTTP, and with a client certificate of another CA: what to set, in one line.
    const plain = await runCli(['restore', '--source', store, '--docker-host', ENGINE_B.host], { env });
    expect(plain.stderr).toBe(
      `error: Docker engine ${ENGINE_B.host} answers HTTPS only. Expected DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH with ca.pem, cert.pem and key.pem.\n`,
    );
    const stranger = res.tempDir();
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=stranger',
        '-keyout',
        join(stranger, 'key.pem'),
        '-out',
        join(stranger, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    );
    copyFileSync(join(ENGINE_B.certPath, 'ca.pem'), join(stranger, 'ca.pem'));
    const refused = await runCli(['restore', '--source', store, '--docker-host', ENGINE_B.host], {
      env: { ...env, DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: stranger },
    });
    expect(refused.stderr).toMatch(
      new RegExp(
        `^error: Docker engine ${ENGINE_B.host.replace(/[.:/]/g, '\\$&')} \\(TLS\\): the TLS handshake failed \\(.*bad certificate.*\\)\\. Expected an engine certificate signed by ca\\.pem of DOCKER_CERT_PATH, and cert\\.pem/key\\.pem the engine accepts\\.\n$`,
      ),
    );
    const step = await runStep('restore', { source: store, 'docker-host': 'tcp://127.0.0.1:2375/v1.41' }, { env });
    expect(step.code).toBe(1);
    expect(step.stdout).toContain(
      "::error::Invalid docker-host 'tcp://127.0.0.1:2375/v1.41'. Expected unix:///PATH, tcp://HOST:PORT or ssh://[USER@]HOST[:PORT]: a host name or IP address, then an optional :PORT, and no path.",
    );
  });

  it("keeps a restore's journal per engine: one killed on B is put back on B only, never on A", async () => {
    const big = res.name('big');
    const bigVolume = res.volume('bigv');
    await runContainer(
      {
        name: big,
        Image: inject('fixtureImage'),
        Cmd: ['sh', '-c', 'test -f /v/big || dd if=/dev/urandom of=/v/big bs=1M count=40 2>/dev/null; touch /v/ready; exec sleep 100000'],
        HostConfig: { Binds: [`${bigVolume}:/v`] },
      },
      'running',
    );
    await waitFor(
      async () =>
        treeDigest(big, '/v/ready').then(
          () => true,
          () => false,
        ),
      60_000,
    );
    const bigStore = `dir:${join(res.tempDir(), 'store')}`;
    expect((await runCli(['backup', '--containers', big, '--destination', bigStore, '--tag', 'big'], { env })).code).toBe(0);
    res.image(`container-snapshot/${big}:big`);
    const target = `${bigVolume}-killed`;
    res.trackVolume(target);
    const onB = { ...env, ...engineBEnv };
    const args = ['restore', '--source', bigStore, '--snapshot', 'big', '--docker-host', ENGINE_B.host, '--rename', `${big}=${killed},${bigVolume}=${target}`];
    const sent: { at?: number; pid?: number } = {};
    const first = await runCli(args, {
      env: onB,
      onSpawn: signalWhen(
        async () =>
          b
            .getVolume(target)
            .inspect()
            .then(
              () => true,
              () => false,
            ),
        'SIGKILL',
        sent,
      ),
    });
    expect([first.code, sent.at !== undefined], first.stderr).toEqual([128, true]);
    const journals = join(stateDir(process.env), 'restore-journal');
    const mine = () => (existsSync(journals) ? readdirSync(journals).filter((f) => f === `${processHost()}-${sent.pid}.json`) : []);
    expect(mine()).toHaveLength(1);
    expect(JSON.parse(readFileSync(join(journals, mine()[0]), 'utf8')).engine).toBe(ENGINE_B.host);

    // A run on A leaves it alone: it is B's to put back.
    const onA = await runCli(['backup', '--containers', app, '--destination', store, '--tag', 'on-a'], { env });
    expect(onA.code, onA.stderr).toBe(0);
    expect(mine()).toHaveLength(1);
    expect(
      await b
        .getVolume(target)
        .inspect()
        .then(
          () => true,
          () => false,
        ),
    ).toBe(true);

    // The next restore onto B puts it back first, then restores.
    const again = await runCli(args, { env: onB });
    expect(again.code, again.stderr).toBe(0);
    expect(mine()).toEqual([]);
    expect((await treeDigest(killed, '/v/big', b)).digest).toBe((await treeDigest(big, '/v/big')).digest);
  });

  it('backs up on B with the backup action (docker-host), and the set says so when restored on A', async () => {
    const image = res.image(await buildFixtureImage(`${res.prefix}-b:v1`, 'on-b', b));
    await runContainer({ name: onB, Image: image, Cmd: ['sh', '-c', 'test -f /tmp/b.txt || echo written-on-b > /tmp/b.txt; exec sleep 100000'] }, 'running', b);
    await waitFor(async () =>
      treeDigest(onB, '/tmp/b.txt', b).then(
        () => true,
        () => false,
      ),
    );
    const bInfo = (await b.info()) as { ID: string; Name: string };
    const backedUp = await runStep(
      '.',
      { containers: onB, destination: store, tag: 'from-b', 'docker-host': ENGINE_B.host },
      { env: { ...env, ...engineBEnv } },
    );
    expect(backedUp.code, backedUp.stdout).toBe(0);
    expect(backedUp.summary).toContain(`Engine: ${bInfo.Name}, ID ${bInfo.ID.slice(0, 14)}, Engine `);
    expect(backedUp.summary).toContain(`at ${ENGINE_B.host} (TLS)`);

    const home = await runCli(['restore', '--source', store, '--snapshot', 'from-b', '--rename', `${onB}=${backHome}`], { env });
    expect(home.code, home.stderr).toBe(0);
    res.image((await docker.getContainer(backHome).inspect()).Config.Image);
    const json = JSON.parse(home.stdout);
    expect(json.sourceEngine).toMatchObject({ id: bInfo.ID, name: bInfo.Name });
    expect(json.engine.id).toBe(((await docker.info()) as { ID: string }).ID);
    expect((await treeDigest(backHome, '/tmp/b.txt')).digest).toBe((await treeDigest(onB, '/tmp/b.txt', b)).digest);
  });
});
