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
  let sum = 0;
  for (let i = 0; i < TAR_BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i];
  return sum;
}

/** A 512-byte header whose checksum field (octal) is its headerSum. */
export function checksumOk(h: Buffer): boolean {
  const field = h
    .subarray(148, 156)
    .toString('latin1')
    .replace(/[\0 ]+$/, '')
    .trim();
  return /^[0-7]+$/.test(field) && Number.parseInt(field, 8) === headerSum(h);
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
  const field = h
    .subarray(124, 136)
    .toString('latin1')
    .replace(/^[\0 ]+|[\0 ]+$/g, '');
  if (!field) return 0;
  return /^[0-7]+$/.test(field) ? Number.parseInt(field, 8) : Number.NaN;
}

/** The header's type flag (byte 156) as a character; a NUL (pre-POSIX regular file) as '0'. */
export function typeFlag(h: Buffer): string {
  return h[156] === 0 ? '0' : String.fromCharCode(h[156]);
}

/** Type flags of headers that describe the member after them, whose data is that description (pax `x`/`g`, GNU `L`/`K`). */
export const EXTENSION_TYPES = 'xgLK';
