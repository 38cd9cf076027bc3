/**
 * Fields of a tar header block read as POSIX.1-2017 pax ("ustar Interchange Format") and GNU tar
 * write them: what the chunker (snapshot/chunker.ts) and the archive check (tar-check.ts) need to
 * find members' boundaries in a stream.
 */

/** A tar block: every header, and every member's data padded to a whole number of them (bytes). */
export const TAR_BLOCK = 512;

/** Bytes a tar member's data of `size` bytes takes in the archive: padded to a whole 512-byte block (POSIX.1-2017 pax, ustar). */
export function paddedSize(size: number): number {
  return Math.ceil(size / TAR_BLOCK) * TAR_BLOCK;
}

/** The sum of a header's bytes with its checksum field (bytes 148–155) read as spaces (POSIX.1-2017 pax, ustar "chksum"). */
export function headerSum(h: Uint8Array): number {
  // A header at a 4-byte aligned offset is summed a 32-bit word at a time, two bytes of each word
  // to a 16-bit lane (126 words: at most 126 × 2 × 255 = 64,260 a lane, no carry into the next);
  // the checksum field is words 37 and 38 exactly. Else byte by byte.
  if (h.byteOffset % 4 === 0 && h.length >= TAR_BLOCK) {
    const words = new Uint32Array(h.buffer, h.byteOffset, TAR_BLOCK / 4);
    let lanes = 0;
    for (let i = 0; i < TAR_BLOCK / 4; i++) {
      if (i === 37 || i === 38) continue;
      const w = words[i];
      lanes += (w & 0x00ff00ff) + ((w >>> 8) & 0x00ff00ff);
    }
    return 8 * 0x20 + (lanes & 0xffff) + (lanes >>> 16);
  }
  let sum = 8 * 0x20;
  for (let i = 0; i < 148; i++) sum += h[i];
  for (let i = 156; i < TAR_BLOCK; i++) sum += h[i];
  return sum;
}

/** Whether byte `b` is white space as String.prototype.trim takes it in latin1 (tab, LF, VT, FF, CR, space, no-break space). */
function isBlank(b: number): boolean {
  return (b >= 0x09 && b <= 0x0d) || b === 0x20 || b === 0xa0;
}

/** Whether byte `b` is a NUL or a space: what pads a numeric field of a tar header. */
function isPad(b: number): boolean {
  return b === 0 || b === 0x20;
}

/**
 * The octal number in bytes `start` to `end` of `h`, read from the bytes (a header is read per
 * member, ~12,000 times for a volume of as many files: no string, no regular expression), after
 * NULs and spaces are taken off both ends (and, with `blank`, white space as trim takes it); NaN
 * when what is left is not octal digits alone, `empty` when nothing is left.
 */
function octalField(h: Uint8Array, start: number, end: number, empty: number, blank = false): number {
  let i = start;
  let e = end;
  while (e > i && isPad(h[e - 1])) e--;
  while (i < e && (blank ? isBlank(h[i]) : isPad(h[i]))) i++;
  if (blank) while (e > i && isBlank(h[e - 1])) e--;
  if (i === e) return empty;
  let n = 0;
  for (; i < e; i++) {
    const digit = h[i] - 0x30;
    if (digit < 0 || digit > 7) return Number.NaN;
    n = n * 8 + digit;
  }
  return n;
}

/** A 512-byte header whose checksum field (octal) is its headerSum. */
export function checksumOk(h: Buffer): boolean {
  return octalField(h, 148, 156, Number.NaN, true) === headerSum(h);
}

/**
 * A header's size field in bytes: octal (NULs and spaces around it allowed), or base-256 (GNU, for
 * members of 8 GiB and more) when its first byte has the high bit. NaN when it is neither.
 */
export function memberSize(h: Buffer): number {
  if (h[124] & 0x80) {
    let n = 0;
    for (let i = 125; i < 136; i++) n = n * 256 + h[i];
    return n;
  }
  return octalField(h, 124, 136, 0);
}

/** The header's type flag (byte 156) as a character; a NUL (pre-POSIX regular file) as '0'. */
export function typeFlag(h: Buffer): string {
  return h[156] === 0 ? '0' : String.fromCharCode(h[156]);
}

/** Type flags of headers that describe the member after them, whose data is that description (pax `x`/`g`, GNU `L`/`K`). */
export const EXTENSION_TYPES = 'xgLK';
