import { Transform, type TransformCallback } from 'node:stream';
import { checksumOk, EXTENSION_TYPES, headerSum, memberSize, paddedSize, TAR_BLOCK, typeFlag } from './tar-header.js';

/** The largest extended header (pax `x`/`g`, GNU `L`/`K`) taken, in bytes: tar-stream's limit (extract.js MAX_HEADER_SIZE). */
const MAX_EXTENSION = 4 << 20;
/** Type flags of members with no data, whatever their size field (Go archive/tar isHeaderOnlyType): hard link, symlink, devices, directory, FIFO. */
const HEADER_ONLY_TYPES = '123456';
/** Bytes of a header's magic and version fields (offset 257): POSIX ustar, and GNU tar's own (POSIX.1-2017 pax, ustar "magic"). */
const USTAR_MAGIC = Buffer.from('ustar\0', 'latin1');
const GNU_MAGIC = Buffer.from('ustar  \0', 'latin1');

/**
 * Passes a tar stream through unchanged while walking its headers, and fails if it is not a whole
 * archive: the engine can end an archive response early without an error. Each piece goes on as
 * the same Buffer, and nothing of it is kept once it is passed on (a header split across pieces is
 * copied), so the reader at the stream's end may hand the piece back to be read into again
 * (mib-buffers.ts). tar-stream's extract, used here before, keeps the pieces it was given in its
 * queue and its entries' streams for a while after: 1 byte of garbage per byte checked.
 *
 * What is checked: each header's checksum and magic (ustar, or GNU's), as tar-stream 3 checks
 * them (headers.js decode); an extended header of at most 4 MiB (its extract.js limit); and each
 * member's data taken as Go's archive/tar reads it (reader.go), the engine being the one that
 * writes and reads these archives: a pax `size` record stands for the next member's size field,
 * and a header-only member (a link, a device, a directory, a FIFO; a pre-POSIX regular file
 * named with a trailing slash is a directory) has no data whatever its size field says. All-zero
 * blocks are skipped. At the end, no member or header may be cut short, the archive must end with
 * the end-of-archive marker (zero blocks: POSIX.1-2017 pax, ustar; Go's tar.Writer.Close, the
 * engine's, and tar-writer.ts write two), so that a response cut between two members is caught too,
 * and there must be at least one member (unless `emptyOk`). Errors: `WHAT: the engine's archive is not a whole tar
 * (WHY)`, `WHAT: the engine sent an empty archive`.
 */
export class TarChecker extends Transform {
  /** Offset in the stream of the next header. */
  private next = 0;
  /** Bytes of the stream seen. */
  private seen = 0;
  private readonly head = Buffer.alloc(TAR_BLOCK);
  private headLen = 0;
  /** A pax `x` header's data being gathered: `got` bytes of it so far. */
  private extension?: { data: Buffer; got: number };
  /** The size a pax `x` header gave for the next member. */
  private paxSize?: number;
  private entries = 0;
  /** Whether the last header block seen was all zeros: the end-of-archive marker. */
  private atEnd = false;

  /** `emptyOk`: an archive of no member is whole (a writable layer that changed nothing); a volume's archive holds its root at least. */
  constructor(
    private readonly what: string,
    private readonly emptyOk = false,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    const at = this.seen;
    this.seen += chunk.length;
    const why = this.walk(chunk, at);
    if (why) return done(this.broken(why));
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    if (this.headLen > 0 || this.extension || this.seen < this.next) return done(this.broken('it ends inside a member'));
    if (this.entries === 0 && !this.emptyOk) return done(new Error(`${this.what}: the engine sent an empty archive`));
    if (!this.atEnd) return done(this.broken('it ends without the end-of-archive marker, cut short between two members'));
    done();
  }

  private broken(why: string): Error {
    return new Error(`${this.what}: the engine's archive is not a whole tar (${why})`);
  }

  /** Reads the headers (and extended headers' data) in `chunk`, the stream's bytes from offset `at`; why the archive is broken, if it is. */
  private walk(chunk: Buffer, at: number): string | undefined {
    const end = at + chunk.length;
    for (;;) {
      const ext = this.extension;
      if (ext) {
        // The pax header's data starts right after its header (this.next points past its padding).
        const from = this.next - paddedSize(ext.data.length) + ext.got;
        if (from >= end) return undefined;
        const n = Math.min(ext.data.length - ext.got, end - from);
        chunk.copy(ext.data, ext.got, from - at, from - at + n);
        ext.got += n;
        if (ext.got < ext.data.length) return undefined;
        this.extension = undefined;
        this.paxSize = paxRecordSize(ext.data) ?? this.paxSize;
        continue;
      }
      const want = this.next + this.headLen;
      if (want >= end) return undefined;
      const n = Math.min(TAR_BLOCK - this.headLen, end - want);
      chunk.copy(this.head, this.headLen, want - at, want - at + n);
      this.headLen += n;
      if (this.headLen < TAR_BLOCK) return undefined;
      this.headLen = 0;
      const why = this.header(this.next);
      if (why) return why;
    }
  }

  /** Takes the header block just read (in `head`), at stream offset `offset`. */
  private header(offset: number): string | undefined {
    const h = this.head;
    // A block of zeros (the checksum field aside): the end-of-archive marker, or padding after it.
    if (headerSum(h) === 8 * 0x20) {
      this.next = offset + TAR_BLOCK;
      this.atEnd = true;
      return undefined;
    }
    this.atEnd = false;
    if (!checksumOk(h)) return `a header's checksum is wrong at byte ${offset}`;
    if (!h.subarray(257, 263).equals(USTAR_MAGIC) && !h.subarray(257, 265).equals(GNU_MAGIC)) return `a header of unknown format at byte ${offset}`;
    const type = typeFlag(h);
    const size = memberSize(h);
    if (!Number.isSafeInteger(size)) return `a header with no valid size at byte ${offset}`;
    if (EXTENSION_TYPES.includes(type)) {
      if (size > MAX_EXTENSION) return `an extended header of ${size} bytes at byte ${offset}`;
      this.next = offset + TAR_BLOCK + paddedSize(size);
      // Only a pax header's records matter here (its `size`); the others' data is skipped.
      if (type === 'x' && size > 0) this.extension = { data: Buffer.alloc(size), got: 0 };
      return undefined;
    }
    this.entries++;
    const nul = h.subarray(0, 100).indexOf(0);
    const nameEnd = nul === -1 ? 100 : nul;
    const headerOnly = HEADER_ONLY_TYPES.includes(type) || (h[156] === 0 && nameEnd > 0 && h[nameEnd - 1] === 0x2f);
    const data = headerOnly ? 0 : (this.paxSize ?? size);
    this.paxSize = undefined;
    if (!Number.isSafeInteger(data) || data < 0) return `a header with no valid size at byte ${offset}`;
    this.next = offset + TAR_BLOCK + paddedSize(data);
    return undefined;
  }
}

/** The `size` record of pax extended header data (POSIX.1-2017 pax, "pax Extended Header": records `LEN KEY=VALUE\n`), in bytes; undefined when it has none. */
function paxRecordSize(data: Buffer): number | undefined {
  let size: number | undefined;
  for (let at = 0; at < data.length;) {
    const space = data.indexOf(0x20, at);
    if (space === -1) break;
    const len = Number.parseInt(data.toString('latin1', at, space), 10);
    if (!(len > 0) || at + len > data.length) break;
    const record = data.toString('utf8', space + 1, at + len - 1);
    const eq = record.indexOf('=');
    if (eq !== -1 && record.slice(0, eq) === 'size') size = Number.parseInt(record.slice(eq + 1), 10);
    at += len;
  }
  return size;
}
