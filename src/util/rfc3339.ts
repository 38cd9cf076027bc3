/**
 * Nanoseconds since the epoch of an RFC 3339 time (RFC 3339 section 5.6 `date-time`, as Go's
 * time.Time marshals to JSON: a fraction of 1 to 9 digits, `Z` or a `±hh:mm` offset), as the
 * engine gives an mtime (ContainerPathStat.mtime) or its clock (`GET /info` SystemTime).
 * Undefined for any other text.
 */
export function rfc3339Ns(text: string): bigint | undefined {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/i.exec(text);
  if (!m) return undefined;
  const ms = Date.parse(`${m[1]}${m[3].toUpperCase()}`);
  if (!Number.isFinite(ms)) return undefined;
  return BigInt(ms) * 1_000_000n + BigInt((m[2] ?? '').padEnd(9, '0'));
}
