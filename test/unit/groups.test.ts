import { describe, expect, it } from 'vitest';
import { dependencyOrder, GroupError, GroupGate, groupOf, unitsOf } from '../../src/snapshot/groups.js';
import type { Candidate } from '../../src/snapshot/select.js';

const c = (name: string, labels: Record<string, string> = {}): Candidate => ({ id: `id-${name}`, name, labels, state: 'running' });
const project = (p: string, service: string, dependsOn?: string) => ({
  'com.docker.compose.project': p,
  'com.docker.compose.service': service,
  ...(dependsOn ? { 'com.docker.compose.depends_on': dependsOn } : {}),
});

describe('groupOf and unitsOf', () => {
  it('groups by the container-snapshot.group label whatever group-by says, else as group-by says', () => {
    expect(groupOf(c('a', { 'container-snapshot.group': 'g' }), { kind: 'none' })).toBe('g');
    expect(groupOf(c('a', { 'com.docker.compose.project': 'blog' }), { kind: 'none' })).toBeUndefined();
    expect(groupOf(c('a', { 'com.docker.compose.project': 'blog' }), { kind: 'compose-project' })).toBe('blog');
    expect(groupOf(c('a', { app: 'x' }), { kind: 'label', key: 'app' })).toBe('x');
    expect(groupOf(c('a', {}), { kind: 'label', key: 'app' })).toBeUndefined();
  });

  it('makes one unit per group, in the order of its first member, and one per ungrouped container', () => {
    const units = unitsOf([c('a', { app: '1' }), c('b'), c('c', { app: '2' }), c('d', { app: '1' })], { kind: 'label', key: 'app' });
    expect(units.map((u) => [u.group, u.members.map((m) => m.name)])).toEqual([
      ['1', ['a', 'd']],
      [undefined, ['b']],
      ['2', ['c']],
    ]);
  });
});

describe('dependencyOrder', () => {
  it('puts a container after the Compose services it depends on, and after its links', () => {
    const members = [
      { name: 'blog-web-1', labels: project('blog', 'web', 'db:service_started:false,cache:service_healthy:true'), links: [] },
      { name: 'blog-cache-1', labels: project('blog', 'cache', 'db:service_started:false'), links: [] },
      { name: 'blog-db-1', labels: project('blog', 'db'), links: [] },
      { name: 'old', labels: {}, links: ['/blog-web-1:/old/web'] },
    ];
    expect(dependencyOrder(members)).toEqual({ order: [2, 1, 0, 3], missing: [] });
  });

  it('names a depended-on service that is not in the group, and breaks a cycle in the given order', () => {
    expect(dependencyOrder([{ name: 'w', labels: project('p', 'web', 'db:service_started:false'), links: [] }]).missing).toEqual([
      'w depends on service db, which is not in the group',
    ]);
    const cycle = [
      { name: 'a', labels: {}, links: ['/b:/a/b'] },
      { name: 'b', labels: {}, links: ['/a:/b/a'] },
    ];
    expect(dependencyOrder(cycle).order).toEqual([1, 0]);
  });
});

describe('GroupGate', () => {
  it('runs pre-commands in order, holds all before any is taken, takes all before any is released, post-commands in reverse', async () => {
    let now = 0;
    const gate = new GroupGate('g', ['a', 'b', 'c'], () => now++);
    const events: string[] = [];
    const member = async (k: number) => {
      const m = gate.member(k);
      await m.beforePre();
      events.push(`pre ${k}`);
      m.afterPre();
      await m.beforeHold();
      events.push(`hold ${k}`);
      await m.afterHold();
      events.push(`take ${k}`);
      await m.afterTake();
      events.push(`release ${k}`);
      m.released();
      await m.beforePost();
      events.push(`post ${k}`);
      m.afterPost();
    };
    await Promise.all([2, 0, 1].map(member));
    const at = (e: string) => events.indexOf(e);
    expect([at('pre 0'), at('pre 1'), at('pre 2')]).toEqual([0, 1, 2]);
    for (const k of [0, 1, 2]) {
      expect(Math.max(at('hold 0'), at('hold 1'), at('hold 2'))).toBeLessThan(at(`take ${k}`));
      expect(Math.max(at('take 0'), at('take 1'), at('take 2'))).toBeLessThan(at(`release ${k}`));
    }
    expect(at('post 2')).toBeLessThan(at('post 1'));
    expect(at('post 1')).toBeLessThan(at('post 0'));
    expect(gate.failed).toBeUndefined();
    expect(gate.windowMs).toBeGreaterThan(0);
  });

  it('lets the others stop waiting once a member fails, and still gives the post-command turns on', async () => {
    const gate = new GroupGate('g', ['a', 'b']);
    const first = gate.member(0);
    await first.beforePre();
    first.afterPre();
    const held = first.beforeHold();
    gate.fail(1, 'b failed: pre-command exited with 1');
    await expect(held).rejects.toThrow(new GroupError('group g: b failed: pre-command exited with 1'));
    const post = first.beforePost();
    gate.settle(1);
    await expect(post).resolves.toBeUndefined();
    expect(gate.failed).toBe('b failed: pre-command exited with 1');
  });

  it('a member that fails while others wait at a barrier frees them, naming itself', async () => {
    const gate = new GroupGate('g', ['a', 'b']);
    const [a, b] = [gate.member(0), gate.member(1)];
    await a.beforePre();
    a.afterPre();
    const waiting = a.beforeHold();
    await b.beforePre();
    b.fail(new Error('pre-command exited with 3'));
    await expect(waiting).rejects.toThrow('group g: b failed: pre-command exited with 3');
    const post = a.beforePost();
    b.afterPost();
    await expect(post).resolves.toBeUndefined();
  });
});
