/**
 * The values only a backup reads: its tag, timeouts, hooks, parallelism, layer compaction,
 * artifact retention and exclude-env. The whole BackupOptions object is put together in inputs.ts.
 */
import { availableParallelism } from 'node:os';
import { isTag } from '../oci/reference.js';
import { globToRegExp, parseWholeNumber } from './input-values.js';
import { InputError } from './input-error.js';

/** An exclude-env item: a variable name, or a glob of name characters and * ?. Throws InputError naming `name`. */
export function parseEnvPattern(raw: string, name = 'exclude-env'): RegExp {
  const value = raw.trim();
  if (!/^[A-Za-z0-9_*?]+$/.test(value))
    throw new InputError(`Invalid ${name} '${value}'. Expected an environment variable name or a glob of name characters and * ?, like *_PASSWORD.`);
  return globToRegExp(value);
}

/** CONTAINER_SNAPSHOT_LOCK_TIMEOUT: seconds (a decimal allowed), '' for 600; returns milliseconds. Throws InputError when not a number. */
export function parseLockTimeout(raw: string | undefined, fallbackSeconds = 600): number {
  const value = (raw ?? '').trim();
  if (value === '') return fallbackSeconds * 1000;
  const seconds = /^\d{1,7}(?:\.\d+)?$/.test(value) ? Number(value) : NaN;
  if (!Number.isFinite(seconds)) throw new InputError(`Invalid CONTAINER_SNAPSHOT_LOCK_TIMEOUT '${raw}'. Expected a number of seconds, like 600.`);
  return Math.round(seconds * 1000);
}

/**
 * CONTAINER_SNAPSHOT_SETTLE_SECONDS: how long before a backup a file of a volume must have last
 * changed (its ctime) to be read once the container is back (deferred-read.ts), and a large one
 * for the next backup to leave it unread when it is unchanged (file-index.ts); undefined when not set (the kernel's writeback timing decides). Whole seconds,
 * 2 to 86400 (below 2 s a file system's coarse timestamps could hide a change). Throws InputError
 * naming the variable otherwise.
 */
export function parseSettleSeconds(raw: string | undefined): number | undefined {
  const value = (raw ?? '').trim();
  if (value === '') return undefined;
  const seconds = /^\d{1,5}$/.test(value) ? Number(value) : NaN;
  if (!(seconds >= 2 && seconds <= 86400))
    throw new InputError(`Invalid CONTAINER_SNAPSHOT_SETTLE_SECONDS '${raw}'. Expected a whole number of seconds from 2 to 86400, like 40.`);
  return seconds;
}

/** The tag of a backup without one: the UTC time as YYYYMMDDTHHMMSSZ (ISO 8601 basic, whole seconds). */
export function defaultTag(now: Date = new Date()): string {
  return now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
}

/**
 * The tag input: an OCI tag (distribution spec), defaultTag(now) when empty. Throws InputError naming
 * `name` for a malformed tag, for `latest`, which always means the newest complete set, and for `all`, every set.
 */
export function parseTag(raw: string, now?: Date, name = 'tag'): string {
  const value = raw.trim();
  if (value === '') return defaultTag(now);
  if (!isTag(value)) {
    throw new InputError(`Invalid ${name} '${raw}'. Expected an OCI tag: up to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'.`);
  }
  if (value === 'latest' || value === 'all') {
    const means = value === 'latest' ? 'the newest complete set' : 'every set (to verify)';
    throw new InputError(`Invalid ${name} '${value}'. Expected a specific tag: '${value}' always means ${means}.`);
  }
  return value;
}

/** retention-days: days 1 to 90, or undefined ('') for the repository's setting. Throws InputError naming `name`. */
export function parseRetentionDays(raw: string, name = 'retention-days'): number | undefined {
  return parseWholeNumber(name, raw, 1, 90, 'a whole number of days from 1 to 90');
}

/** stop-timeout: seconds, 0 to 3600, or undefined ('') for the container's own stop timeout. Throws InputError naming `name`. */
export function parseStopTimeout(raw: string, name = 'stop-timeout'): number | undefined {
  return parseWholeNumber(name, raw, 0, 3600, 'whole seconds from 0 to 3600');
}

/** The most containers a backup takes at once. */
export const MAX_PARALLELISM = 64;

/** Containers backed up at once, 1 to MAX_PARALLELISM; '' for the default (the number of CPUs, at most MAX_PARALLELISM). Throws InputError naming `name`. */
export function parseParallelism(raw: string, name = 'parallelism'): number {
  return parseWholeNumber(name, raw, 1, MAX_PARALLELISM, `a whole number from 1 to ${MAX_PARALLELISM}`) ?? Math.min(availableParallelism(), MAX_PARALLELISM);
}

/** Delta layers on a full writable layer before a backup takes the whole layer again (layer-compaction). */
export const DEFAULT_LAYER_COMPACTION = 8;
/** The most delta layers layer-compaction accepts. */
export const MAX_LAYER_COMPACTION = 100;

/** Delta layers before the next full writable layer, 0 (never a delta) to MAX_LAYER_COMPACTION; '' for DEFAULT_LAYER_COMPACTION. Throws InputError naming `name`. */
export function parseLayerCompaction(raw: string, name = 'layer-compaction'): number {
  return parseWholeNumber(name, raw, 0, MAX_LAYER_COMPACTION, `a whole number from 0 to ${MAX_LAYER_COMPACTION}`) ?? DEFAULT_LAYER_COMPACTION;
}

/** hook-timeout: seconds, 1 to 86400; `fallback` (seconds) when empty. Throws InputError naming `name`. */
export function parseHookTimeout(raw: string, fallback = 300, name = 'hook-timeout'): number {
  return parseWholeNumber(name, raw, 1, 86400, 'whole seconds from 1 to 86400') ?? fallback;
}

/** pre-command or post-command: a shell command line, or undefined when empty. Throws InputError when it holds a NUL byte. */
export function parseCommand(raw: string): string | undefined {
  const value = raw.trim();
  if (value.includes('\0')) throw new InputError('Invalid command: it contains a NUL byte. Expected a shell command line.');
  return value === '' ? undefined : value;
}
