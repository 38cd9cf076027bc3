import { execFileSync } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { cpSync, readFileSync, readdirSync, statSync } from 'node:fs';
import tar from 'tar-stream';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { backup, prune, restore, verify, verifyReport } from '../../src/commands.js';
import { parseBackupInputs, parseRestoreInputs } from '../../src/core/inputs.js';
import { parseDestination } from '../../src/core/destination-input.js';
import { parseRetentionPolicy } from '../../src/core/retention-input.js';
import { Keyring } from '../../src/crypto/keyring.js';
import { DirDestination } from '../../src/destinations/dir/index.js';
import { RegistryDestination } from '../../src/destinations/registry.js';
import { Engine } from '../../src/engine/engine.js';
import { SET_BLOB_HEADROOM, runBackup } from '../../src/snapshot/backup.js';
import { RegistryClient } from '../../src/registry/client.js';
import { CHUNK_LIST_VOLUME_MEDIA_TYPE, SET_SCHEMA_VERSION, isChunked, storedBlobs, type SnapshotSet, type VolumeRecord } from '../../src/snapshot/manifest.js';
import { startArtifactService } from '../support/artifact-service.js';
import { backUp, inputs, testEnv } from '../support/commands.js';
import { Resources, docker, quietLog, runContainer, treeDigest } from '../support/fixtures.js';

const MB = 1 << 20;

/** Runs a shell command in the container (busybox applets called by name through `busybox`). */
function sh(container: string, script: string): void {
  execFileSync('docker', ['exec', container, 'busybox', 'sh', '-c', script], { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** The set document of `tag` in a clear dir: store. */
function setOf(root: string, tag: string): SnapshotSet {
  const { digest } = JSON.parse(readFileSync(join(root, 'sets', `${tag}.json`), 'utf8')) as { digest: string };
  return JSON.parse(readFileSync(join(root, 'blobs', 'sha256', digest.slice(7)), 'utf8')) as SnapshotSet;
}

function storeBytes(root: string): number {
  return readdirSync(join(root, 'blobs', 'sha256')).reduce((n, f) => n + statSync(join(root, 'blobs', 'sha256', f)).size, 0);
}

/** `bytes` of AES-256-CTR keystream under a key derived from `seed`: random-looking, the same every run. */
const keystream = (seed: string, bytes: number): Buffer =>
  createCipheriv('aes-256-ctr', createHash('sha256').update(seed).digest(), Buffer.alloc(16)).update(Buffer.alloc(bytes));

/** Writes one file into a container (through the engine's archive API), modified at `mtime` (seconds). */
async function putFile(container: string, dir: string, name: string, body: Buffer, mtime: number): Promise<void> {
  const pack = tar.pack();
  pack.entry({ name, mtime: new Date(mtime * 1000), mode: 0o644 }, body);
  pack.finalize();
  await docker.getContainer(container).putArchive(pack as unknown as NodeJS.ReadableStream, { path: dir });
}

/** The text of /data/notes.txt in container `name` (a fixture store's restored volume), through the engine's archive. */
async function notesOf(name: string): Promise<string> {
  const archive = (await docker.getContainer(name).getArchive({ path: '/data/notes.txt' })) as unknown as NodeJS.ReadableStream;
  const parts: Buffer[] = [];
  for await (const p of archive) parts.push(p as Buffer);
  return Buffer.concat(parts).subarray(512).toString('utf8');
}

const volumeOf = (set: SnapshotSet): VolumeRecord => set.containers[0].volumes[0];
const chunkDigests = (set: SnapshotSet): string[] => storedBlobs(volumeOf(set).blob).map((b) => b.digest);

describe('volumes stored as content-defined chunks', () => {
  const res = new Resources(inject('runPrefix'), 'chunks');
  const reg = inject('registry');
  const creds = { 'registry-username': reg.username, 'registry-password': reg.password };
  afterAll(() => res.cleanup());

  /** A running container with a named volume at /data, filled by `fill` (a shell script). */
  async function container(suffix: string, fill: string): Promise<{ name: string; volume: string }> {
    const name = res.name(suffix);
    const volume = res.volume(`${suffix}-data`);
    await runContainer({ name, Image: inject('fixtureImage'), Cmd: ['sh', '-c', 'exec sleep 100000'], HostConfig: { Binds: [`${volume}:/data`] } }, 'running');
    sh(name, fill);
    return { name, volume };
  }

  /** The /data tree of `tag` restored beside the original (new container and volume names, not started). */
  async function restoredTree(location: string, tag: string, c: { name: string; volume: string }, extra: Record<string, string> = {}) {
    const copy = res.name(`${c.name.slice(res.prefix.length + 1)}-r-${tag}`);
    const rename = `${c.name}=${copy},${c.volume}=${res.volume(`${copy.slice(res.prefix.length + 1)}-data`)}`;
    const r = await restore(parseRestoreInputs(inputs({ source: location, snapshot: tag, containers: c.name, rename, start: 'never', ...extra })), {
      log: quietLog,
      env: testEnv,
    });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    res.image((await docker.getContainer(copy).inspect()).Config.Image);
    return treeDigest(copy, '/data');
  }

  it('ten backups with changes between them: each set restores to its own point in time, and each stores only the chunks that changed', async () => {
    // Fixed bytes (the same every run), kept in the container's layer under /src and copied into the volume.
    const c = await container('ten', 'true');
    const pack = tar.pack();
    pack.entry({ name: 'src/big.bin' }, keystream('big', 12 * MB));
    pack.entry({ name: 'src/patch' }, keystream('patch', MB));
    pack.entry({ name: 'src/sparse-data' }, keystream('sparse', MB));
    for (const f of ['a', 'b', 'c', 'd', 'new']) pack.entry({ name: `src/${f}` }, keystream(f, f === 'new' ? 300_000 : 200_000));
    pack.finalize();
    await docker.getContainer(c.name).putArchive(pack as unknown as NodeJS.ReadableStream, { path: '/' });
    sh(
      c.name,
      'busybox cp /src/big.bin /data/ && busybox mkdir -p /data/dir /data/logs && for f in a b c d; do busybox cp /src/$f /data/dir/$f; done && busybox seq 1 40000 > /data/logs/app.log && busybox ln -s big.bin /data/link',
    );
    const root = join(res.tempDir(), 'store');
    const location = `dir:${root}`;
    const changes = [
      'busybox seq 40000 60000 >> /data/logs/app.log',
      'busybox dd if=/src/patch of=/data/big.bin bs=1M seek=6 count=1 conv=notrunc 2>/dev/null',
      'busybox rm /data/dir/c',
      'busybox mv /data/dir /data/renamed',
      'busybox cp /src/new /data/new && busybox mv /data/new /data/renamed/a',
      'busybox chmod 600 /data/renamed/b && busybox chown 1000:1000 /data/renamed/b',
      'busybox ln -sfn renamed/b /data/link',
      // A sparse file: 48 MiB of hole, then 1 MiB of data.
      'busybox dd if=/src/sparse-data of=/data/sparse bs=1M seek=48 count=1 2>/dev/null',
      'busybox truncate -s 2000000 /data/logs/app.log',
    ];
    const trees: Array<{ digest: string; entries: number }> = [];
    const tags: string[] = [];
    for (let i = 0; i <= changes.length; i++) {
      if (i > 0) sh(c.name, changes[i - 1]);
      tags.push(`t${i + 1}`);
      trees.push(await treeDigest(c.name, '/data'));
      await backUp({ containers: c.name, destination: location, tag: `t${i + 1}` });
    }
    const sets = tags.map((t) => setOf(root, t));
    expect(sets.every((s) => s.schemaVersion === SET_SCHEMA_VERSION && volumeOf(s).blob.mediaType === CHUNK_LIST_VOLUME_MEDIA_TYPE)).toBe(true);
    const seen = new Set<string>();
    const fresh: number[] = [];
    const freshBytes: number[] = [];
    for (const s of sets) {
      const blobs = storedBlobs(volumeOf(s).blob).filter((b) => !seen.has(b.digest));
      const unique = new Map(blobs.map((b) => [b.digest, b]));
      fresh.push(unique.size);
      freshBytes.push([...unique.values()].reduce((n, b) => n + b.size, 0));
      for (const b of storedBlobs(volumeOf(s).blob)) seen.add(b.digest);
    }
    // 12 MiB of random data and ~1 MiB of files at first; then what each change touched and its neighbours
    // (a chunk on either side; the 48 MiB hole is one chunk of zeros, stored once).
    expect(fresh[0]).toBeGreaterThanOrEqual(20);
    for (const [i, bytes] of freshBytes.slice(1).entries()) expect(bytes, `new bytes stored by set t${i + 2}`).toBeLessThanOrEqual(4 * MB);
    expect(freshBytes.slice(1).reduce((a, b) => a + b, 0)).toBeLessThan(freshBytes[0] / 2);
    expect(volumeOf(sets[8]).blob.contentSize).toBeGreaterThan(48 * MB);
    for (const [i, tag] of tags.entries()) expect(await restoredTree(location, tag, c), `set ${tag}`).toEqual(trees[i]);
    const report = await verifyReport(parseDestination(location), 'all', {}, { log: quietLog, env: testEnv });
    expect(report.failed).toBe(0);
    expect(report.sets.map((s) => s.tag).sort()).toEqual([...tags].sort());
  });

  it('a 1 MB change in a 200 MB volume stores ≤ 2 % of the first set again; prune keeps the chunks the newer set needs and removes the rest', async () => {
    // Fixed content (the same bytes every run, so the stored bytes are too): 100 MB of AES-CTR keystream, 100 MB of text.
    const random = keystream('random', 100 * MB);
    const lines: string[] = [];
    for (let i = 0, n = 0; n < 100 * MB; i++) {
      const line = `${i} ${(i * 2654435761) % 1000003} a line of a log or of source code\n`;
      lines.push(line);
      n += line.length;
    }
    const text = Buffer.from(lines.join('')).subarray(0, 100 * MB);
    const c = await container('b2', 'true');
    const put = async (body: Buffer, mtime: number) => {
      const pack = tar.pack();
      pack.entry({ name: 'random', mtime: new Date(mtime * 1000), mode: 0o644 }, body);
      if (mtime === 1) pack.entry({ name: 'text', mtime: new Date(1000), mode: 0o644 }, text);
      pack.finalize();
      await docker.getContainer(c.name).putArchive(pack as unknown as NodeJS.ReadableStream, { path: '/data' });
    };
    await put(random, 1);
    const root = join(res.tempDir(), 'store');
    const location = `dir:${root}`;
    await backUp({ containers: c.name, destination: location, tag: 'first' });
    const first = storeBytes(root);
    keystream('change', MB).copy(random, 50 * MB);
    await put(random, 2);
    const tree = await treeDigest(c.name, '/data');
    await backUp({ containers: c.name, destination: location, tag: 'next' });
    const added = storeBytes(root) - first;
    console.log(`B2 (volume only): first set ${first} bytes stored, ${added} added by the next (${((100 * added) / first).toFixed(2)} %)`);
    expect(volumeOf(setOf(root, 'next')).blob.contentSize).toBeGreaterThan(200 * MB);
    expect(added / first).toBeLessThanOrEqual(0.02);

    const onlyFirst = chunkDigests(setOf(root, 'first')).filter((d) => !chunkDigests(setOf(root, 'next')).includes(d));
    expect(onlyFirst.length).toBeGreaterThan(0);
    const [pruned] = await prune([parseDestination(location)], parseRetentionPolicy('last=1')!, false, {}, { log: quietLog, env: testEnv });
    expect(pruned.removed.map((r) => r.tag)).toEqual(['first']);
    const left = new Set(readdirSync(join(root, 'blobs', 'sha256')).map((f) => `sha256:${f}`));
    for (const d of chunkDigests(setOf(root, 'next'))) expect(left.has(d), `chunk ${d} of the kept set`).toBe(true);
    for (const d of onlyFirst) expect(left.has(d), `chunk ${d} of the removed set only`).toBe(false);
    expect(await restoredTree(location, 'next', c)).toEqual(tree);
  });

  it('an encrypted store reuses chunks between two sets with the same key, and names no chunk by its content in clear', async () => {
    const c = await container('enc', 'busybox seq 1 500000 > /data/t');
    const r = keystream('enc', 8 * MB);
    await putFile(c.name, '/data', 'r', r, 1);
    const dir = res.tempDir();
    const keyFile = join(dir, 'key.txt');
    execFileSync('age-keygen', ['-o', keyFile], { stdio: 'ignore' });
    const recipient = execFileSync('age-keygen', ['-y', keyFile], { encoding: 'utf8' }).trim();
    const identity = readFileSync(keyFile, 'utf8')
      .split('\n')
      .find((l) => l.startsWith('AGE-SECRET-KEY-'))!;
    const root = join(dir, 'store');
    const location = `dir:${root}`;
    const first = await backUp({ containers: c.name, destination: location, tag: 'e1', 'encryption-recipients': recipient });
    keystream('enc change', 100_000).copy(r, 4 * MB);
    await putFile(c.name, '/data', 'r', r, 2);
    const tree = await treeDigest(c.name, '/data');
    const second = await backUp({ containers: c.name, destination: location, tag: 'e2', 'encryption-recipients': recipient });
    expect(first.containers[0].blobs.written).toBeGreaterThanOrEqual(6);
    // The changed region, the chunks either side of it, and the file's header: a handful of the ~17 chunks.
    expect(second.containers[0].blobs.written).toBeLessThanOrEqual(5);

    const reader = new DirDestination(location, root, () => undefined, new Keyring(undefined, { identities: [identity] }, { decrypt: 'a key' }));
    const sets = [(await reader.readSet('e1'))!, (await reader.readSet('e2'))!];
    const shared = chunkDigests(sets[1]).filter((d) => chunkDigests(sets[0]).includes(d));
    expect(shared.length).toBeGreaterThanOrEqual(chunkDigests(sets[1]).length - 5);
    const contents = sets.flatMap((s) => {
      const blob = volumeOf(s).blob;
      return [blob.contentDigest, ...(isChunked(blob) ? blob.chunks.map((ch) => ch.contentDigest) : [])];
    });
    const clear = readdirSync(join(root, 'sets'))
      .map((f) => readFileSync(join(root, 'sets', f), 'utf8'))
      .join('\n');
    const names = readdirSync(join(root, 'blobs', 'sha256'));
    for (const d of contents) {
      expect(clear.includes(d.slice(7)), `content digest ${d} in a clear descriptor`).toBe(false);
      expect(names.includes(d.slice(7)), `a blob named by content digest ${d}`).toBe(false);
    }
    expect(await restoredTree(location, 'e2', c, { 'decryption-identity': keyFile })).toEqual(tree);
  });

  it('registry: chunks are blobs of the set repository, named by the set manifest; the next set pushes only the new ones and restores', async () => {
    const c = await container('reg', 'true');
    const r = keystream('reg', 8 * MB);
    await putFile(c.name, '/data', 'r', r, 1);
    const prefix = `${res.prefix}-sets`;
    const location = `registry:${reg.host}/${prefix}`;
    const first = await backUp({ containers: c.name, destination: location, tag: 'r1', ...creds });
    keystream('reg change', 10_000).copy(r, 3 * MB);
    await putFile(c.name, '/data', 'r', r, 2);
    const tree = await treeDigest(c.name, '/data');
    const second = await backUp({ containers: c.name, destination: location, tag: 'r2', ...creds });
    expect(first.containers[0].blobs.written).toBeGreaterThanOrEqual(4);
    expect(second.containers[0].blobs.written).toBeLessThanOrEqual(3);
    const client = new RegistryClient({ host: reg.host, auth: { username: reg.username, password: reg.password } });
    const layers = async (tag: string) =>
      (JSON.parse((await client.getManifest(prefix, tag))!.body.toString('utf8')) as { layers: Array<{ mediaType: string; digest: string }> }).layers
        .filter((l) => l.mediaType.startsWith('application/vnd.container-snapshot.chunk.'))
        .map((l) => l.digest);
    const [r1, r2] = [await layers('r1'), await layers('r2')];
    expect(r2.length).toBeGreaterThanOrEqual(5);
    expect(r2.filter((d) => r1.includes(d)).length).toBeGreaterThanOrEqual(r2.length - 3);
    for (const d of r2) expect(await client.hasBlob(prefix, d), `chunk ${d} in ${prefix}`).toBe(true);
    expect(
      (await verify(parseDestination(location), 'r2', { username: reg.username, password: reg.password }, { log: quietLog, env: testEnv })).blobs,
    ).toBeGreaterThanOrEqual(r2.length);
    expect(await restoredTree(location, 'r2', c, creds)).toEqual(tree);
  });

  it('registry: a volume whose chunks would not fit the set manifest is stored whole (one line says why), the other chunked; the set verifies and restores', async () => {
    const name = res.name('budget');
    const [big, small] = [res.volume('budget-big'), res.volume('budget-small')];
    await runContainer(
      { name, Image: inject('fixtureImage'), Cmd: ['sh', '-c', 'exec sleep 100000'], HostConfig: { Binds: [`${big}:/data`, `${small}:/small`] } },
      'running',
    );
    await putFile(name, '/data', 'big', keystream('budget big', 8 * MB), 1);
    await putFile(name, '/small', 'small', keystream('budget small', MB), 1);
    const trees = { data: await treeDigest(name, '/data'), small: await treeDigest(name, '/small') };
    const prefix = `${res.prefix}-budget`;
    const location = `registry:${reg.host}/${prefix}`;
    const client = new RegistryClient({ host: reg.host, auth: { username: reg.username, password: reg.password } });
    // Room for the 1 MiB volume's chunks (3 planned, ~4 cut), not for the 8 MiB one's (22 planned).
    const dest = new RegistryDestination(location, prefix, client, undefined, undefined, { setBlobLimit: SET_BLOB_HEADROOM + 12 });
    const log = { ...quietLog, lines: [] as string[] };
    const r = await runBackup(parseBackupInputs(inputs({ containers: name, destination: location, tag: 'b1', ...creds })), {
      engine: new Engine(),
      destinations: [dest],
      log,
      env: testEnv,
    });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    const set = (await dest.readSet('b1'))!;
    const volume = (mount: string) => set.containers[0].volumes.find((v) => v.destination === mount)!;
    expect(isChunked(volume('/data').blob)).toBe(false);
    expect(volume('/data').blob.mediaType).toMatch(/^application\/vnd\.container-snapshot\.volume\.v1\.tar/);
    expect(isChunked(volume('/small').blob)).toBe(true);
    const why = log.lines.filter((l) => l.includes('stored whole, not as chunks'));
    expect(why).toHaveLength(1);
    expect(why[0]).toContain(big);
    expect(why[0]).toContain(`${SET_BLOB_HEADROOM + 12} blobs per set`);
    expect(
      (await verify(parseDestination(location), 'b1', { username: reg.username, password: reg.password }, { log: quietLog, env: testEnv })).blobs,
    ).toBeGreaterThanOrEqual(2);
    const copy = res.name('budget-r');
    const rename = `${name}=${copy},${big}=${res.volume('budget-r-big')},${small}=${res.volume('budget-r-small')}`;
    const restored = await restore(parseRestoreInputs(inputs({ source: location, snapshot: 'b1', containers: name, rename, start: 'never', ...creds })), {
      log: quietLog,
      env: testEnv,
    });
    expect(restored.failed, JSON.stringify(restored.containers)).toBe(0);
    res.image((await docker.getContainer(copy).inspect()).Config.Image);
    expect({ data: await treeDigest(copy, '/data'), small: await treeDigest(copy, '/small') }).toEqual(trees);
  });

  it('registry: a volume cut into more chunks than planned for it (many files of 100 KiB: a header chunk each) is stored whole after all, and restores', async () => {
    const c = await container('many', 'for i in $(busybox seq 40); do busybox dd if=/dev/urandom of=/data/f$i bs=1024 count=100 2>/dev/null; done');
    const tree = await treeDigest(c.name, '/data');
    const prefix = `${res.prefix}-many`;
    const location = `registry:${reg.host}/${prefix}`;
    const client = new RegistryClient({ host: reg.host, auth: { username: reg.username, password: reg.password } });
    // ~4 MiB of archive: 11 chunks planned, which fit; ~80 cut (a header chunk and a data chunk per file), which do not.
    const dest = new RegistryDestination(location, prefix, client, undefined, undefined, { setBlobLimit: SET_BLOB_HEADROOM + 30 });
    const log = { ...quietLog, lines: [] as string[] };
    const r = await runBackup(parseBackupInputs(inputs({ containers: c.name, destination: location, tag: 'm1', ...creds })), {
      engine: new Engine(),
      destinations: [dest],
      log,
      env: testEnv,
    });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    const cut = log.lines.find((l) => / chunk\(s\): /.test(l));
    expect(Number(cut?.match(/: (\d+) chunk\(s\)/)?.[1])).toBeGreaterThan(30);
    expect(log.lines.filter((l) => l.includes('stored whole, not as chunks'))).toHaveLength(1);
    expect(isChunked(volumeOf((await dest.readSet('m1'))!).blob)).toBe(false);
    expect(await restoredTree(location, 'm1', c, creds)).toEqual(tree);
  });

  it('a chunked set is not completed in an artifact: destination (it would hold whole volumes, a different set document): refused before anything is written, a new tag named', async () => {
    const c = await container('art', 'true');
    await putFile(c.name, '/data', 'a', keystream('art', 2 * MB), 1);
    const root = join(res.tempDir(), 'art-store');
    const dir = `dir:${root}`;
    await backUp({ containers: c.name, destination: dir, tag: 'a1' });
    expect(isChunked(volumeOf(setOf(root, 'a1')).blob)).toBe(true);
    const files = readdirSync(join(root, 'blobs', 'sha256')).sort();
    const artifacts = await startArtifactService();
    // @actions/artifact reads its run from process.env.
    const vars: Record<string, string> = { ...artifacts.env({ runId: 7301, jobId: 'backup' }), RUNNER_TEMP: res.tempDir() };
    const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
    Object.assign(process.env, vars);
    try {
      const both = `${dir}\nartifact:${res.prefix}-art`;
      await expect(
        backup(parseBackupInputs(inputs({ containers: c.name, destination: both, tag: 'a1' })), { log: quietLog, env: { ...testEnv, ...vars } }),
      ).rejects.toThrow(
        `Snapshot a1 stores its volumes as chunks, which artifact:${res.prefix}-art cannot hold (one blob per volume there); not copied. Expected a new tag: a new set stores whole volumes in every destination.`,
      );
      expect(artifacts.artifacts()).toEqual([]);
      expect(readdirSync(join(root, 'blobs', 'sha256')).sort()).toEqual(files);
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
      await artifacts.stop();
    }
  });

  it('a set of schema 2 (whole-archive digest, no file index; a committed fixture) still verifies, restores, and serves as the set before', async () => {
    const root = join(res.tempDir(), 'v2-store');
    cpSync(resolve(import.meta.dirname, '../fixtures/v2-store'), root, { recursive: true });
    const location = `dir:${root}`;
    const doc = setOf(root, 'v2');
    expect(doc.schemaVersion).toBe(2);
    const c2 = doc.containers[0];
    expect(c2.volumes[0].blob.mediaType).toBe('application/vnd.container-snapshot.volume.v2.tar+chunks');
    const blobs = 1 + c2.image.layers.length + c2.volumes.reduce((n, v) => n + storedBlobs(v.blob).length + (v.metadata?.record ? 1 : 0), 0);
    expect((await verify(parseDestination(location), 'v2', {}, { log: quietLog, env: testEnv })).blobs).toBe(blobs);
    const copy = res.name('v2-copy');
    const data = res.volume('v2-copy-data');
    const r = await restore(
      parseRestoreInputs(inputs({ source: location, snapshot: 'v2', rename: `csfix-v2=${copy},csfix-v2-data=${data}`, start: 'never' })),
      {
        log: quietLog,
        env: testEnv,
      },
    );
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    res.image((await docker.getContainer(copy).inspect()).Config.Image);
    expect(await notesOf(copy)).toMatch(/^written by the set format of schema 2\n/);
    const tree = await treeDigest(copy, '/data');
    expect(tree.entries).toBe(5);
    // The next backup into the same store: a set of schema 3 beside the schema 2 one; both restore.
    await backUp({ containers: copy, destination: location, tag: 'v3' });
    expect(setOf(root, 'v3').schemaVersion).toBe(SET_SCHEMA_VERSION);
    expect(setOf(root, 'v3').containers[0].volumes[0].blob.mediaType).toBe(CHUNK_LIST_VOLUME_MEDIA_TYPE);
    res.image(`container-snapshot/${copy}:v3`);
    const again = res.name('v3-copy');
    const r3 = await restore(
      parseRestoreInputs(inputs({ source: location, snapshot: 'v3', rename: `${copy}=${again},${data}=${res.volume('v3-copy-data')}`, start: 'never' })),
      {
        log: quietLog,
        env: testEnv,
      },
    );
    expect(r3.failed, JSON.stringify(r3.containers)).toBe(0);
    expect(await treeDigest(again, '/data')).toEqual(tree);
  });

  it('a set written before chunking (schema 1, a committed fixture) still verifies and restores', async () => {
    const root = join(res.tempDir(), 'v1-store');
    cpSync(resolve(import.meta.dirname, '../fixtures/v1-store'), root, { recursive: true });
    const location = `dir:${root}`;
    expect(setOf(root, 'v1').schemaVersion).toBe(1);
    const doc = setOf(root, 'v1').containers[0];
    const blobs = 1 + doc.image.layers.length + doc.volumes.length + doc.volumes.filter((v) => v.metadata?.record).length;
    expect((await verify(parseDestination(location), 'v1', {}, { log: quietLog, env: testEnv })).blobs).toBe(blobs);
    const copy = res.name('v1-copy');
    const rename = `csfix-v1=${copy},csfix-v1-data=${res.volume('v1-copy-data')}`;
    const r = await restore(parseRestoreInputs(inputs({ source: location, snapshot: 'v1', rename, start: 'never' })), { log: quietLog, env: testEnv });
    expect(r.failed, JSON.stringify(r.containers)).toBe(0);
    res.image((await docker.getContainer(copy).inspect()).Config.Image);
    expect(await notesOf(copy)).toMatch(/^written by the set format of schema 1\n/);
    expect((await treeDigest(copy, '/data')).entries).toBe(5);
  });
});
