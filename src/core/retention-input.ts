import { InputError } from './input-error.js';
import { isEmptyPolicy, type Bucket, type KeepCount, type RetentionPolicy } from '../snapshot/retention.js';

const RULE = /^(last|hourly|daily|weekly|monthly|yearly|within)=(.*)$/;
const SPAN = /^(?:(\d+)y)?(?:(\d+)m)?(?:(\d+)d)?(?:(\d+)h)?$/;
const EXPECTED =
  'Expected rules like last=7, daily=14, weekly=8, monthly=12, yearly=3 (a whole number from 1, or unlimited) or within=30d (restic durations: 1y5m7d2h)';

function parseCount(name: string, raw: string): KeepCount {
  if (raw === 'unlimited') return Infinity;
  if (!/^\d{1,6}$/.test(raw) || Number(raw) === 0) throw new InputError(`Invalid ${name} rule '${raw}'. ${EXPECTED}.`);
  return Number(raw);
}

/**
 * Reads the `keep` List (`last=7,daily=14,within=30d`, commas or lines); undefined when empty.
 * `name` is the input or flag to name in errors. Throws InputError on an unknown, repeated or bad rule.
 */
export function parseRetentionPolicy(raw: string, name = 'keep'): RetentionPolicy | undefined {
  const items = raw
    .split(/[\n,]/)
    .map((s) => s.trim())
    .filter(Boolean);
  if (items.length === 0) return undefined;
  const policy: RetentionPolicy = {};
  for (const item of items) {
    const m = RULE.exec(item);
    if (!m) throw new InputError(`Invalid ${name} '${item}'. ${EXPECTED}.`);
    const [, rule, value] = m as unknown as [string, Bucket | 'within', string];
    if (policy[rule] !== undefined) throw new InputError(`Invalid ${name}: ${rule} is given twice. ${EXPECTED}.`);
    if (rule === 'within') {
      const s = SPAN.exec(value);
      if (!s || value === '') throw new InputError(`Invalid ${name} rule within='${value}'. ${EXPECTED}.`);
      policy.within = { years: Number(s[1] ?? 0), months: Number(s[2] ?? 0), days: Number(s[3] ?? 0), hours: Number(s[4] ?? 0) };
    } else policy[rule] = parseCount(`${name} ${rule}`, value);
  }
  if (isEmptyPolicy(policy)) throw new InputError(`Invalid ${name} '${raw}': it keeps nothing. ${EXPECTED}.`);
  return policy;
}
