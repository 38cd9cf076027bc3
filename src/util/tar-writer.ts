/**
 * A tar archive written entry by entry into a Readable, with the bytes tar-stream's pack writes
 * for the same headers (tar-stream 3.x `pack.js` and `headers.js`: ustar headers, a PAX extended
 * header named `PaxHeader` where a name is not ASCII or too long or records are given, padding to
 * 512-byte blocks, two zero blocks at the end; POSIX.1-2017 pax "ustar Interchange Format" and
 * "pax Extended Header"), so that archives written here and by tar-stream before cut into the same
 * chunks. Headers, small entries' data and padding are written into one batch buffer and handed on
 * a MiB at a time: a walk of 12,500 small files made ~40,000 pieces through tar-stream (a stream
 * object per entry, a buffer per header), each a turn of every stream after it.
 */
import { Readable } from 'node:stream';
import { MIB_BUFFER, takeMiB } from './mib-buffers.js';
import { isZeroBytes, ZERO_BYTES_MAX, zeroBytes } from './zeros.js';

/** An entry's header, as tar-stream's pack takes it. `pax`: records written in a PAX header before it. */
export interface TarHeader {
  name: string;
  type?: 'file' | 'link' | 'symlink' | 'character-device' | 'block-device' | 'directory' | 'fifo';
  /** st_mode; only its permission bits (0o7777) are written. 0 or absent: 0o755 for a directory, 0o644 otherwise (tar-stream's defaults). */
  mode?: number;
  uid?: number;
  gid?: number;
  /** Data bytes (0 for anything but a file). */
  size?: number;
  /** Written in whole seconds (truncated to 32 bits, as tar-stream does); absent: now. */
  mtime?: Date;
  linkname?: string;
  uname?: string;
  gname?: string;
  devmajor?: number;
  devminor?: number;
  pax?: Record<string, string>;
}

/** Pieces of data at least this long (bytes) are handed on as they are, not copied into a batch. */
export const TAR_COPY_MAX = 64 << 10;
/**
 * Zero pieces (views of zeros.ts zeroBytes) at least this long (bytes: the spool's block) are handed
 * on as they are, however short: the spool leaves them as holes without a compare. Shorter ones are
 * still copied with their neighbours (a hole is made of whole blocks; `skip` hands on even a short
 * last piece, which the spool writes or leaves out alike): in the benchmark's warm
 * backup, 16.5 MB of the zeros standing for its 12,142 files read after the hold, in 11,096 pieces.
 */
export const TAR_HOLE_MIN = 4096;
/** Bytes of a batch (headers, padding and pieces shorter than TAR_COPY_MAX, copied together; data read in place by `room`). */
const BATCH = MIB_BUFFER;
const BLOCK = 512;
/** Least room (bytes) `room` gives: less free in the batch hands it on first (a read of a few bytes per call would cost a syscall each). */
const ROOM_MIN = 64 << 10;
const END = Buffer.alloc(2 * BLOCK);

/** tar-stream headers.js toTypeflag. */
const TYPEFLAG: Record<NonNullable<TarHeader['type']>, number> = {
  file: 0,
  link: 1,
  symlink: 2,
  'character-device': 3,
  'block-device': 4,
  directory: 5,
  fifo: 6,
};
const PAX_TYPEFLAG = 72; // 'x'

/**
 * Writes entries into `stream`. Each method resolves once the archive's reader has room again
 * (at once while it has), and rejects, as every later call does, with the error the stream was
 * destroyed with (its reader failed: a full disk, a closed request).
 */
export class TarWriter {
  readonly stream: Readable;
  private batch = takeMiB();
  private used = 0;
  /** The reader is behind (the stream's buffer is full): the next method waits for it to read. */
  private behind = false;
  private waiting?: { promise: Promise<void>; resolve: () => void; reject: (err: Error) => void };
  private failed?: Error;
  private ended = false;
  /** Bytes handed to the stream so far (batches and long pieces). */
  private pushed = 0;

  /** `highWaterMark`: bytes the reader may fall behind before a method waits for it. */
  constructor(highWaterMark = 4 << 20) {
    this.stream = new Readable({
      highWaterMark,
      read: () => this.wake(),
      destroy: (err, done) => {
        if (err || !this.ended) this.failed = err ?? new Error('the archive was closed before it ended');
        this.wake();
        done(err);
      },
    });
  }

  /** Adds an entry whose data (a file's; none for any other type) is given at once; its size is taken from it. */
  entry(h: TarHeader, data?: Buffer): Promise<void> | undefined {
    if (this.failed) return Promise.reject(this.failed);
    const size = data && h.type !== 'symlink' ? data.length : 0;
    this.header({ ...h, size });
    if (size > 0) {
      this.put(data!);
      this.pad(size);
    }
    return this.ready();
  }

  /**
   * Adds a file entry's header for `h.size` bytes of data. When the data is shorter than
   * TAR_COPY_MAX and not `streamed`, gives room for it in the batch (to read it into, whole, before
   * the next call), its padding written after; else undefined: the data then goes to `write`.
   * Throws the stream's error once it failed.
   */
  open(h: TarHeader & { size: number }, streamed = false): Buffer | undefined {
    if (this.failed) throw this.failed;
    this.header({ ...h, type: 'file' });
    if (streamed || h.size >= TAR_COPY_MAX) return undefined;
    // The data and its padding in this batch, or both in the next: a batch is never handed on with room not yet filled.
    if (padded(h.size) > BATCH - this.used) this.flush();
    const room = this.batch.subarray(this.used, this.used + h.size);
    this.used += h.size;
    this.pad(h.size);
    return room;
  }

  /**
   * Adds `n` zero bytes, handed on as views of zeroBytes (the spool leaves them as holes, spool.ts),
   * for the caller to write bytes into afterwards (SpoolPatch): room left for entries whose headers
   * are put in place later (fileHeader). What lies there is the caller's to keep whole: the writer
   * neither counts nor checks it. Rejects with the stream's error once it failed.
   */
  skip(n: number): Promise<void> | undefined {
    if (this.failed) return Promise.reject(this.failed);
    this.flush();
    for (let at = 0; at < n; at += ZERO_BYTES_MAX) this.push(zeroBytes(Math.min(ZERO_BYTES_MAX, n - at)));
    return this.ready();
  }

  /**
   * The header bytes `open({ ...h, size }, true)` writes for a file entry of `size` bytes of data: a
   * ustar header, or a PAX header, its records and a ustar header (no data, no padding after). For
   * headers written into an archive after it was spooled, in room `skip` left for them. Throws a
   * RangeError for a header of more than a MiB (PAX records that long).
   */
  static fileHeader(h: TarHeader, size: number): Buffer {
    const w = (encoder ??= new TarWriter(0));
    w.used = 0;
    w.header({ ...h, type: 'file', size });
    if (w.pushed > 0) {
      encoder = undefined;
      throw new RangeError(`${h.name}: a header of more than a MiB`);
    }
    return Buffer.from(w.batch.subarray(0, w.used));
  }

  /**
   * The length of fileHeader(h, size) (bytes): one block where a ustar header holds the entry (no
   * PAX records, an ASCII name of 100 bytes or less), else the header made and measured.
   */
  static fileHeaderBytes(h: TarHeader, size: number): number {
    if (!h.pax && !h.linkname && h.name.length <= 100 && size < 8 ** 11 && Buffer.byteLength(h.name) === h.name.length) return BLOCK;
    return TarWriter.fileHeader(h, size).length;
  }

  /**
   * Adds `piece` of the data of an entry `open` left to the caller; `size`: the entry's whole data
   * size, given with its last piece, after which its padding is written. A long piece (TAR_COPY_MAX or
   * more), or a view of zeroBytes of TAR_HOLE_MIN or more, is kept, not copied: the caller must not
   * write into it afterwards.
   */
  write(piece: Buffer, size?: number): Promise<void> | undefined {
    if (this.failed) return Promise.reject(this.failed);
    this.put(piece);
    if (size !== undefined) this.pad(size);
    return this.ready();
  }

  /**
   * Room in the batch to read the next piece of an entry's data into (`open(h, true)` first): a
   * view of the batch's free bytes, at least ROOM_MIN long (the batch is handed on first when
   * less is free), at most a MiB. Fill its start, then `commit` what was filled before any other
   * call. Reading into it spares a buffer per piece: the batch goes on whole, and the spool hands
   * it back once written (mib-buffers.ts).
   */
  room(): Buffer {
    if (this.failed) throw this.failed;
    if (BATCH - this.used < ROOM_MIN) this.flush();
    return this.batch.subarray(this.used);
  }

  /** Takes the first `n` bytes of the view `room` gave as data; `size`: the entry's whole data size, given with its last piece (then its padding is written). */
  commit(n: number, size?: number): Promise<void> | undefined {
    if (this.failed) return Promise.reject(this.failed);
    if (n < 0 || n > BATCH - this.used) throw new RangeError(`commit: ${n} bytes do not fit the ${BATCH - this.used} free in the batch`);
    this.used += n;
    if (size !== undefined) this.pad(size);
    return this.ready();
  }

  /** Bytes of the archive written so far (in bytes from its start): after `open(h, true)`, where the entry's data starts. */
  get offset(): number {
    return this.pushed + this.used;
  }

  /** Ends the archive (its two zero blocks). */
  finalize(): Promise<void> | undefined {
    if (this.failed) return Promise.reject(this.failed);
    this.copy(END);
    this.flush();
    this.ended = true;
    this.stream.push(null);
    return undefined;
  }

  /**
   * Ends the stream with what was written, adding nothing: for an archive whose last bytes the
   * caller wrote itself (one put together from recorded segments, host-image-store.ts). Throws
   * the stream's error once it failed.
   */
  end(): void {
    if (this.failed) throw this.failed;
    this.flush();
    this.ended = true;
    this.stream.push(null);
  }

  /** Fails the archive's stream with `err`. */
  destroy(err: Error): void {
    this.stream.destroy(err);
  }

  /** Copies a short piece into the batch; hands a long one, or zeros of TAR_HOLE_MIN or more, on as it is (the batch before it first). */
  private put(piece: Buffer): void {
    if (piece.length < TAR_COPY_MAX && !(piece.length >= TAR_HOLE_MIN && isZeroBytes(piece))) return this.copy(piece);
    this.flush();
    this.push(piece);
  }

  private copy(bytes: Buffer): void {
    let at = 0;
    while (at < bytes.length) {
      if (this.used === BATCH) this.flush();
      const n = bytes.copy(this.batch, this.used, at);
      this.used += n;
      at += n;
    }
  }

  /** Zeros to the end of the 512-byte block after `size` bytes of data (tar-stream pack.js overflow). */
  private pad(size: number): void {
    if (padded(size) > size) this.copy(END.subarray(0, padded(size) - size));
  }

  /**
   * Hands the batch on and starts a new one. A batch little used (before a long piece, say) is
   * handed on as a copy of what it holds and used again: the reader's backlog then holds what it
   * counts, not a MiB per piece.
   */
  private flush(): void {
    if (this.used === 0) return;
    let piece: Buffer;
    if (this.used < BATCH / 16) piece = Buffer.from(this.batch.subarray(0, this.used));
    else {
      piece = this.batch.subarray(0, this.used);
      this.batch = takeMiB();
    }
    this.used = 0;
    this.push(piece);
  }

  private push(piece: Buffer): void {
    this.pushed += piece.length;
    if (!this.stream.push(piece)) this.behind = true;
  }

  /** Undefined while the reader keeps up; else resolves once it reads again (rejects once the stream fails). A full batch is handed on first. */
  ready(): Promise<void> | undefined {
    if (this.failed) return Promise.reject(this.failed);
    if (this.used >= BATCH - 4 * BLOCK) this.flush();
    if (!this.behind) return undefined;
    if (!this.waiting) {
      let resolve!: () => void;
      let reject!: (err: Error) => void;
      const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
      this.waiting = { promise, resolve, reject };
    }
    return this.waiting.promise;
  }

  private wake(): void {
    this.behind = false;
    const w = this.waiting;
    this.waiting = undefined;
    if (!w) return;
    if (this.failed) w.reject(this.failed);
    else w.resolve();
  }

  /** tar-stream pack.js `entry`'s defaults, then `_encode`: a ustar header, or a PAX header and one named PaxHeader. */
  private header(h: TarHeader): void {
    const type = h.type ?? typeOfMode(h.mode ?? 0);
    const full: Required<Pick<TarHeader, 'name' | 'mode' | 'uid' | 'gid' | 'size' | 'mtime'>> & TarHeader = {
      ...h,
      type,
      size: type === 'symlink' ? 0 : (h.size ?? 0),
      mode: h.mode || (type === 'directory' ? 0o755 : 0o644),
      uid: h.uid || 0,
      gid: h.gid || 0,
      mtime: h.mtime ?? new Date(),
    };
    if (!full.pax && this.ustar(full, full.name, TYPEFLAG[type])) return;
    const records = paxRecords(full);
    const named = { ...full, name: 'PaxHeader', linkname: full.linkname && 'PaxHeader' };
    this.ustar({ ...named, size: records.length }, 'PaxHeader', PAX_TYPEFLAG);
    this.copy(records);
    this.pad(records.length);
    this.ustar(named, 'PaxHeader', TYPEFLAG[type]);
  }

  /** Writes a ustar header into the batch (tar-stream headers.js `encode`); false, nothing written, where one cannot hold `name` or the link target. */
  private ustar(h: TarHeader & { mode: number; uid: number; gid: number; size: number; mtime: Date }, name: string, typeflag: number): boolean {
    let prefix = '';
    if (Buffer.byteLength(name) !== name.length) return false;
    while (name.length > 100) {
      const i = name.indexOf('/');
      if (i === -1) return false;
      prefix += prefix ? '/' + name.slice(0, i) : name.slice(0, i);
      name = name.slice(i + 1);
    }
    if (name.length > 100 || Buffer.byteLength(prefix) > 155) return false;
    if (h.linkname && Buffer.byteLength(h.linkname) > 100) return false;
    if (this.used > BATCH - BLOCK) void this.flush();
    const at = this.used;
    const buf = this.batch;
    buf.fill(0, at, at + BLOCK);
    buf.write(name, at, 'utf8');
    putOctal(buf, at + 100, h.mode & 0o7777, 6);
    putOctal(buf, at + 108, h.uid, 6);
    putOctal(buf, at + 116, h.gid, 6);
    if (h.size >= 8 ** 11) {
      // GNU base-256 (tar-stream headers.js encodeSizeBin).
      buf[at + 124] = 0x80;
      let n = h.size;
      for (let i = 11; i > 0; i--) {
        buf[at + 124 + i] = n & 0xff;
        n = Math.floor(n / 0x100);
      }
    } else putOctal(buf, at + 124, h.size, 11);
    putOctal(buf, at + 136, (h.mtime.getTime() / 1000) | 0, 11);
    buf[at + 156] = 0x30 + typeflag;
    if (h.linkname) buf.write(h.linkname, at + 157, 'utf8');
    buf.write('ustar\u000000', at + 257, 'latin1');
    if (h.uname) buf.write(h.uname, at + 265, 'utf8');
    if (h.gname) buf.write(h.gname, at + 297, 'utf8');
    putOctal(buf, at + 329, h.devmajor || 0, 6);
    putOctal(buf, at + 337, h.devminor || 0, 6);
    if (prefix) buf.write(prefix, at + 345, 'utf8');
    let sum = 8 * 32;
    for (let i = at; i < at + 148; i++) sum += buf[i];
    for (let i = at + 156; i < at + BLOCK; i++) sum += buf[i];
    putOctal(buf, at + 148, sum, 6);
    this.used += BLOCK;
    return true;
  }
}

/** The writer TarWriter.fileHeader encodes headers with (its stream is never read). */
let encoder: TarWriter | undefined;

/** Bytes `size` bytes of data take with their padding: a whole number of 512-byte blocks. */
function padded(size: number): number {
  return Math.ceil(size / BLOCK) * BLOCK;
}

/** tar-stream pack.js modeToType: an entry's type from its st_mode when none is given. */
function typeOfMode(mode: number): NonNullable<TarHeader['type']> {
  switch (mode & 0o170000) {
    case 0o060000:
      return 'block-device';
    case 0o020000:
      return 'character-device';
    case 0o040000:
      return 'directory';
    case 0o010000:
      return 'fifo';
    case 0o120000:
      return 'symlink';
  }
  return 'file';
}

/**
 * tar-stream headers.js encodeOct, written at `buf[at]`: `n` octal digits and a space; all sevens
 * when the value does not fit. Digit by digit into the header, no string made: a walk writes one
 * header a file (~1.3 KB of strings each made ~16 MB of garbage in a 12,000-file hold).
 */
function putOctal(buf: Buffer, at: number, value: number, n: number): void {
  if (value < 0 || !Number.isInteger(value)) {
    // As encodeOct writes them (a date before 1970: a minus sign): rare, left to its strings.
    const digits = value.toString(8);
    buf.write(digits.length > n ? '7'.repeat(n) + ' ' : '0'.repeat(n - digits.length) + digits + ' ', at, 'latin1');
    return;
  }
  if (value >= 8 ** n) buf.fill(0x37, at, at + n);
  else for (let i = n - 1, v = value; i >= 0; i--, v = Math.floor(v / 8)) buf[at + i] = 0x30 + (v % 8);
  buf[at + n] = 0x20;
}

/** tar-stream headers.js encodePax: `path`, `linkpath`, then the header's records, each "<length> <key>=<value>\n". */
function paxRecords(h: TarHeader): Buffer {
  let text = '';
  if (h.name) text += record(' path=' + h.name + '\n');
  if (h.linkname) text += record(' linkpath=' + h.linkname + '\n');
  for (const key in h.pax ?? {}) text += record(' ' + key + '=' + h.pax![key] + '\n');
  return Buffer.from(text);
}

/** tar-stream headers.js addLength: the record's decimal length, itself included, before it. */
function record(text: string): string {
  const len = Buffer.byteLength(text);
  let digits = Math.floor(Math.log(len) / Math.log(10)) + 1;
  if (len + digits >= Math.pow(10, digits)) digits++;
  return `${len + digits}${text}`;
}
