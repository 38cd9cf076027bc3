import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { backup, list, restore, verify } from '../../src/commands.js';
import { parseBackupInputs, parseRestoreInputs } from '../../src/core/inputs.js';
import { parseDestination } from '../../src/core/destination-input.js';
import { Resources, docker, quietLog, runContainer, treeDigest, waitFor } from '../support/fixtures.js';

const env = { ...process.env, DOCKER_CONFIG: '/nonexistent' };
const inputs = (values: Record<string, string>) => (name: string) => values[name] ?? '';
const TAG = 'integ';

/** One byte of the document changed at the end of the first match of `at`. */
function changeByte(at: RegExp): (doc: Buffer) => Buffer {
  return (doc) => {
    const m = at.exec(doc.toString('latin1'));
    expect(m, `${String(at)} in the set document`).not.toBeNull();
    const i = m!.index + m![0].length - 1;
    const out = Buffer.from(doc);
    out[i] = out[i] === 0x31 ? 0x32 : out[i] + 1;
    return out;
  };
}

/** A host bind the backup never had, in the document's own layout. */
function addHostBind(doc: Buffer): Buffer {
  const text = doc.toString('utf8');
  const set = JSON.parse(text) as { containers: Array<{ spec: { hostConfig: { Binds?: string[] } } }> };
  const hc = set.containers[0].spec.hostConfig;
  hc.Binds = [...(hc.Binds ?? []), '/:/host:rw'];
  return Buffer.from(text.startsWith('{\n') ? `${JSON.stringify(set, null, 2)}\n` : JSON.stringify(set));
}

const CHANGES: Array<[string, (doc: Buffer) => Buffer]> = [
  ['an environment value', changeByte(/MODE=primary/)],
  ['the command', changeByte(/sleep 100000/)],
  ["a volume's path", changeByte(/"destination": ?"\/data/)],
  ['an added host bind', addHostBind],
];

describe('the set document is used only when it matches its digest', () => {
  const res = new Resources(inject('runPrefix'), 'integrity');
  const reg = inject('registry');
  const creds = { 'registry-username': reg.username, 'registry-password': reg.password };
  const name = res.name('app');
  const volume = res.volume('data');
  let dirLocation = '';
  const regLocation = `registry:${reg.host}/${res.prefix}-sets`;
  const registryData = join(dirname(reg.config), 'data', 'docker', 'registry', 'v2');
  const regBlob = (digest: string) => join(registryData, 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7), 'data');
  const regManifestDigest = () =>
    readFileSync(join(registryData, 'repositories', `${res.prefix}-sets`, '_manifests', 'tags', TAG, 'current', 'link'), 'utf8').trim();

  /** Where each destination keeps the set document, and the digest its tag records apart from it. */
  const stored: Record<'dir' | 'registry', () => { path: string; digest: string }> = {
    dir: () => {
      const root = dirLocation.slice('dir:'.length);
      const { digest } = JSON.parse(readFileSync(join(root, 'sets', `${TAG}.json`), 'utf8')) as { digest: string };
      return { path: join(root, 'blobs', 'sha256', digest.slice(7)), digest };
    },
    registry: () => {
      const manifest = JSON.parse(readFileSync(regBlob(regManifestDigest()), 'utf8')) as { config: { digest: string } };
      return { path: regBlob(manifest.config.digest), digest: manifest.config.digest };
    },
  };
  const location = (kind: 'dir' | 'registry') => (kind === 'dir' ? dirLocation : regLocation);

  /** What this test has on the engine: its containers, volumes and restored images. */
  async function engineState(): Promise<string> {
    const containers = (await docker.listContainers({ all: true })).filter((c) => c.Names.some((n) => n.includes(res.prefix)));
    const volumes = ((await docker.listVolumes()).Volumes ?? []).filter((v) => v.Name.includes(res.prefix));
    const images = (await docker.listImages()).filter((i) => (i.RepoTags ?? []).some((t) => t.includes(res.prefix)));
    return JSON.stringify([containers.map((c) => [c.Id, c.State]), volumes.map((v) => v.Name), images.map((i) => i.Id)]);
  }

  async function expectRefused(kind: 'dir' | 'registry', snapshot: string, message: string): Promise<void> {
    const before = await engineState();
    await expect(
      verify(parseDestination(location(kind)), snapshot, { username: reg.username, password: reg.password }, { log: quietLog, env }),
    ).rejects.toThrow(message);
    await expect(restore(parseRestoreInputs(inputs({ source: location(kind), snapshot, ...creds })), { log: quietLog, env })).rejects.toThrow(message);
    expect(await engineState()).toBe(before);
  }

  beforeAll(async () => {
    dirLocation = `dir:${join(res.tempDir(), 'store')}`;
    await runContainer(
      {
        name,
        Image: inject('fixtureImage'),
        Env: ['MODE=primary'],
        Cmd: ['sh', '-c', 'echo row > /data/f; exec sleep 100000'],
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
    const r = await backup(parseBackupInputs(inputs({ containers: name, destination: `${dirLocation}\n${regLocation}`, tag: TAG, ...creds })), {
      log: quietLog,
      env,
    });
    expect(r.failed).toBe(0);
    // Restores below would create the container and its volume: nothing of it is left to overwrite.
    await docker.getContainer(name).remove({ force: true });
    await docker.getVolume(volume).remove();
  });
  afterAll(() => res.cleanup());

  for (const kind of ['dir', 'registry'] as const) {
    for (const [what, change] of CHANGES) {
      it(`${kind}: ${what} changed in the document fails verify and restore, and changes nothing on the engine`, async () => {
        const { path, digest } = stored[kind]();
        const original = readFileSync(path);
        writeFileSync(path, change(original));
        try {
          await expectRefused(
            kind,
            TAG,
            `Snapshot ${TAG} in ${location(kind)}: the set document does not match its digest ${digest} (corrupted or changed); not used.`,
          );
        } finally {
          writeFileSync(path, original);
        }
      });
    }
  }

  it('dir: latest is the damaged newest set, listed as damaged, never an older one taken in silence', async () => {
    const { path, digest } = stored.dir();
    const original = readFileSync(path);
    writeFileSync(path, CHANGES[0][1](original));
    try {
      const message = `Snapshot ${TAG} in ${dirLocation}: the set document does not match its digest ${digest} (corrupted or changed); not used.`;
      await expectRefused('dir', 'latest', message);
      expect((await list(parseDestination(dirLocation), {}, { log: quietLog, env })).map((s) => [s.tag, s.damaged])).toEqual([[TAG, message]]);
    } finally {
      writeFileSync(path, original);
    }
  });

  it('registry: a changed byte in the set manifest (which names the document by digest) fails against the digest its tag points at', async () => {
    const manifestDigest = regManifestDigest();
    const path = regBlob(manifestDigest);
    const original = readFileSync(path);
    writeFileSync(path, changeByte(/"org\.opencontainers\.image\.created":"\d/)(original));
    try {
      await expectRefused(
        'registry',
        TAG,
        `Snapshot ${TAG} in ${regLocation}: the set manifest does not match its digest ${manifestDigest} (corrupted or changed); not used.`,
      );
    } finally {
      writeFileSync(path, original);
    }
  });

  it('the untouched documents verify, and restore the container as it was', async () => {
    const v = await verify(parseDestination(regLocation), TAG, { username: reg.username, password: reg.password }, { log: quietLog, env });
    expect(v.blobs).toBeGreaterThanOrEqual(3);
    const r = await restore(parseRestoreInputs(inputs({ source: dirLocation, snapshot: TAG })), { log: quietLog, env });
    expect(r.failed).toBe(0);
    res.image(`container-snapshot/${name}:${TAG}`);
    const info = await docker.getContainer(name).inspect();
    expect(info.Config.Env).toContain('MODE=primary');
    expect(info.Config.Cmd).toEqual(['sh', '-c', 'echo row > /data/f; exec sleep 100000']);
    expect(info.HostConfig.Binds).toEqual([`${volume}:/data`]);
  });
});
