import { Transform, pipeline, type Readable, type TransformCallback } from 'node:stream';
import type { Destination } from '../destinations/types.js';
import { SET_SCOPE } from '../destinations/types.js';
import type { Engine } from '../engine/engine.js';
import { readSmall } from '../util/streams.js';
import { openContent } from './blobs.js';
import type { BlobDescriptor } from './manifest.js';
import type { MetadataRecord } from './volume-metadata.js';

const BLOCK = 512;
const DEFAULT_ACL = 'system.posix_acl_default';

interface Held {
  size: number;
  left: number;
  chunks: Buffer[];
}

type Pax = Map<string, Buffer>;

function parsePax(data: Buffer): Pax {
  const out: Pax = new Map();
  let at = 0;
  while (at < data.length) {
    const space = data.indexOf(0x20, at);
    const len = parseInt(data.subarray(at, space).toString('latin1'), 10);
    if (space < 0 || !(len > 0)) break;
    const record = data.subarray(space + 1, at + len - 1);
    const eq = record.indexOf(0x3d);
    out.set(record.subarray(0, eq).toString('utf8'), record.subarray(eq + 1));
    at += len;
  }
  return out;
}

function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`, 'utf8'), value, Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

function octal(buf: Buffer, from: number, len: number): number {
  if (buf[from] & 0x80) {
    // base-256 (GNU), for sizes beyond 8 GiB
    let n = buf[from] & 0x7f;
    for (let i = from + 1; i < from + len; i++) n = n * 256 + buf[i];
    return n;
  }
  return parseInt(
    buf
      .subarray(from, from + len)
      .toString('latin1')
      .replace(/\0.*$/s, '')
      .trim() || '0',
    8,
  );
}

function text(buf: Buffer, from: number, len: number): string {
  const field = buf.subarray(from, from + len);
  const end = field.indexOf(0);
  return field.subarray(0, end < 0 ? len : end).toString('utf8');
}

/** A USTAR header block of type 'x' (PAX, POSIX.1-2001) announcing `size` bytes of records. */
function paxHeader(size: number): Buffer {
  const h = Buffer.alloc(BLOCK);
  h.write('PaxHeaders/entry', 0, 'latin1');
  h.write('0000644\0', 100, 'latin1');
  h.write('0000000\0', 108, 'latin1');
  h.write('0000000\0', 116, 'latin1');
  h.write(`${size.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  h.write('00000000000\0', 136, 'latin1');
  h.write('x', 156, 'latin1');
  h.write('ustar\0' + '00', 257, 'latin1');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return h;
}

function padded(data: Buffer): Buffer {
  const rest = data.length % BLOCK;
  return rest === 0 ? data : Buffer.concat([data, Buffer.alloc(BLOCK - rest)]);
}

/**
 * Merges a side record into the engine's archive of a volume on its way back: before each entry the
 * record names, one PAX header (merged with any the archive already has, since a reader keeps only
 * the last) carries its sub-second `mtime` and `SCHILY.xattr.*` attributes, which `PUT …/archive`
 * applies (Engine 20.10, measured). Entries are matched by their path below the archive's top
 * directory (the volume's root, '.'). Everything else passes through unchanged.
 */
export class MetadataMerger extends Transform {
  private readonly byPath: Map<string, MetadataRecord['entries'][number]>;
  private pending: Buffer = Buffer.alloc(0);
  /** Bytes of entry data (with padding) still to pass through before the next header. */
  private dataLeft = 0;
  private pax: Pax | undefined;
  /** The data of a PAX ('x') or GNU long-name ('L') header being read: `size` bytes in `left` more padded bytes. */
  private paxData: Held | undefined;
  private longName: Held | undefined;
  private gnuName: string | undefined;
  private ended = false;
  private deferred: Array<{ header: Buffer; name: string; acl: Buffer; mtime?: string }> = [];
  /** Entries of the record that were found in the archive. */
  merged = 0;

  constructor(record: MetadataRecord) {
    super();
    this.byPath = new Map(record.entries.map((e) => [e.path, e]));
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    try {
      this.consume();
      done();
    } catch (err) {
      done(err as Error);
    }
  }

  override _flush(done: TransformCallback): void {
    if (!this.ended) this.flushDeferred();
    if (this.pending.length > 0) this.push(this.pending);
    done();
  }

  /** The directories with a default ACL once more, with only that ACL (and their time): a later entry of a path updates it. */
  private flushDeferred(): void {
    for (const d of this.deferred) {
      this.pax = new Map([
        ['path', Buffer.from(d.name)],
        [`SCHILY.xattr.${DEFAULT_ACL}`, d.acl],
      ]);
      if (d.mtime) this.pax.set('mtime', Buffer.from(d.mtime));
      this.flushPax();
      this.push(d.header);
    }
    this.deferred = [];
  }

  private consume(): void {
    while (this.pending.length > 0) {
      if (this.ended) {
        this.push(this.pending);
        this.pending = Buffer.alloc(0);
        return;
      }
      if (this.dataLeft > 0) {
        const n = Math.min(this.dataLeft, this.pending.length);
        this.push(this.pending.subarray(0, n));
        this.pending = this.pending.subarray(n);
        this.dataLeft -= n;
        continue;
      }
      const held = this.paxData ?? this.longName;
      if (held) {
        const n = Math.min(held.left, this.pending.length);
        held.chunks.push(this.pending.subarray(0, n));
        this.pending = this.pending.subarray(n);
        held.left -= n;
        if (held.left === 0) this.endHeld();
        continue;
      }
      if (this.pending.length < BLOCK) return;
      const header = this.pending.subarray(0, BLOCK);
      this.pending = this.pending.subarray(BLOCK);
      this.header(header);
    }
  }

  private endHeld(): void {
    if (this.paxData) {
      const data = Buffer.concat(this.paxData.chunks);
      this.pax = new Map([...(this.pax ?? []), ...parsePax(data.subarray(0, this.paxData.size))]);
      this.paxData = undefined;
    } else if (this.longName) {
      const data = Buffer.concat(this.longName.chunks);
      this.push(data);
      this.gnuName = text(data, 0, this.longName.size);
      this.longName = undefined;
    }
  }

  private header(header: Buffer): void {
    if (header.every((b) => b === 0)) {
      this.flushPax();
      this.flushDeferred();
      this.push(header);
      this.ended = true;
      return;
    }
    const type = String.fromCharCode(header[156] || 0x30);
    const size = octal(header, 124, 12);
    const blocks = Math.ceil(size / BLOCK) * BLOCK;
    if (type === 'x') {
      this.paxData = { size, left: blocks, chunks: [] };
      if (blocks === 0) this.endHeld();
      return;
    }
    if (type === 'L') {
      this.push(header);
      this.longName = { size, left: blocks, chunks: [] };
      if (blocks === 0) this.endHeld();
      return;
    }
    if (type === 'K') {
      this.push(header);
      this.dataLeft = blocks;
      return;
    }
    if (type === 'g') {
      this.push(header);
      this.dataLeft = blocks;
      return;
    }
    const paxSize = this.pax?.get('size');
    const dataSize = paxSize ? Number(paxSize.toString('latin1')) : size;
    const name = this.pax?.get('path')?.toString('utf8') ?? this.gnuName ?? [text(header, 345, 155), text(header, 0, 100)].filter(Boolean).join('/');
    const entry = this.byPath.get(relative(name));
    if (entry) {
      this.merged++;
      const pax = this.pax ?? new Map<string, Buffer>();
      if (entry.mtime) pax.set('mtime', Buffer.from(entry.mtime));
      for (const [k, v] of Object.entries(entry.xattrs ?? {})) {
        // A directory's default ACL would be inherited by what the archive creates in it after: set it last.
        if (k === DEFAULT_ACL && type === '5') this.deferred.push({ header: Buffer.from(header), name, acl: Buffer.from(v, 'base64'), mtime: entry.mtime });
        else pax.set(`SCHILY.xattr.${k}`, Buffer.from(v, 'base64'));
      }
      this.pax = pax;
    }
    this.flushPax();
    this.gnuName = undefined;
    this.push(header);
    // Links and directories carry no data whatever their size field says.
    this.dataLeft = type === '1' || type === '2' || type === '5' ? 0 : Math.ceil(dataSize / BLOCK) * BLOCK;
  }

  private flushPax(): void {
    if (!this.pax) return;
    const records = Buffer.concat([...this.pax].map(([k, v]) => paxRecord(k, v)));
    this.push(paxHeader(records.length));
    this.push(padded(records));
    this.pax = undefined;
  }
}

/** The path of an archive entry below its top directory: 'data/a/b' → 'a/b', 'data/' → '.'. */
function relative(name: string): string {
  const clean = name.replace(/^\.\//, '').replace(/\/+$/, '');
  const slash = clean.indexOf('/');
  return slash < 0 ? '.' : clean.slice(slash + 1);
}

/** Reads a volume's side record from a set's source, both of its checksums checked. */
export async function readMetadataRecord(source: Destination, blob: BlobDescriptor, what: string): Promise<MetadataRecord> {
  const body = await readSmall(await openContent(source, SET_SCOPE, blob, `${what} side record`), 1 << 30);
  return JSON.parse(body.toString('utf8')) as MetadataRecord;
}

/**
 * Puts a volume's archive into a (helper) container at `path`, the side record merged in when there
 * is one. Returns how many of the record's entries were found in the archive.
 */
export async function putVolumeArchive(engine: Engine, containerId: string, path: string, content: Readable, record?: MetadataRecord): Promise<number> {
  if (!record || record.entries.length === 0) {
    await engine.putArchive(containerId, path, content);
    return 0;
  }
  const merger = mergedWith(content, record);
  await engine.putArchive(containerId, path, merger);
  return merger.merged;
}

/**
 * `content` (a volume's archive) with its side record merged in. The merger fails when `content`
 * fails, also when it failed before this call (stream.pipeline, not pipe(): a failure that came
 * before the listeners would otherwise leave the merger, and the engine reading it, waiting).
 */
export function mergedWith(content: Readable, record: MetadataRecord): MetadataMerger {
  return pipeline(content, new MetadataMerger(record), () => undefined);
}
