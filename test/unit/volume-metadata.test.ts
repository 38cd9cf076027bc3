import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { closeSync, linkSync, mkdirSync, mkdtempSync, openSync, rmSync, symlinkSync, truncateSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { MetadataMerger } from '../../src/snapshot/metadata-merge.js';
import {
  MAX_SPARSE_NAMED,
  SPARSE_MIN,
  SparseList,
  keepVolumeMetadata,
  matchedScan,
  scanSparseFiles,
  scanVolumeMetadata,
  sparseOf,
  type MetadataRecord,
} from '../../src/snapshot/volume-metadata.js';
import { parseGetfattr, runGetfattr, xattrOutput } from '../../src/snapshot/getfattr.js';
import { upperOpaqueDirs } from '../../src/snapshot/layer-upper-tar.js';
import { readCapabilities } from '../../src/snapshot/volume-tar.js';
import type { BlobDescriptor } from '../../src/snapshot/manifest.js';

const blob: BlobDescriptor = { mediaType: 'm', digest: `sha256:${'a'.repeat(64)}`, size: 1, contentDigest: `sha256:${'b'.repeat(64)}`, contentSize: 1 };

describe('parseGetfattr', () => {
  it('reads paths (escaped names included) relative to the root, and leaves out what the archive keeps', () => {
    const out = [
      '# file: /v/_data',
      'system.posix_acl_default=0sAgAA',
      '',
      '# file: /v/_data/a\\040b\\\\c',
      'security.capability=0sAQAAAg==',
      'user.one="1"',
      '',
      '# file: /v/_data/cap-only',
      'security.capability=0sAQAAAg==',
      '',
    ].join('\n');
    expect(Object.fromEntries(parseGetfattr(out, '/v/_data'))).toEqual({ '.': { 'system.posix_acl_default': 'AgAA' }, 'a b\\c': { 'user.one': 'MQ==' } });
  });
});

describe('runGetfattr', () => {
  it('gives every attribute, a link its own; an output past its limit is a failure, not a cut record nor a crash', async () => {
    const root = mkdtempSync(join(tmpdir(), 'csx-getfattr-'));
    try {
      writeFileSync(join(root, 'f'), 'x');
      execFileSync('setfattr', ['-n', 'user.one', '-v', '1', join(root, 'f')]);
      symlinkSync('f', join(root, 'link'));
      symlinkSync('/nowhere', join(root, 'dangling'));
      const run = await runGetfattr(root);
      expect(run.failed).toBeUndefined();
      expect([...parseGetfattr(run.output, root)]).toEqual([['f', { 'user.one': 'MQ==' }]]);
      // 16 bytes cannot hold its output: getfattr is stopped, and the side record says its attributes are unchecked.
      const cut = await runGetfattr(root, 16);
      expect(cut.failed?.code).toBe('ERR_CHILD_PROCESS_STDIO_MAXBUFFER');
      expect(xattrOutput(cut)).toBeInstanceOf(Error);
      // A cancel stops it: its process killed, the run a failure (an AbortError), never a rejection.
      const cancel = new AbortController();
      cancel.abort(new Error('cancelled'));
      const stopped = await runGetfattr(root, undefined, cancel.signal);
      expect(stopped.failed?.name).toBe('AbortError');
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('the getfattr runs made while a container is held', () => {
  it('stop on a cancel: the capabilities read rejects with an AbortError, the opaque directories say why', async () => {
    const root = mkdtempSync(join(tmpdir(), 'csx-getfattr-'));
    try {
      writeFileSync(join(root, 'f'), 'x');
      expect((await readCapabilities(root)).size).toBe(0);
      const cancel = new AbortController();
      cancel.abort(new Error('cancelled'));
      await expect(readCapabilities(root, undefined, { signal: cancel.signal })).rejects.toMatchObject({ name: 'AbortError' });
      await expect(readCapabilities(root, ['/f'], { signal: cancel.signal })).rejects.toMatchObject({ name: 'AbortError' });
      expect(await upperOpaqueDirs(root, cancel.signal)).toMatch(/^getfattr failed \(.*abort/i);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('scanVolumeMetadata', () => {
  it('counts sub-second times and sockets of a directory read here, and says when none can be read', async () => {
    const root = mkdtempSync(join(tmpdir(), 'csx-meta-'));
    try {
      mkdirSync(join(root, 'd'));
      writeFileSync(join(root, 'd', 'f'), 'x');
      utimesSync(join(root, 'd', 'f'), 1_577_836_800.25, 1_577_836_800.25);
      utimesSync(join(root, 'd'), 1_577_836_800, 1_577_836_800);
      utimesSync(root, 1_577_836_801, 1_577_836_801);
      const server = createServer();
      await new Promise<void>((r) => server.listen(join(root, 's.tmp'), r));
      linkSync(join(root, 's.tmp'), join(root, 's'));
      await new Promise<void>((r) => server.close(() => r()));
      utimesSync(root, 1_577_836_801, 1_577_836_801);
      const scan = await scanVolumeMetadata(root);
      expect(scan.loss).toMatchObject({ subSecondTimes: 1, sockets: 1 });
      expect(scan.record?.entries.find((e) => e.path === 'd/f')?.mtime).toBe('1577836800.250000000');
      expect(scan.record?.sockets).toEqual(['s']);
      expect(scan.root?.mtime).toBe(1_577_836_801);
      expect((await scanVolumeMetadata(join(root, 'absent'))).unreadable).toMatch(/absent is not readable here \(ENOENT\)/);
      expect((await scanVolumeMetadata(undefined)).unreadable).toBe('the engine gives no host path for it');
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it("refuses a directory here that is not the one the engine archived (another host's path)", () => {
    const root = { uid: 0, gid: 0, mode: 0o755, mtime: 10 };
    const scan = { record: { entries: [], sockets: [] }, loss: { xattrs: 0, acls: 0, subSecondTimes: 0, sockets: 0 }, root };
    expect(matchedScan(scan, { ...root }, '/p')).toBe(scan);
    expect(matchedScan(scan, { ...root, mtime: 11 }, '/p').unreadable).toMatch(/^\/p here is not the directory the engine archived/);
  });
});

describe('keepVolumeMetadata', () => {
  it('stores a side record when there is one, and words what was kept and what not', async () => {
    const stored: string[] = [];
    const store = async (content: Readable) => {
      for await (const c of content) stored.push(String(c));
      return blob;
    };
    const scan = {
      record: { entries: [{ path: 'f', mtime: '1.5' }], sockets: ['s', 't', 'u', 'v'] },
      loss: { xattrs: 0, acls: 1, subSecondTimes: 1, sockets: 4 },
      xattrsUnchecked: 'getfattr not found (Debian package attr)',
    };
    const kept = await keepVolumeMetadata(scan, store);
    expect(kept.metadata).toEqual({
      dropped: scan.loss,
      record: blob,
      notKept: '4 unix socket(s) (s, t, u, …), extended attributes and ACLs, if any (not checked: getfattr not found (Debian package attr))',
    });
    expect(kept.kept).toBe(
      "kept in a side record, as the engine's archive drops them: 1 file(s) with POSIX ACLs, 1 file(s) with sub-second modification times",
    );
    expect(JSON.parse(stored.join(''))).toEqual(scan.record);
    const none = await keepVolumeMetadata({ unreadable: 'why' }, store);
    expect(none.metadata.notKept).toMatch(
      /^extended attributes, ACLs, sub-second modification times and unix sockets .*, and which files are sparse .*; not read: why$/,
    );
  });

  it('stores the record even when it holds only the sparse files (none of them, too), and says when there were too many to name', async () => {
    const stored: string[] = [];
    const store = async (content: Readable) => {
      for await (const c of content) stored.push(String(c));
      return blob;
    };
    const loss = { xattrs: 0, acls: 0, subSecondTimes: 0, sockets: 0 };
    const none = await keepVolumeMetadata({ record: { entries: [], sockets: [], sparse: [] }, loss }, store);
    expect(none).toEqual({ metadata: { dropped: loss, record: blob } });
    expect(JSON.parse(stored.join(''))).toEqual({ entries: [], sockets: [], sparse: [] });
    const many = await keepVolumeMetadata({ record: { entries: [], sockets: [], sparse: 'many' }, loss }, store);
    expect(many.metadata.notKept).toBe(
      `the names of its sparse files (more than ${MAX_SPARSE_NAMED}: a restore makes sparse every file with zero runs of 64 KiB or more, preallocated ones too)`,
    );
  });
});

describe('sparse files in the record', () => {
  it('names a file when SPARSE_MIN or more of its size is unallocated, up to the limit, then says many', () => {
    const list = new SparseList(2);
    list.add('dense', 10 << 20, (10 << 20) / 512);
    list.add('almost', SPARSE_MIN + 4096, 4096 / 512 + 1);
    list.add('a', SPARSE_MIN, 0);
    list.add('b', 8 << 20, 8);
    expect(list.value).toEqual(['a', 'b']);
    list.add('c', 1 << 30, 0);
    expect(list.count).toBe(3);
    expect(list.value).toBe('many');
    expect(new SparseList().value).toEqual([]);
    expect(MAX_SPARSE_NAMED).toBe(10_000);
  });

  it('reads the field of a stored record: absent in older sets, and ignored unless it is a list of paths inside the volume', () => {
    expect(sparseOf({ entries: [], sockets: [], sparse: ['a', 'd/b'] })).toEqual(['a', 'd/b']);
    expect(sparseOf({ entries: [], sockets: [], sparse: [] })).toEqual([]);
    expect(sparseOf({ entries: [], sockets: [], sparse: 'many' })).toBe('many');
    expect(sparseOf({ entries: [], sockets: [] })).toBeUndefined();
    expect(sparseOf(undefined)).toBeUndefined();
    for (const bad of [['../etc/passwd'], ['/abs'], ['a', 3], [''], 'some', 7]) expect(sparseOf({ entries: [], sockets: [], sparse: bad })).toBeUndefined();
  });

  it('are found by a scan of a directory read here; a preallocated file is not', async () => {
    const root = mkdtempSync(join(tmpdir(), 'csx-sparse-'));
    try {
      mkdirSync(join(root, 'd'));
      const fd = openSync(join(root, 'd', 'holes'), 'w');
      writeSync(fd, 'x', 4 << 20);
      closeSync(fd);
      truncateSync(join(root, 'd', 'holes'), 8 << 20);
      writeFileSync(join(root, 'zeros'), Buffer.alloc(1 << 20));
      const scan = await scanVolumeMetadata(root);
      expect(scan.record?.sparse).toEqual(['d/holes']);
      expect((await scanSparseFiles(root))?.sparse).toEqual(['d/holes']);
      expect(await scanSparseFiles(join(root, 'absent'))).toBeUndefined();
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

async function archive(entries: Array<{ name: string; type?: 'file' | 'directory'; body?: string }>): Promise<Buffer> {
  const pack = tar.pack();
  for (const e of entries) pack.entry({ name: e.name, type: e.type ?? 'file', mode: 0o644, mtime: new Date(1_577_836_800_000) }, e.body ?? '');
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack as unknown as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

async function entriesOf(buf: Buffer) {
  const out: Array<{ name: string; body: string; pax?: Record<string, string> }> = [];
  const extract = tar.extract();
  Readable.from([buf]).pipe(extract);
  for await (const entry of extract) {
    let body = '';
    for await (const c of entry) body += String(c);
    const pax = entry.header.pax as Record<string, string> | undefined;
    out.push({ name: entry.header.name, body, ...(pax ? { pax } : {}) });
  }
  return out;
}

describe('MetadataMerger', () => {
  it('adds PAX mtime and xattr records before the entries the record names, keeps the rest, and sets default ACLs last', async () => {
    const long = `data/${'n'.repeat(120)}`;
    const input = await archive([
      { name: 'data', type: 'directory' },
      { name: 'data/f', body: 'rows\n' },
      { name: long, body: 'long\n' },
      { name: 'data/untouched', body: 'same\n' },
    ]);
    const record: MetadataRecord = {
      entries: [
        { path: '.', mtime: '1577836800.500000000', xattrs: { 'system.posix_acl_default': Buffer.from('acl').toString('base64') } },
        { path: 'f', mtime: '1577836800.123456789', xattrs: { 'user.one': Buffer.from('1').toString('base64') } },
        { path: 'n'.repeat(120), xattrs: { 'user.two': Buffer.from('2').toString('base64') } },
      ],
      sockets: [],
    };
    const merger = new MetadataMerger(record);
    const chunks: Buffer[] = [];
    // Fed in small pieces: headers and data split across chunks.
    const source = Readable.from(Array.from({ length: Math.ceil(input.length / 300) }, (_, i) => input.subarray(i * 300, (i + 1) * 300)));
    for await (const c of source.pipe(merger)) chunks.push(c as Buffer);
    const out = await entriesOf(Buffer.concat(chunks));
    expect(out.map((e) => [e.name, e.body])).toEqual([
      ['data', ''],
      ['data/f', 'rows\n'],
      [long, 'long\n'],
      ['data/untouched', 'same\n'],
      ['data', ''],
    ]);
    expect(out[0].pax).toEqual({ mtime: '1577836800.500000000' });
    expect(out[1].pax).toEqual({ mtime: '1577836800.123456789', 'SCHILY.xattr.user.one': '1' });
    expect(out[2].pax).toMatchObject({ path: long, 'SCHILY.xattr.user.two': '2' });
    expect(out[3].pax).toBeUndefined();
    expect(out[4].pax).toEqual({ path: 'data', 'SCHILY.xattr.system.posix_acl_default': 'acl', mtime: '1577836800.500000000' });
    expect(merger.merged).toBe(3);
  });
});
