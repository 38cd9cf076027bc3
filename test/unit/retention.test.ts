import { describe, expect, it } from 'vitest';
import { parseBackupInputs } from '../../src/core/inputs.js';
import type { SetSummary } from '../../src/snapshot/manifest.js';
import { applyPolicy, describePolicy, type RetentionPolicy } from '../../src/snapshot/retention.js';
import { parseRetentionPolicy } from '../../src/core/retention-input.js';

const set = (created: string, damaged?: string): SetSummary => ({
  tag: `t-${created.replace(/[^0-9]/g, '')}`,
  created,
  containers: ['a'],
  bytes: 1,
  ...(damaged ? { damaged } : {}),
});
const NOW = new Date('2027-01-10T00:00:00Z');

function kept(sets: SetSummary[], policy: RetentionPolicy, now = NOW): string[] {
  return applyPolicy(sets, policy, now).keep.map((k) => k.set.created);
}

// restic's test set shape: several sets a day, some days and weeks with none.
const SERIES = [
  '2026-12-01T10:00:00Z',
  '2026-12-01T22:00:00Z',
  '2026-12-02T09:00:00Z',
  '2026-12-05T09:00:00Z',
  '2026-12-05T11:30:00Z',
  '2026-12-05T11:45:00Z',
  '2026-12-20T08:00:00Z',
  '2027-01-03T08:00:00Z',
  '2027-01-03T20:00:00Z',
].map((c) => set(c));

describe('applyPolicy (restic forget semantics)', () => {
  it('last=N keeps the N newest sets', () => {
    expect(kept(SERIES, { last: 3 })).toEqual(['2027-01-03T20:00:00Z', '2027-01-03T08:00:00Z', '2026-12-20T08:00:00Z']);
  });

  it('daily=N keeps the newest set of each of the N newest days that hold a set (days without one are not counted)', () => {
    expect(kept(SERIES, { daily: 3 })).toEqual(['2027-01-03T20:00:00Z', '2026-12-20T08:00:00Z', '2026-12-05T11:45:00Z']);
  });

  it('keeps the oldest set too when a rule has counts left over (restic 0.17)', () => {
    const plan = applyPolicy(SERIES, { daily: 10 }, NOW);
    expect(plan.keep.map((k) => k.set.created)).toEqual([
      '2027-01-03T20:00:00Z',
      '2026-12-20T08:00:00Z',
      '2026-12-05T11:45:00Z',
      '2026-12-02T09:00:00Z',
      '2026-12-01T22:00:00Z',
      '2026-12-01T10:00:00Z',
    ]);
    expect(plan.keep.at(-1)?.reasons).toEqual(['oldest daily snapshot']);
  });

  it('hourly buckets are clock hours (UTC)', () => {
    expect(kept(SERIES.slice(3, 6), { hourly: 2 })).toEqual(['2026-12-05T11:45:00Z', '2026-12-05T09:00:00Z']);
  });

  it('weekly buckets are ISO weeks: 2026-12-31 and 2027-01-01 share week 53 of 2026, 2027-01-04 opens a new one', () => {
    const sets = ['2026-12-28T01:00:00Z', '2026-12-31T01:00:00Z', '2027-01-01T01:00:00Z', '2027-01-04T01:00:00Z'].map((c) => set(c));
    expect(kept(sets, { weekly: 2 })).toEqual(['2027-01-04T01:00:00Z', '2027-01-01T01:00:00Z']);
  });

  it('monthly and yearly keep the newest set of each month and year', () => {
    expect(kept(SERIES, { monthly: 2 })).toEqual(['2027-01-03T20:00:00Z', '2026-12-20T08:00:00Z']);
    expect(kept(SERIES, { yearly: 1 })).toEqual(['2027-01-03T20:00:00Z']);
  });

  it('within counts back from the newest set, not from now, and keeps sets strictly after the boundary', () => {
    const plan = applyPolicy(SERIES, { within: { years: 0, months: 0, days: 15, hours: 0 } }, new Date('2030-01-01T00:00:00Z'));
    expect(plan.keep.map((k) => k.set.created)).toEqual(['2027-01-03T20:00:00Z', '2027-01-03T08:00:00Z', '2026-12-20T08:00:00Z']);
    const edge = [set('2026-12-20T20:00:00Z'), set('2026-12-20T08:00:00Z'), set('2026-12-20T07:59:59Z')];
    expect(kept(edge, { within: { years: 0, months: 0, days: 0, hours: 12 } })).toEqual(['2026-12-20T20:00:00Z']);
  });

  it('a set in the future of now is kept but does not move the within boundary', () => {
    const sets = [set('2027-02-01T00:00:00Z'), set('2027-01-09T00:00:00Z'), set('2027-01-07T00:00:00Z')];
    expect(kept(sets, { within: { years: 0, months: 0, days: 1, hours: 0 } })).toEqual(['2027-02-01T00:00:00Z', '2027-01-09T00:00:00Z']);
    expect(kept(sets, { within: { years: 0, months: 0, days: 1, hours: 0 } }, new Date('2026-01-01T00:00:00Z'))).toHaveLength(3);
  });

  it('rules add up and each kept set says which rules keep it', () => {
    const plan = applyPolicy(SERIES, { last: 2, monthly: 2 }, NOW);
    expect(plan.keep.map((k) => [k.set.created, k.reasons])).toEqual([
      ['2027-01-03T20:00:00Z', ['last snapshot', 'monthly snapshot', 'newest set']],
      ['2027-01-03T08:00:00Z', ['last snapshot']],
      ['2026-12-20T08:00:00Z', ['monthly snapshot']],
    ]);
    expect(plan.remove).toHaveLength(SERIES.length - 3);
  });

  it('unlimited keeps every bucket', () => {
    expect(kept(SERIES, { daily: Infinity })).toHaveLength(6);
  });

  it('never counts a damaged set nor removes it: it is reported apart', () => {
    const broken = set('2027-01-05T00:00:00Z', 'the set document does not match its digest');
    const plan = applyPolicy([broken, ...SERIES], { last: 1 }, NOW);
    expect(plan.damaged).toEqual([broken]);
    expect(plan.keep.map((k) => k.set.created)).toEqual(['2027-01-03T20:00:00Z']);
    expect(plan.remove).not.toContain(broken);
  });

  it('always keeps the newest set and a protected one', () => {
    const plan = applyPolicy(SERIES, { within: { years: 0, months: 0, days: 0, hours: 1 } }, NOW, [SERIES[4].tag]);
    expect(plan.keep.map((k) => [k.set.created, k.reasons.at(-1)])).toEqual([
      ['2027-01-03T20:00:00Z', 'newest set'],
      ['2026-12-05T11:30:00Z', 'just written'],
    ]);
  });

  it('refuses an empty policy', () => {
    expect(() => applyPolicy(SERIES, {}, NOW)).toThrow(RangeError);
  });
});

describe('parseRetentionPolicy', () => {
  it('reads rules from commas or lines', () => {
    const p = parseRetentionPolicy('last=7, daily=14\nweekly=unlimited\nwithin=1y2m3d4h');
    expect(p).toEqual({ last: 7, daily: 14, weekly: Infinity, within: { years: 1, months: 2, days: 3, hours: 4 } });
    expect(describePolicy(p!)).toBe('last=7, daily=14, weekly=unlimited, within=1y2m3d4h');
    expect(parseRetentionPolicy('  ')).toBeUndefined();
  });

  it.each([['daily'], ['daily=-1'], ['daily=0'], ['daily=x'], ['hourly=1,hourly=2'], ['within=30'], ['within=2w'], ['keep-daily=3'], ['within=0d']])(
    'refuses %s naming the input',
    (raw) => {
      expect(() => parseRetentionPolicy(raw, 'keep')).toThrow(/^Invalid keep.*Expected rules like last=7/);
    },
  );
});

describe('backup inputs keep and prune-only', () => {
  const get = (values: Record<string, string>) => (name: string) => values[name] ?? '';

  it('reads keep into the policy; prune-only defaults to false', () => {
    const opts = parseBackupInputs(get({ keep: 'last=2\nweekly=4' }));
    expect(opts.keep).toEqual({ last: 2, weekly: 4 });
    expect(opts.pruneOnly).toBe(false);
    expect(parseBackupInputs(get({})).keep).toBeUndefined();
  });

  it('refuses prune-only without keep, in the words of the inputs', () => {
    expect(() => parseBackupInputs(get({ 'prune-only': 'true' }))).toThrow(
      'prune-only needs keep. Expected keep with at least one rule, e.g. last=7,daily=14.',
    );
  });
});

describe("applyPolicy: each container's sets on their own (restic forget --group-by)", () => {
  const of = (containers: string[], created: string): SetSummary => ({ tag: `${containers.join('+')}-${created.slice(0, 13)}`, created, containers, bytes: 1 });
  // db backed up nightly, web every hour of the last night, into one destination.
  const db = ['2027-01-07T02:00:00Z', '2027-01-08T02:00:00Z', '2027-01-09T02:00:00Z'].map((c) => of(['db'], c));
  const web = ['2027-01-09T20:00:00Z', '2027-01-09T21:00:00Z', '2027-01-09T22:00:00Z', '2027-01-09T23:00:00Z'].map((c) => of(['web'], c));

  it("keeps each container's N newest sets, whatever other containers' newer sets there are", () => {
    const plan = applyPolicy([...db, ...web], { last: 2 }, NOW);
    expect(plan.keep.map((k) => k.set.tag)).toEqual([web[3].tag, web[2].tag, db[2].tag, db[1].tag]);
    expect(plan.remove.map((s) => s.tag)).toEqual([web[1].tag, web[0].tag, db[0].tag]);
  });

  it("never removes a container's only set (it is that container's newest)", () => {
    const plan = applyPolicy([db[0], ...web], { last: 1 }, NOW);
    expect(plan.keep.find((k) => k.set.tag === db[0].tag)?.reasons).toEqual(['last snapshot', 'newest set']);
  });

  it('names the containers a reason holds for when it holds for some of the set only', () => {
    const both = of(['db', 'web'], '2027-01-09T10:00:00Z');
    const plan = applyPolicy([both, web[3]], { last: 1 }, NOW);
    // web's newest is web[3]; both is db's newest: kept for db alone.
    expect(plan.keep.map((k) => [k.set.tag, k.reasons])).toEqual([
      [web[3].tag, ['last snapshot', 'newest set']],
      [both.tag, ['last snapshot (db)', 'newest set (db)']],
    ]);
    expect(applyPolicy([both], { last: 1 }, NOW).keep[0].reasons).toEqual(['last snapshot', 'newest set']);
  });

  it('counts within back from each container’s own newest set', () => {
    const plan = applyPolicy([...db, ...web], { within: { years: 0, months: 0, days: 1, hours: 0 } }, NOW);
    // db's newest is 2027-01-09T02:00: within a day of it, 01-08T02:00 is on the edge (not after), so db keeps one; web keeps all four.
    expect(plan.remove.map((s) => s.tag)).toEqual([db[1].tag, db[0].tag]);
  });
});

describe('applyPolicy: a container is a name where its sets were taken (SetSummary.origin)', () => {
  const on = (origin: string | undefined, created: string): SetSummary => ({
    tag: `db-${origin ?? 'x'}-${created.slice(0, 13)}`,
    created,
    containers: ['db'],
    bytes: 1,
    ...(origin ? { origin } : {}),
  });

  it("keeps each host's N newest sets of a container of the same name", () => {
    const hostA = ['2027-01-07T02:00:00Z', '2027-01-08T02:00:00Z'].map((c) => on('aaaa', c));
    const hostB = ['2027-01-09T01:00:00Z', '2027-01-09T02:00:00Z', '2027-01-09T03:00:00Z', '2027-01-09T04:00:00Z'].map((c) => on('bbbb', c));
    const plan = applyPolicy([...hostA, ...hostB], { last: 1 }, NOW);
    expect(plan.keep.map((k) => k.set.tag)).toEqual([hostB[3].tag, hostA[1].tag]);
    // A set of unknown origin (an earlier version's) goes with the name's one origin; where the name has several, in a group of its own.
    const older = on(undefined, '2027-01-01T00:00:00Z');
    expect(applyPolicy([older, ...hostB], { last: 1 }, NOW).keep.map((k) => k.set.tag)).toEqual([hostB[3].tag]);
    expect(applyPolicy([older, ...hostA, ...hostB], { last: 1 }, NOW).keep.map((k) => k.set.tag)).toEqual([hostB[3].tag, hostA[1].tag, older.tag]);
  });
});
