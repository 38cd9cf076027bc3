import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ArtifactClient } from '@actions/artifact';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ArtifactDestination } from '../../src/destinations/artifact/index.js';
import { DirDestination, parseSetRecord } from '../../src/destinations/dir/index.js';
import { setsTable } from '../../src/report.js';
import { ManifestError, SET_MEDIA_TYPE, SetDigestError, type SnapshotSet } from '../../src/snapshot/manifest.js';
import { parseCheckedSet } from '../../src/snapshot/set-parse.js';

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

function makeSet(tag: string, created: string): SnapshotSet {
  const blob = { mediaType: 'application/octet-stream', digest: sha(Buffer.from(tag)), size: 1, contentDigest: sha(Buffer.from(tag)), contentSize: 1 };
  return {
    schemaVersion: 1,
    mediaType: SET_MEDIA_TYPE,
    tag,
    created,
    tool: { name: 'container-snapshot', version: 'test' },
    source: { hostname: 'h', engine: { version: '20.10', apiVersion: '1.41', os: 'linux', arch: 'amd64' } },
    containers: [
      {
        name: 'db',
        id: 'i',
        state: 'running',
        image: { id: 'sha256:1', baseImage: 'b', config: blob, layers: [blob] },
        volumes: [],
        spec: { Config: { Env: ['MODE=primary'], Cmd: ['serve'] } } as never,
        pausedMs: 0,
      },
    ],
    failures: [],
  };
}

/** One byte of `text` after `marker` changed: what a flipped bit on disk or a quiet edit does. */
function changeByteAfter(body: Buffer, marker: string): Buffer {
  const at = body.indexOf(marker) + marker.length;
  expect(at).toBeGreaterThanOrEqual(marker.length);
  const out = Buffer.from(body);
  out[at] = out[at] === 0x78 ? 0x79 : 0x78;
  return out;
}

describe('parseCheckedSet', () => {
  const body = Buffer.from(JSON.stringify(makeSet('t1', '2026-01-01T00:00:00Z')));

  it('parses a document whose bytes match the digest and size', () => {
    expect(parseCheckedSet(body, { digest: sha(body), size: body.length }, 't1', 'dir:/s').containers[0].name).toBe('db');
  });

  it('refuses one changed byte with one line naming the snapshot, the store and the digest', () => {
    const changed = changeByteAfter(body, 'MODE=');
    expect(() => parseCheckedSet(changed, { digest: sha(body), size: body.length }, 't1', 'dir:/s')).toThrow(
      `Snapshot t1 in dir:/s: the set document does not match its digest ${sha(body)} (corrupted or changed); not used.`,
    );
  });

  it('refuses a size that is not the recorded one, even with the right digest', () => {
    expect(() => parseCheckedSet(body, { digest: sha(body), size: body.length + 1 }, 't1', 'dir:/s')).toThrow(SetDigestError);
  });

  it("refuses another set's intact document under this tag", () => {
    expect(() => parseCheckedSet(body, { digest: sha(body) }, 't2', 'dir:/s')).toThrow(/Snapshot t2 in dir:\/s: its set document is the one of snapshot t1/);
  });
});

describe('parseSetRecord', () => {
  it('reads a descriptor, and a whole document written by an earlier version as unchecked', () => {
    const d = { mediaType: SET_MEDIA_TYPE, digest: sha(Buffer.from('x')), size: 1 };
    expect(parseSetRecord(JSON.stringify(d), 'w')).toEqual({ descriptor: { ...d, annotations: undefined } });
    const legacy = JSON.stringify(makeSet('t', 'c'));
    expect(parseSetRecord(legacy, 'w')).toEqual({ legacy });
  });

  it('refuses a descriptor without a valid digest or size', () => {
    expect(() => parseSetRecord(JSON.stringify({ mediaType: SET_MEDIA_TYPE, digest: 'sha256:12', size: 1 }), 'w')).toThrow(ManifestError);
    expect(() => parseSetRecord(JSON.stringify({ mediaType: SET_MEDIA_TYPE, digest: sha(Buffer.from('x')) }), 'w')).toThrow(
      /digest sha256:<64 lowercase hex characters> and size/,
    );
    expect(() => parseSetRecord('{', 'w')).toThrow(/Invalid snapshot record at w/);
  });
});

describe('dir destination: set documents by digest', () => {
  let root: string;
  let warnings: string[];
  let dest: DirDestination;

  beforeEach(async () => {
    root = mkdtempSync(join(tmpdir(), 'csx-setdigest-'));
    warnings = [];
    dest = new DirDestination(`dir:${root}`, root, (m) => warnings.push(m));
    await dest.check('write');
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  const record = (tag: string) => JSON.parse(readFileSync(join(root, 'sets', `${tag}.json`), 'utf8')) as { digest: string; size: number };
  const docPath = (tag: string) => join(root, 'blobs', 'sha256', record(tag).digest.slice('sha256:'.length));

  it('stores the document under its digest and the tag as a descriptor of it', async () => {
    await dest.writeSet(makeSet('t1', '2026-01-01T00:00:00Z'));
    const doc = readFileSync(docPath('t1'));
    expect(record('t1')).toMatchObject({ mediaType: SET_MEDIA_TYPE, digest: sha(doc), size: doc.length });
    expect((await dest.readSet('t1'))?.containers[0].spec).toEqual({ Config: { Env: ['MODE=primary'], Cmd: ['serve'] } });
    expect(warnings).toEqual([]);
  });

  it('a changed document fails readSet; list marks it damaged; latest names it instead of taking an older set', async () => {
    await dest.writeSet(makeSet('old', '2026-01-01T00:00:00Z'));
    await dest.writeSet(makeSet('new', '2026-02-01T00:00:00Z'));
    const { digest } = record('new');
    writeFileSync(docPath('new'), changeByteAfter(readFileSync(docPath('new')), '"serve'));
    const message = `Snapshot new in dir:${root}: the set document does not match its digest ${digest} (corrupted or changed); not used.`;
    await expect(dest.readSet('new')).rejects.toThrow(message);
    await expect(dest.readSet('latest')).rejects.toThrow(message);
    const listed = await dest.listSets();
    expect(listed.map((s) => [s.tag, s.created, s.damaged])).toEqual([
      ['new', '2026-02-01T00:00:00Z', message],
      ['old', '2026-01-01T00:00:00Z', undefined],
    ]);
    expect(setsTable(listed)).toMatch(/^new +2026-02-01T00:00:00Z +\? +DAMAGED: Snapshot new/m);
    expect((await dest.readSet('old'))?.tag).toBe('old');
  });

  it("a descriptor repointed at another set's document is refused", async () => {
    await dest.writeSet(makeSet('a', '2026-01-01T00:00:00Z'));
    await dest.writeSet(makeSet('b', '2026-01-02T00:00:00Z'));
    await copyFile(join(root, 'sets', 'a.json'), join(root, 'sets', 'b.json'));
    await expect(dest.readSet('b')).rejects.toThrow(/Snapshot b in dir:.*: its set document is the one of snapshot a; not used/);
  });

  it('a descriptor naming a digest that is not stored is refused before use', async () => {
    await dest.writeSet(makeSet('t1', '2026-01-01T00:00:00Z'));
    rmSync(docPath('t1'));
    await expect(dest.readSet('t1')).rejects.toThrow(/Snapshot t1 in dir:.*: its set document sha256:[0-9a-f]{64} is missing/);
    expect((await dest.listSets())[0].damaged).toMatch(/is missing/);
  });

  it('an unreadable tag file is listed as damaged at the time it was written, so latest names it', async () => {
    await dest.writeSet(makeSet('old', '2020-01-01T00:00:00Z'));
    await dest.writeSet(makeSet('new', '2020-02-01T00:00:00Z'));
    const path = join(root, 'sets', 'new.json');
    writeFileSync(path, readFileSync(path, 'utf8').replace('"mediaType"', '"mediaTypf"'));
    const listed = await dest.listSets();
    expect(listed.map((s) => s.tag)).toEqual(['new', 'old']);
    expect(listed[0].damaged).toMatch(/^Invalid snapshot record at dir:.*sets\/new\.json: expected a descriptor/);
    await expect(dest.readSet('latest')).rejects.toThrow(/Invalid snapshot record at dir:.*sets\/new\.json/);
  });

  it('reads a set written by an earlier version (the document itself under sets/), with one warning that it is unchecked', async () => {
    await mkdir(join(root, 'sets'), { recursive: true });
    await writeFile(join(root, 'sets', 'legacy.json'), JSON.stringify(makeSet('legacy', '2026-01-01T00:00:00Z')));
    expect((await dest.readSet('legacy'))?.tag).toBe('legacy');
    expect((await dest.listSets()).map((s) => s.tag)).toEqual(['legacy']);
    expect(warnings).toEqual([expect.stringMatching(/^Snapshot legacy in dir:.* was written by an earlier version, without a digest of its set document/)]);
  });
});

/** The library's download as far as the destination sees it: the file, and whether it matched `expectedHash`. */
class FakeArtifacts {
  readonly stored = new Map<string, { id: number; body: Buffer; digest?: string; createdAt: Date }>();

  async uploadArtifact(name: string, files: string[]) {
    const body = readFileSync(files[0]);
    const id = this.stored.size + 1;
    this.stored.set(name, { id, body, digest: sha(body), createdAt: new Date(Date.UTC(2026, 0, id)) });
    return { id, size: body.length, digest: sha(body).slice(7) };
  }

  async listArtifacts() {
    return { artifacts: [...this.stored].map(([name, a]) => ({ name, id: a.id, size: a.body.length, digest: a.digest, createdAt: a.createdAt })) };
  }

  async downloadArtifact(id: number, opts: { path: string; expectedHash?: string }) {
    const [name, a] = [...this.stored].find(([, v]) => v.id === id)!;
    writeFileSync(join(opts.path, name), a.body);
    return { downloadPath: opts.path, digestMismatch: opts.expectedHash !== undefined && opts.expectedHash !== sha(a.body) };
  }

  async deleteArtifact() {
    return { id: 0 };
  }
}

describe('artifact destination: the set artifact against the digest the service recorded', () => {
  let temp: string;
  let client: FakeArtifacts;
  let warnings: string[];
  let dest: ArtifactDestination;

  beforeEach(async () => {
    temp = mkdtempSync(join(tmpdir(), 'csx-setdigest-art-'));
    client = new FakeArtifacts();
    warnings = [];
    const run = { attempt: 1, tempDir: temp, serverUrl: 'https://github.com', runtimeToken: 't', resultsUrl: 'http://x' };
    dest = new ArtifactDestination('artifact:x', 'x', client as unknown as ArtifactClient, run, undefined, undefined, (m) => warnings.push(m));
    for (const tag of ['old', 'new']) {
      const set = makeSet(tag, tag === 'old' ? '2026-01-01T00:00:00Z' : '2026-02-01T00:00:00Z');
      const blob = set.containers[0].image.config;
      (dest as unknown as { uploaded: Map<string, string> }).uploaded.set(blob.digest, `x.blob.${tag}`);
      await dest.writeSet(set);
    }
  });
  afterEach(() => rmSync(temp, { recursive: true, force: true }));

  it('a changed set artifact fails readSet and latest with the one error, and is listed as damaged', async () => {
    const a = client.stored.get('x@new.attempt-1.set.json')!;
    const digest = a.digest!;
    a.body = changeByteAfter(a.body, 'MODE=');
    const message = `Snapshot new in artifact:x: the set document does not match its digest ${digest} (corrupted or changed); not used.`;
    await expect(dest.readSet('new')).rejects.toThrow(message);
    await expect(dest.readSet('latest')).rejects.toThrow(message);
    expect((await dest.listSets()).map((s) => [s.tag, s.damaged])).toEqual([
      ['new', message],
      ['old', undefined],
    ]);
    expect(warnings).toEqual([]);
  });

  it('a set artifact with no recorded digest is read with a warning that it cannot be checked', async () => {
    client.stored.get('x@old.attempt-1.set.json')!.digest = undefined;
    expect((await dest.readSet('old'))?.tag).toBe('old');
    expect((await dest.listSets()).map((s) => s.tag)).toEqual(['new', 'old']);
    expect(warnings).toEqual([expect.stringMatching(/^Snapshot old in artifact:x: the artifact service recorded no digest/)]);
  });
});
