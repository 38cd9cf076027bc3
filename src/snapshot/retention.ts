import { newestFirst, type SetSummary } from './manifest.js';

/** A count of buckets to keep; `Infinity` for restic's `unlimited`. */
export type KeepCount = number;

/** A span back from the newest set, restic's `1y5m7d2h` (calendar years, months and days, then hours). */
export interface Span {
  years: number;
  months: number;
  days: number;
  hours: number;
}

/**
 * Which sets to keep, restic's `forget` policy (restic internal/data/snapshot_policy.go, 0.17):
 * `last` the N newest sets; `hourly`…`yearly` the newest set of each of the N newest hours,
 * days, ISO weeks, months and years that hold a set (UTC); `within` every set made within the
 * span before the newest set (not before now). A rule left out keeps nothing by itself.
 */
export interface RetentionPolicy {
  last?: KeepCount;
  hourly?: KeepCount;
  daily?: KeepCount;
  weekly?: KeepCount;
  monthly?: KeepCount;
  yearly?: KeepCount;
  within?: Span;
}

export interface KeptSet {
  set: SetSummary;
  /** Each rule that keeps it, in words ("daily snapshot", "within 7d", "newest set"). */
  reasons: string[];
}

export interface RetentionPlan {
  keep: KeptSet[];
  remove: SetSummary[];
  /** Sets whose document cannot be read: never removed, never counted as kept by a rule. */
  damaged: SetSummary[];
}

const BUCKETS = ['last', 'hourly', 'daily', 'weekly', 'monthly', 'yearly'] as const;
/** The counted rules, in restic's order. */
export type Bucket = (typeof BUCKETS)[number];
const REASON: Record<Bucket, string> = {
  last: 'last snapshot',
  hourly: 'hourly snapshot',
  daily: 'daily snapshot',
  weekly: 'weekly snapshot',
  monthly: 'monthly snapshot',
  yearly: 'yearly snapshot',
};

/** ISO 8601 week-numbering year and week, as YYYYWW (Go's time.ISOWeek). */
function isoWeek(d: Date): number {
  const day = (d.getUTCDay() + 6) % 7;
  const thursday = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() - day + 3));
  const year = thursday.getUTCFullYear();
  const week = 1 + Math.floor((thursday.getTime() - Date.UTC(year, 0, 1)) / (7 * 86_400_000));
  return year * 100 + week;
}

function bucketOf(rule: Bucket, d: Date, nr: number): number {
  const y = d.getUTCFullYear();
  const m = d.getUTCMonth() + 1;
  switch (rule) {
    case 'last':
      return nr;
    case 'hourly':
      return ((y * 100 + m) * 100 + d.getUTCDate()) * 100 + d.getUTCHours();
    case 'daily':
      return (y * 100 + m) * 100 + d.getUTCDate();
    case 'weekly':
      return isoWeek(d);
    case 'monthly':
      return y * 100 + m;
    case 'yearly':
      return y;
  }
}

/** The span in restic's words: 1y5m7d2h. */
export function formatSpan(s: Span): string {
  const parts = [
    [s.years, 'y'],
    [s.months, 'm'],
    [s.days, 'd'],
    [s.hours, 'h'],
  ] as const;
  return (
    parts
      .filter(([n]) => n > 0)
      .map(([n, u]) => `${n}${u}`)
      .join('') || '0h'
  );
}

/** Go's time.AddDate(-y, -m, -d).Add(-h): calendar fields overflow the same way in Date.UTC. */
function before(latest: number, s: Span): number {
  const d = new Date(latest);
  const back = Date.UTC(
    d.getUTCFullYear() - s.years,
    d.getUTCMonth() - s.months,
    d.getUTCDate() - s.days,
    d.getUTCHours(),
    d.getUTCMinutes(),
    d.getUTCSeconds(),
    d.getUTCMilliseconds(),
  );
  return back - s.hours * 3_600_000;
}

/** True when the policy names no rule: it would keep nothing, so it is refused rather than applied. */
export function isEmptyPolicy(p: RetentionPolicy): boolean {
  return BUCKETS.every((b) => !p[b]) && (!p.within || formatSpan(p.within) === '0h');
}

/**
 * Splits the sets into those the policy keeps (with the rules that keep each), those it removes,
 * and the damaged ones. The policy applies to each container's sets on their own (restic groups
 * snapshots by host and paths before it applies a policy, `forget --group-by host,paths`): a
 * container is a name on the engine its sets were taken on (SetSummary.origin; sets of unknown
 * origin go with the name's one origin, or in a group of their own when it has several), and a set is kept when the policy keeps it among the sets of any
 * container it holds, so sets of other containers, or of the same name on other hosts, written
 * to the same destination never push a container's last sets out. Within a container's
 * sets, restic's evaluation: newest first; each rule keeps a set when it opens a bucket that rule
 * has not seen yet and the rule has a count left, and the oldest set when a rule still has counts
 * left. `within` counts back from the container's newest set not in the future of `now`. On top
 * of restic: each container's newest usable set and any tag in `protect` (the set just written)
 * are always kept. A reason that holds for some of a set's containers only names them:
 * `daily snapshot (db)`. An empty policy throws RangeError (restic's forget refuses one too).
 */
export function applyPolicy(sets: SetSummary[], policy: RetentionPolicy, now: Date, protect: string[] = []): RetentionPlan {
  // parseRetentionPolicy refuses an empty policy already; this guards other callers.
  if (isEmptyPolicy(policy)) throw new RangeError('A retention policy needs at least one rule: last, hourly, daily, weekly, monthly, yearly or within.');
  const damaged = sets.filter((s) => s.damaged);
  const list = sets.filter((s) => !s.damaged).sort(newestFirst);
  // A set without a container (none was taken) is a group of its own, under ''.
  const namesOf = (s: SetSummary) => (s.containers.length > 0 ? [...new Set(s.containers)] : ['']);
  // A container: its name on the engine the set was taken on. A set whose origin is unknown (an earlier
  // version's) goes with the name's one origin where there is one, else in a group of such sets.
  const origins = new Map<string, Set<string>>();
  for (const s of list) for (const name of namesOf(s)) if (s.origin) origins.set(name, (origins.get(name) ?? new Set()).add(s.origin));
  const originOf = (s: SetSummary, name: string) => s.origin ?? (origins.get(name)?.size === 1 ? [...origins.get(name)!][0] : '');
  const groups = new Map<string, { name: string; sets: SetSummary[] }>();
  for (const s of list)
    for (const name of namesOf(s)) {
      const key = `${originOf(s, name)}\0${name}`;
      const g = groups.get(key) ?? { name, sets: [] };
      g.sets.push(s);
      groups.set(key, g);
    }
  // For each set: each reason, with the containers whose sets it keeps the set among.
  const why = new Map<SetSummary, Map<string, string[]>>();
  for (const { name, sets: group } of groups.values())
    evaluate(group, policy, now).forEach((reasons, i) => {
      const byReason = why.get(group[i]) ?? new Map<string, string[]>();
      for (const r of reasons) byReason.set(r, [...(byReason.get(r) ?? []), name]);
      why.set(group[i], byReason);
    });
  const keep: KeptSet[] = [];
  const remove: SetSummary[] = [];
  for (const set of list) {
    const all = namesOf(set).length;
    const reasons = [...(why.get(set) ?? [])].map(([r, cs]) => (cs.length === all ? r : `${r} (${cs.join(', ')})`));
    if (reasons.length === 0 && protect.includes(set.tag)) reasons.push('just written');
    if (reasons.length > 0) keep.push({ set, reasons });
    else remove.push(set);
  }
  return { keep, remove, damaged };
}

/**
 * Restic's evaluation of `policy` over one group's sets (usable, newest first): for each, the
 * reasons that keep it ([] for none); the newest gets 'newest set'.
 */
function evaluate(list: SetSummary[], policy: RetentionPolicy, now: Date): string[][] {
  const times = list.map((s) => Date.parse(s.created));
  const past = times.filter((t) => t < now.getTime());
  // Every set in the future of now: restic counts from the zero time, so `within` keeps them all.
  const latest = past.length > 0 ? Math.max(...past) : undefined;
  const boundary = policy.within && latest !== undefined ? before(latest, policy.within) : -Infinity;
  const counts = Object.fromEntries(BUCKETS.map((b) => [b, policy[b] ?? 0])) as Record<Bucket, number>;
  const last = Object.fromEntries(BUCKETS.map((b) => [b, undefined])) as Record<Bucket, number | undefined>;
  return list.map((_set, nr) => {
    const reasons: string[] = [];
    const oldest = nr === list.length - 1;
    if (policy.within && times[nr] > boundary) reasons.push(`within ${formatSpan(policy.within)}`);
    for (const rule of BUCKETS) {
      if (counts[rule] <= 0) continue;
      const value = bucketOf(rule, new Date(times[nr]), nr);
      if (value === last[rule] && !oldest) continue;
      reasons.push(value === last[rule] ? `oldest ${REASON[rule]}` : REASON[rule]);
      last[rule] = value;
      counts[rule]--;
    }
    if (nr === 0) reasons.push('newest set');
    return reasons;
  });
}

/** The policy in words, for logs and summaries: "last=7, daily=14, within=30d". */
export function describePolicy(p: RetentionPolicy): string {
  const rules = BUCKETS.filter((b) => p[b]).map((b) => `${b}=${p[b] === Infinity ? 'unlimited' : p[b]}`);
  return [...rules, ...(p.within ? [`within=${formatSpan(p.within)}`] : [])].join(', ');
}
