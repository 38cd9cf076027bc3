import type { GroupBy } from '../core/selection-input.js';
import { errorMessage } from '../core/log.js';
import { COMPOSE_PROJECT_LABEL, type Candidate } from './select.js';

/** The label that puts a container in a consistency group, whatever group-by says. */
export const GROUP_LABEL = 'container-snapshot.group';
/** Compose's labels (Compose v2): a container's service, and the services it depends on (`svc:condition:restart`, comma-separated). */
export const COMPOSE_SERVICE_LABEL = 'com.docker.compose.service';
export const COMPOSE_DEPENDS_ON_LABEL = 'com.docker.compose.depends_on';

/** What a backup takes as one: a container on its own, or a consistency group (its members in dependency order). */
export interface Unit {
  group?: string;
  members: Candidate[];
}

/** A container's group: its container-snapshot.group label, else what group-by says; undefined when in none. */
export function groupOf(c: Candidate, groupBy: GroupBy): string | undefined {
  const labelled = c.labels[GROUP_LABEL]?.trim();
  if (labelled) return labelled;
  if (groupBy.kind === 'compose-project') return c.labels[COMPOSE_PROJECT_LABEL] || undefined;
  if (groupBy.kind === 'label') return c.labels[groupBy.key] || undefined;
  return undefined;
}

/** The selected containers as units, in the order of each unit's first container; a group's members in selection order. */
export function unitsOf(selected: Candidate[], groupBy: GroupBy): Unit[] {
  const units: Unit[] = [];
  const groups = new Map<string, Unit>();
  for (const c of selected) {
    const group = groupOf(c, groupBy);
    if (group === undefined) {
      units.push({ members: [c] });
      continue;
    }
    const unit = groups.get(group);
    if (unit) unit.members.push(c);
    else {
      const created = { group, members: [c] };
      groups.set(group, created);
      units.push(created);
    }
  }
  return units;
}

/** A group member as the dependency order needs it: its name, labels and legacy links (HostConfig.Links, "/target:/self/alias"). */
export interface MemberInfo {
  name: string;
  labels: Record<string, string>;
  links: string[];
}

/** The Compose services a container depends on (com.docker.compose.depends_on, `svc:condition:restart,...`). */
export function composeDependencies(labels: Record<string, string>): string[] {
  return (labels[COMPOSE_DEPENDS_ON_LABEL] ?? '')
    .split(',')
    .map((d) => d.split(':')[0].trim())
    .filter((d) => d !== '');
}

/**
 * The members' indexes in dependency order (a container after those it depends on: Compose's
 * depends_on services of its project, and its links), else in the given order; a cycle is broken
 * in the given order. Also the dependencies no member provides: a Compose service of the same
 * project that is not in the group (that member is missing). Links to containers outside the group only order nothing.
 */
export function dependencyOrder(members: MemberInfo[]): { order: number[]; missing: string[] } {
  const byService = new Map<string, number>();
  members.forEach((m, i) => {
    const service = m.labels[COMPOSE_SERVICE_LABEL];
    if (service) byService.set(`${m.labels[COMPOSE_PROJECT_LABEL] ?? ''}\0${service}`, i);
  });
  const byName = new Map(members.map((m, i) => [m.name, i]));
  const missing: string[] = [];
  const deps = members.map((m) => {
    const project = m.labels[COMPOSE_PROJECT_LABEL] ?? '';
    const out = new Set<number>();
    for (const service of composeDependencies(m.labels)) {
      const i = byService.get(`${project}\0${service}`);
      if (i === undefined) missing.push(`${m.name} depends on service ${service}, which is not in the group`);
      else out.add(i);
    }
    for (const link of m.links) {
      const i = byName.get(link.split(':')[0].replace(/^\//, ''));
      if (i !== undefined) out.add(i);
    }
    return out;
  });
  const order: number[] = [];
  const state = new Map<number, 'visiting' | 'done'>();
  const visit = (i: number) => {
    if (state.has(i)) return;
    state.set(i, 'visiting');
    for (const d of deps[i]) if (d !== i) visit(d);
    state.set(i, 'done');
    order.push(i);
  };
  members.forEach((_m, i) => visit(i));
  return { order, missing };
}

/** Why a group member stopped: another member of its group failed. */
export class GroupError extends Error {
  override name = 'GroupError';
}

/**
 * How the members of one group wait for each other (index = place in dependency order): pre-commands one after the
 * other in that order, then every member held before any is taken, every member taken before any
 * is put back, and post-commands in the reverse order. Once a member fails, every wait of the
 * others throws a GroupError (so each puts back what it holds), except the post-command turns.
 */
export class GroupGate {
  private readonly pre: Deferred[];
  private readonly post: Deferred[];
  private readonly arrived = { held: new Set<number>(), taken: new Set<number>() };
  private readonly barriers = { held: new Deferred(), taken: new Deferred() };
  private readonly failure = new Deferred();
  private failedWith?: string;
  private firstHold?: number;
  private lastRelease?: number;

  private readonly size: number;

  /** `members`: their names, in dependency order; `clock`: milliseconds, for the window. */
  constructor(
    readonly name: string,
    private readonly members: string[],
    private readonly clock: () => number = () => performance.now(),
  ) {
    const size = members.length;
    this.size = size;
    this.pre = Array.from({ length: size }, () => new Deferred());
    this.post = Array.from({ length: size }, () => new Deferred());
    // Rejections are awaited through race(); never unhandled.
    this.failure.promise.catch(() => undefined);
  }

  /** The member `i` as its own view of the gate. */
  member(i: number): MemberGate {
    return {
      beforePre: () => this.race(i === 0 ? Promise.resolve() : this.pre[i - 1].promise),
      afterPre: () => this.pre[i].resolve(),
      beforeHold: async () => {
        await this.race(Promise.all(this.pre.map((p) => p.promise)));
        this.firstHold ??= this.clock();
      },
      afterHold: () => this.arrive('held', i),
      afterTake: () => this.arrive('taken', i),
      released: () => {
        if (this.firstHold !== undefined) this.lastRelease = Math.max(this.lastRelease ?? 0, this.clock());
      },
      beforePost: () => (i === this.size - 1 ? Promise.resolve() : this.post[i + 1].promise),
      afterPost: () => this.post[i].resolve(),
      fail: (err) => this.fail(i, `${this.members[i]} failed: ${errorMessage(err)}`),
    };
  }

  /** Member `i` failed: the others stop waiting at the barriers (its post-command turn is given on by afterPost or settle). */
  fail(i: number, reason: string): void {
    this.failedWith ??= reason;
    this.failure.reject(new GroupError(`group ${this.name}: ${reason}`));
    this.pre[i].resolve();
  }

  /** Member `i` is done, whatever happened: gives on any turn it still holds. */
  settle(i: number): void {
    this.pre[i].resolve();
    this.post[i].resolve();
  }

  /** The first member failure said, if any. */
  get failed(): string | undefined {
    return this.failedWith;
  }

  /** Milliseconds from the first hold to the last release; 0 when no member was held. */
  get windowMs(): number {
    return this.firstHold === undefined || this.lastRelease === undefined ? 0 : Math.round(this.lastRelease - this.firstHold);
  }

  private async arrive(phase: 'held' | 'taken', i: number): Promise<void> {
    this.arrived[phase].add(i);
    if (this.arrived[phase].size === this.size) this.barriers[phase].resolve();
    await this.race(this.barriers[phase].promise);
  }

  private race<T>(p: Promise<T>): Promise<T | undefined> {
    return Promise.race([p, this.failure.promise as Promise<undefined>]);
  }
}

/** One member's side of a GroupGate, as ContainerBackup calls it; absent for a container on its own. */
export interface MemberGate {
  beforePre(): Promise<unknown>;
  afterPre(): void;
  beforeHold(): Promise<void>;
  afterHold(): Promise<void>;
  afterTake(): Promise<void>;
  released(): void;
  beforePost(): Promise<unknown>;
  afterPost(): void;
  /** This member failed: the others stop waiting for it (each then puts back what it holds). */
  fail(err: unknown): void;
}

class Deferred {
  readonly promise: Promise<void>;
  resolve!: () => void;
  reject!: (err: unknown) => void;
  constructor() {
    this.promise = new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }
}
