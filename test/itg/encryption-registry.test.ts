import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { list, restore } from '../../src/commands.js';
import { parseRestoreInputs } from '../../src/core/inputs.js';
import { parseDestination } from '../../src/core/destination-input.js';
import { backUp, inputs, testEnv } from '../support/commands.js';
import { Resources, docker, quietLog, runContainer, treeDigest, waitFor } from '../support/fixtures.js';

const SECRET = 'pw-3b7e55d0-never-in-clear';
const PASSPHRASE = 'registry passphrase 41c9';

/** Every file under `root`, recursively. */
function filesUnder(root: string): string[] {
  return readdirSync(root, { recursive: true, encoding: 'utf8' })
    .map((f) => join(root, f))
    .filter((f) => statSync(f).isFile());
}

describe('encryption at rest (registry:)', () => {
  const res = new Resources(inject('runPrefix'), 'encreg');
  const reg = inject('registry');
  const creds = { 'registry-username': reg.username, 'registry-password': reg.password };
  const name = res.name('app');
  const volume = res.volume('data');
  const sealedPrefix = `${res.prefix}-sealed`;
  const pullablePrefix = `${res.prefix}-pullable`;
  const registryData = join(dirname(reg.config), 'data', 'docker', 'registry', 'v2');
  let identityFile = '';
  let recipient = '';
  let volumeDigest = '';

  /** A manifest as the registry stores it, by repository and tag. */
  function manifest(repo: string, tag: string): { config: { mediaType: string }; layers: Array<{ mediaType: string }>; annotations?: Record<string, string> } {
    const digest = readFileSync(join(registryData, 'repositories', repo, '_manifests', 'tags', tag, 'current', 'link'), 'utf8').trim();
    return JSON.parse(readFileSync(join(registryData, 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7), 'data'), 'utf8')) as ReturnType<typeof manifest>;
  }

  async function engineState(): Promise<string> {
    const containers = (await docker.listContainers({ all: true })).filter((c) => c.Names.some((n) => n.includes(res.prefix)));
    const volumes = ((await docker.listVolumes()).Volumes ?? []).filter((v) => v.Name.includes(res.prefix));
    return JSON.stringify([containers.map((c) => [c.Id, c.State]), volumes.map((v) => v.Name)]);
  }

  beforeAll(async () => {
    identityFile = join(res.tempDir(), 'key.txt');
    execFileSync('age-keygen', ['-o', identityFile], { stdio: 'ignore' });
    recipient = execFileSync('age-keygen', ['-y', identityFile], { encoding: 'utf8' }).trim();
    await runContainer(
      {
        name,
        Image: inject('fixtureImage'),
        Env: [`DB_PASSWORD=${SECRET}`],
        Cmd: ['sh', '-c', '[ -f /data/f ] || echo row > /data/f; exec sleep 100000'],
        HostConfig: { Binds: [`${volume}:/data`] },
      },
      'running',
    );
    await waitFor(() =>
      treeDigest(name, '/data/f').then(
        () => true,
        () => false,
      ),
    );
    volumeDigest = (await treeDigest(name, '/data')).digest;
    await backUp({ containers: name, destination: `registry:${reg.host}/${sealedPrefix}`, tag: 's1', 'encryption-recipients': recipient, ...creds });
    await backUp({
      containers: name,
      destination: `registry:${reg.host}/${pullablePrefix}`,
      tag: 'p1',
      'encryption-passphrase': PASSPHRASE,
      'registry-pullable-image': 'true',
      'exclude-env': 'DB_PASSWORD',
      ...creds,
    });
  });
  afterAll(() => res.cleanup());

  it('stores the image as an encrypted OCI artifact, the volumes and the set document encrypted, and no secret anywhere in the registry', () => {
    const image = manifest(`${sealedPrefix}/${name}`, 's1');
    expect(image.config.mediaType).toBe('application/vnd.container-snapshot.image-config.v1+json+age');
    expect(image.layers.every((l) => l.mediaType.endsWith('+age'))).toBe(true);
    const set = manifest(sealedPrefix, 's1');
    expect(set.config.mediaType).toBe('application/vnd.container-snapshot.set.v1+json+age');
    expect(set.layers.every((l) => l.mediaType.endsWith('+age'))).toBe(true);
    expect(JSON.parse(set.annotations?.['container-snapshot.encryption'] ?? '{}')).toMatchObject({ format: 'age', containers: [name] });
    for (const f of filesUnder(join(registryData, 'blobs'))) expect(readFileSync(f).includes(SECRET), f).toBe(false);
  });

  it('with registry-pullable-image, the image stays pullable (and exclude-env keeps the password out of it), the volumes and the set are encrypted', async () => {
    const image = manifest(`${pullablePrefix}/${name}`, 'p1');
    expect(image.config.mediaType).toBe('application/vnd.oci.image.config.v1+json');
    expect(image.layers.some((l) => l.mediaType.endsWith('+age'))).toBe(false);
    const set = manifest(pullablePrefix, 'p1');
    expect(set.config.mediaType).toBe('application/vnd.container-snapshot.set.v1+json+age');
    expect(set.layers.filter((l) => l.mediaType.includes('volume')).every((l) => l.mediaType.endsWith('+age'))).toBe(true);
    const ref = `${reg.host}/${pullablePrefix}/${name}:p1`;
    const stream = await docker.pull(ref, { authconfig: { username: reg.username, password: reg.password, serveraddress: reg.host } });
    const events = await new Promise<Array<{ error?: string }>>((resolve, reject) =>
      docker.modem.followProgress(stream, (err, out) => (err ? reject(err) : resolve(out))),
    );
    res.image(ref);
    expect(events.filter((e) => e.error)).toEqual([]);
    expect((await docker.getImage(ref).inspect()).Config.Env.join('\n')).not.toContain(SECRET);
  });

  it('lists both sets without a key; refuses a missing and a wrong key before any change; restores with the identity and with the passphrase', async () => {
    const sets = await list(
      parseDestination(`registry:${reg.host}/${sealedPrefix}`),
      { username: reg.username, password: reg.password },
      { log: quietLog, env: testEnv },
    );
    expect(sets.map((s) => [s.tag, s.containers])).toEqual([['s1', [name]]]);
    await docker.getContainer(name).remove({ force: true });
    await docker.getVolume(volume).remove();
    const before = await engineState();
    const source = `registry:${reg.host}/${sealedPrefix}`;
    await expect(restore(parseRestoreInputs(inputs({ source, snapshot: 's1', ...creds })), { log: quietLog, env: testEnv })).rejects.toThrow(
      'is encrypted (age). Expected decryption-identity or decryption-passphrase.',
    );
    await expect(
      restore(parseRestoreInputs(inputs({ source, snapshot: 's1', 'decryption-passphrase': 'nope', ...creds })), { log: quietLog, env: testEnv }),
    ).rejects.toThrow('cannot be decrypted');
    expect(await engineState()).toBe(before);

    const r = await restore(parseRestoreInputs(inputs({ source, snapshot: 's1', 'decryption-identity': identityFile, ...creds })), {
      log: quietLog,
      env: testEnv,
    });
    expect(r.failed).toBe(0);
    res.image(`container-snapshot/${name}:s1`);
    expect((await docker.getContainer(name).inspect()).Config.Env).toContain(`DB_PASSWORD=${SECRET}`);
    await waitFor(() =>
      treeDigest(name, '/data').then(
        (t) => t.digest === volumeDigest,
        () => false,
      ),
    );

    const p = await restore(
      parseRestoreInputs(
        inputs({ source: `registry:${reg.host}/${pullablePrefix}`, snapshot: 'p1', 'decryption-passphrase': PASSPHRASE, replace: 'true', ...creds }),
      ),
      { log: quietLog, env: testEnv },
    );
    expect(p.failed).toBe(0);
    res.image(`container-snapshot/${name}:p1`);
    expect((await docker.getContainer(name).inspect()).Config.Env.join('\n')).not.toContain('DB_PASSWORD');
    await waitFor(() =>
      treeDigest(name, '/data').then(
        (t) => t.digest === volumeDigest,
        () => false,
      ),
    );
    for (const line of quietLog.lines) expect([line.includes(SECRET), line.includes(PASSPHRASE)], line).toEqual([false, false]);
  });
});
