import { afterEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { DirDestination } from '../../src/destinations/dir/destination.js';
import { SET_SCOPE } from '../../src/destinations/types.js';
import { ChecksumError } from '../../src/oci/digest.js';
import { storeBlob } from '../../src/snapshot/blobs.js';
import { HostStoreError, chainIds, hostLayerSize, hostLayerTar, hostLayers, imageStoreRoot, readHostConfig } from '../../src/snapshot/host-image-store.js';
import { drain, readSmall } from '../../src/util/streams.js';

const readAll = (stream: NodeJS.ReadableStream) => readSmall(stream as never, 1 << 30);

const temps: string[] = [];
afterEach(() => {
  for (const t of temps.splice(0)) rmSync(t, { recursive: true, force: true });
});

const sha256 = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A tar made by tar-stream's pack from `entries` (a file's data given, any other type without). */
async function packTar(entries: Array<{ header: Partial<tar.Header> & { name: string }; data?: Buffer }>): Promise<Buffer> {
  const pack = tar.pack();
  const out = readAll(pack as never);
  for (const e of entries)
    await new Promise<void>((res, rej) => pack.entry(e.header as tar.Header, e.data ?? Buffer.alloc(0), (err) => (err ? rej(err) : res())));
  pack.finalize();
  return out;
}

/**
 * tar-split's record of `archive` (github.com/vbatts/tar-split tar/asm: each regular file's data a
 * file entry, every other byte — headers, PAX records, padding, the end — a segment), and the
 * files' data written under `diff`, as the engine's store holds a layer. `rawNames`: names given
 * as name_raw (base64 bytes), as tar-split writes names that are not UTF-8.
 */
function splitTar(archive: Buffer, diff: string, rawNames = new Set<string>()): string {
  const lines: string[] = [];
  let pending: Buffer[] = [];
  const segment = () => {
    if (pending.length) lines.push(JSON.stringify({ type: 2, payload: Buffer.concat(pending).toString('base64'), position: lines.length }));
    pending = [];
  };
  let at = 0;
  let paxName: string | undefined;
  while (at < archive.length) {
    const header = archive.subarray(at, at + 512);
    if (header.every((b) => b === 0)) {
      pending.push(archive.subarray(at));
      break;
    }
    const size = parseInt(header.toString('latin1', 124, 136).replace(/\0.*$/, '').trim() || '0', 8);
    const type = String.fromCharCode(header[156]);
    const prefix = header.toString('utf8', 345, 500).replace(/\0.*$/s, '');
    const short = header.toString('utf8', 0, 100).replace(/\0.*$/s, '');
    const data = archive.subarray(at + 512, at + 512 + size);
    const padded = Math.ceil(size / 512) * 512;
    pending.push(header);
    if (type === 'x') {
      paxName = /\d+ path=(.*)\n/.exec(data.toString('utf8'))?.[1];
      pending.push(archive.subarray(at + 512, at + 512 + padded));
    } else {
      const name = paxName ?? (prefix ? `${prefix}/${short}` : short);
      paxName = undefined;
      segment();
      lines.push(
        JSON.stringify({
          type: 1,
          ...(rawNames.has(name) ? { name_raw: Buffer.from(name).toString('base64') } : { name }),
          size,
          payload: null,
          position: lines.length,
        }),
      );
      if (type === '0' && size > 0) {
        mkdirSync(dirname(join(diff, name)), { recursive: true });
        writeFileSync(join(diff, name), data);
      }
      pending.push(archive.subarray(at + 512 + size, at + 512 + padded));
    }
    at += 512 + padded;
  }
  segment();
  return `${lines.join('\n')}\n`;
}

/** A store at a new root holding `layers` (tar archives, bottom first) as the engine's overlay2 store does; returns the root and diff IDs. */
function makeStore(layers: Buffer[], rawNames?: Set<string>): { root: string; diffIds: string[]; diffs: string[] } {
  const root = mkdtempSync(join(tmpdir(), 'cs-host-store-'));
  temps.push(root);
  const diffIds = layers.map((l) => sha256(l));
  const chains = chainIds(diffIds);
  const diffs: string[] = [];
  for (const [i, layer] of layers.entries()) {
    const cacheId = `cache${i}`;
    const diff = join(root, 'overlay2', cacheId, 'diff');
    mkdirSync(diff, { recursive: true });
    const dir = join(root, 'image', 'overlay2', 'layerdb', 'sha256', chains[i].slice(7));
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'cache-id'), cacheId);
    writeFileSync(join(dir, 'tar-split.json.gz'), gzipSync(splitTar(layer, diff, rawNames)));
    diffs.push(diff);
  }
  return { root, diffIds, diffs };
}

const mtime = new Date('2020-01-02T03:04:05Z');
/** A layer of every kind of entry tar-split records: directories, files (empty, one byte, a block, several blocks), links, a long and a non-ASCII name. */
async function sampleLayer(): Promise<Buffer> {
  return packTar([
    { header: { name: 'etc/', type: 'directory', mode: 0o755, mtime } },
    { header: { name: 'etc/empty', size: 0, mode: 0o644, mtime } },
    { header: { name: 'etc/one', size: 1, mode: 0o600, uid: 1000, gid: 1000, mtime }, data: Buffer.from('x') },
    { header: { name: 'etc/block', size: 512, mode: 0o644, mtime }, data: Buffer.alloc(512, 7) },
    { header: { name: 'bin/big', size: 3 << 20, mode: 0o755, mtime }, data: Buffer.alloc(3 << 20, 'abc') },
    { header: { name: 'bin/link', type: 'symlink', linkname: 'big', mtime } },
    { header: { name: 'bin/hard', type: 'link', linkname: 'bin/big', mtime } },
    { header: { name: `deep/${'d'.repeat(120)}/file`, size: 5, mode: 0o644, mtime }, data: Buffer.from('deep!') },
    { header: { name: 'etc/naïve', size: 3, mode: 0o644, mtime }, data: Buffer.from('ünï') },
  ]);
}

describe("a layer put together from the engine's store (tar-split and the diff directory)", () => {
  it('is the archive the store recorded, byte for byte, and its length is told beforehand', async () => {
    const archive = await sampleLayer();
    const { root, diffIds } = makeStore([await packTar([{ header: { name: 'a', size: 1, mtime }, data: Buffer.from('a') }]), archive], new Set(['etc/naïve']));
    const layers = await hostLayers(root, diffIds);
    expect(layers.map((l) => l.diffId)).toEqual(diffIds);
    const out = await readAll(hostLayerTar(layers[1]));
    expect(out.equals(archive)).toBe(true);
    expect(sha256(out)).toBe(diffIds[1]);
    expect(await hostLayerSize(layers[1])).toBe(archive.length);
  });

  it("chain IDs follow the image spec: the first is its diff ID, each next the digest of '<below> <diff ID>'", () => {
    const a = sha256('a');
    const b = sha256('b');
    const c = sha256('c');
    const [ca, cb, cc] = chainIds([a, b, c]);
    expect(ca).toBe(a);
    expect(cb).toBe(sha256(`${a} ${b}`));
    expect(cc).toBe(sha256(`${cb} ${c}`));
  });

  it('fails with a HostStoreError where a file is not as recorded: another size, gone, a FIFO (no wait)', async () => {
    const archive = await sampleLayer();
    for (const spoil of [
      (diff: string) => writeFileSync(join(diff, 'etc/one'), 'xy'),
      (diff: string) => rmSync(join(diff, 'bin/big')),
      (diff: string) => {
        rmSync(join(diff, 'etc/block'));
        execFileSync('mkfifo', [join(diff, 'etc/block')]);
      },
    ]) {
      const { root, diffIds, diffs } = makeStore([archive]);
      spoil(diffs[0]);
      const [layer] = await hostLayers(root, diffIds);
      await expect(drain(hostLayerTar(layer))).rejects.toBeInstanceOf(HostStoreError);
    }
  });

  it('reads a recorded name with .. inside the diff directory, never beside it', async () => {
    const { root, diffIds } = makeStore([await packTar([{ header: { name: 'a', size: 1, mtime }, data: Buffer.from('a') }])]);
    const [layer] = await hostLayers(root, diffIds);
    writeFileSync(join(root, 'outside'), 'a');
    const lines = [JSON.stringify({ type: 1, name: '../../../outside', size: 1, payload: null, position: 0 })];
    writeFileSync(layer.tarSplit, gzipSync(lines.join('\n')));
    await expect(drain(hostLayerTar(layer))).rejects.toThrow(/cache0\/diff\/outside: ENOENT/);
  });

  it('a tar-split file that does not parse, and a layer the store lacks, are HostStoreErrors', async () => {
    const { root, diffIds } = makeStore([await sampleLayer()]);
    await expect(hostLayers(root, [...diffIds, sha256('missing')])).rejects.toThrow(/layer 2 \(sha256:[0-9a-f]{64}\) is not readable/);
    const [layer] = await hostLayers(root, diffIds);
    writeFileSync(layer.tarSplit, gzipSync('{"type":2,"payload":"AAAA"}\nnot json\n'));
    await expect(drain(hostLayerTar(layer))).rejects.toBeInstanceOf(HostStoreError);
    await expect(hostLayerSize(layer)).rejects.toBeInstanceOf(HostStoreError);
  });

  it('a layer whose files changed but kept their sizes is refused by its diff ID before any destination keeps it', async () => {
    const archive = await sampleLayer();
    const { root, diffIds, diffs } = makeStore([archive]);
    writeFileSync(join(diffs[0], 'etc/one'), 'y');
    const [layer] = await hostLayers(root, diffIds);
    const dir = mkdtempSync(join(tmpdir(), 'cs-host-store-dest-'));
    temps.push(dir);
    const dest = new DirDestination('dir:t', dir);
    await dest.check('write');
    await expect(
      storeBlob(hostLayerTar(layer), [{ dest, scope: SET_SCOPE }], 'application/vnd.oci.image.layer.v1.tar+zstd', undefined, layer.diffId),
    ).rejects.toBeInstanceOf(ChecksumError);
    // Once every accepted blob is in place (the group commit a set document waits for), none is there and nothing is left in .tmp/.
    await (dest as unknown as { blobs: { flush(): Promise<void> } }).blobs.flush();
    expect(readdirSync(join(dir, 'blobs', 'sha256'))).toEqual([]);
    expect(readdirSync(join(dir, '.tmp'))).toEqual([]);
  });

  it("never opens a file through a symlink of the layer: a directory symlink's target outside is refused before any open", async () => {
    const { root, diffIds, diffs } = makeStore([await packTar([{ header: { name: 'd/x', size: 5, mtime }, data: Buffer.from('inner') }])]);
    // The layer's d is a symlink to a directory beside it (as a layer holding `d -> /dev` would be), holding an x of the recorded size.
    const outside = join(root, 'outside');
    mkdirSync(outside);
    writeFileSync(join(outside, 'x'), 'outer');
    rmSync(join(diffs[0], 'd'), { recursive: true });
    symlinkSync(outside, join(diffs[0], 'd'));
    const [layer] = await hostLayers(root, diffIds);
    await expect(drain(hostLayerTar(layer))).rejects.toThrow(/diff\/d is not a directory of the layer/);
  });

  it("stops within a MiB of a large file once cancelled, with the signal's reason", async () => {
    const { root, diffIds } = makeStore([await packTar([{ header: { name: 'big', size: 64 << 20, mtime }, data: Buffer.alloc(64 << 20, 1) }])]);
    const [layer] = await hostLayers(root, diffIds);
    const abort = new AbortController();
    const stream = hostLayerTar(layer, abort.signal);
    let read = 0;
    const reason = new Error('cancelled by the test');
    const done = (async () => {
      for await (const piece of stream) {
        read += (piece as Buffer).length;
        if (read >= 4 << 20 && !abort.signal.aborted) abort.abort(reason);
      }
    })();
    await expect(done).rejects.toBe(reason);
    expect(read).toBeLessThan(16 << 20);
  });

  it("finds the data root from an overlay2 directory, and reads a config only when its digest is the image's ID", async () => {
    expect(imageStoreRoot({ Name: 'overlay2', Data: { UpperDir: '/var/lib/docker/overlay2/abc/diff' } })).toBe('/var/lib/docker');
    expect(imageStoreRoot({ Name: 'overlay2', Data: { UpperDir: '/srv/x/abc/diff' } })).toBeUndefined();
    expect(imageStoreRoot({ Name: 'btrfs', Data: { UpperDir: '/var/lib/docker/overlay2/abc/diff' } })).toBeUndefined();
    expect(imageStoreRoot(undefined)).toBeUndefined();
    const root = mkdtempSync(join(tmpdir(), 'cs-host-store-'));
    temps.push(root);
    const content = join(root, 'image', 'overlay2', 'imagedb', 'content', 'sha256');
    mkdirSync(content, { recursive: true });
    const config = Buffer.from('{"rootfs":{"type":"layers","diff_ids":[]}}');
    const id = sha256(config);
    writeFileSync(join(content, id.slice(7)), config);
    expect((await readHostConfig(root, id))?.equals(config)).toBe(true);
    const other = sha256('other');
    writeFileSync(join(content, other.slice(7)), config);
    expect(await readHostConfig(root, other)).toBeUndefined();
  });
});
