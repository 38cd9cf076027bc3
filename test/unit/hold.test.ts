import { describe, expect, it } from 'vitest';
import { holdPlan, PRE_LABEL, STOP_LABEL } from '../../src/snapshot/hold.js';
import { Holder, isStill, startedDuring } from '../../src/snapshot/holder.js';
import type { ContainerWatch } from '../../src/engine/events.js';
import type { MemberGate } from '../../src/snapshot/groups.js';
import type { ContainerInspect } from '../../src/engine/containers.js';
import { watchOf } from '../../src/engine/events.js';
import { movedByEvents, movedWhileHeld } from '../../src/snapshot/still-check.js';
import { PassThrough } from 'node:stream';

const opts = { stop: false, pause: true, preCommand: 'sync', postCommand: 'echo done' };

function container(state: Partial<ContainerInspect['State']>, labels: Record<string, string> = {}, autoRemove = false): ContainerInspect {
  return {
    Id: 'c1',
    Name: '/c1',
    State: { Status: 'running', Running: true, Paused: false, Restarting: false, StartedAt: '', ...state },
    Config: { Image: 'alpine', Labels: labels },
    HostConfig: { AutoRemove: autoRemove },
  } as unknown as ContainerInspect;
}

describe('holdPlan', () => {
  it('a running container is held as asked, with its hooks', () => {
    expect(holdPlan(container({}), opts)).toEqual({ running: true, hold: 'pause', hooks: { pre: 'sync', post: 'echo done' }, hooksSkipped: false });
    expect(holdPlan(container({}, { [STOP_LABEL]: 'true', [PRE_LABEL]: ' ' }), opts)).toMatchObject({ hold: 'stop', hooks: { post: 'echo done' } });
  });

  it('one started with --rm is paused, not stopped, and says why', () => {
    expect(holdPlan(container({}, { [STOP_LABEL]: 'true' }, true), opts)).toMatchObject({
      running: true,
      hold: 'pause',
      warn: true,
      note: 'auto-remove (--rm): paused, not stopped',
    });
  });

  it('a container not running is taken as it is, its hooks not run', () => {
    expect(holdPlan(container({ Status: 'exited', Running: false }), opts)).toEqual({ running: false, hold: 'none', hooks: {}, hooksSkipped: true });
    expect(holdPlan(container({ Status: 'paused', Paused: true }), { ...opts, preCommand: undefined, postCommand: undefined })).toEqual({
      running: false,
      hold: 'none',
      hooks: {},
      hooksSkipped: false,
    });
    expect(holdPlan(container({ Status: 'restarting', Restarting: true }), opts)).toMatchObject({
      running: false,
      hold: 'none',
      note: 'restarting: taken as it is, between two runs',
      hooksSkipped: true,
    });
  });
});

describe('isStill and startedDuring (holder.ts): a container taken as it is must stay still while read', () => {
  const at = (over: Partial<ContainerInspect['State']>) =>
    ({ Running: false, Paused: false, Restarting: false, StartedAt: '2026-01-01T00:00:00Z', ...over }) as ContainerInspect['State'];
  it('exited, restarting and paused containers are still; a running one is not', () => {
    expect([at({}), at({ Running: true, Restarting: true }), at({ Running: true, Paused: true }), at({ Running: true })].map(isStill)).toEqual([
      true,
      true,
      true,
      false,
    ]);
  });
  it('a start (another StartedAt) or an unpause moves it; an exit or nothing does not', () => {
    expect(startedDuring(at({}), at({ Running: true, StartedAt: '2026-01-01T00:00:05Z' }))).toBe('it was started');
    expect(startedDuring(at({ Running: true, Restarting: true }), at({ StartedAt: '2026-01-01T00:00:05Z' }))).toBe('it was started');
    expect(startedDuring(at({ Running: true, Paused: true }), at({ Running: true }))).toBe('it was unpaused');
    expect(startedDuring(at({ Running: true, Paused: true }), at({ Running: true, Paused: true }))).toBeUndefined();
    expect(startedDuring(at({ Running: true, Restarting: true }), at({}))).toBeUndefined();
  });
});

describe('movedWhileHeld and movedByEvents (still-check.ts): a container held by the run must stay as it was left while read', () => {
  const at = (over: Partial<ContainerInspect['State']>) =>
    ({ Running: true, Paused: false, Restarting: false, StartedAt: '2026-01-01T00:00:00Z', ...over }) as ContainerInspect['State'];
  it('paused: still paused with the same StartedAt; unpaused, stopped or started again is a move', () => {
    expect(movedWhileHeld('pause', at({}), at({ Paused: true }))).toBeUndefined();
    expect(movedWhileHeld('pause', at({}), at({}))).toBe('it was unpaused');
    expect(movedWhileHeld('pause', at({}), at({ Running: false }))).toBe('it was stopped');
    expect(movedWhileHeld('pause', at({}), at({ Paused: true, StartedAt: '2026-01-01T00:00:05Z' }))).toBe('it was started');
  });
  it('stopped: not running with the same StartedAt; started (even stopped again since) is a move', () => {
    expect(movedWhileHeld('stop', at({}), at({ Running: false }))).toBeUndefined();
    expect(movedWhileHeld('stop', at({}), at({ Running: false, StartedAt: '2026-01-01T00:00:05Z' }))).toBe('it was started');
    expect(movedWhileHeld('stop', at({}), at({}))).toBe('it was started');
  });
  it("a hold's own events never count; a start, restart or unpause after them does", () => {
    expect(movedByEvents('pause', ['pause'])).toBeUndefined();
    expect(movedByEvents('pause', ['pause', 'unpause', 'pause'])).toBe('it was unpaused');
    expect(movedByEvents('pause', ['pause', 'die', 'start'])).toBe('it was started');
    expect(movedByEvents('stop', ['die', 'stop'])).toBeUndefined();
    expect(movedByEvents('stop', ['stop', 'die'])).toBeUndefined();
    expect(movedByEvents('stop', ['die', 'stop', 'start', 'die', 'stop'])).toBe('it was started');
    expect(movedByEvents('stop', ['die', 'stop', 'restart'])).toBe('it was started');
  });
  it("without the hold's own event the events tell nothing (a stream subscribed late)", () => {
    expect(movedByEvents('pause', ['unpause', 'start'])).toBeUndefined();
    expect(movedByEvents('stop', ['start'])).toBeUndefined();
  });
  it('taken as it is: any start, restart or unpause moves it; an exit does not', () => {
    expect(movedByEvents('none', [])).toBeUndefined();
    expect(movedByEvents('none', ['die'])).toBeUndefined();
    expect(movedByEvents('none', ['start', 'die'])).toBe('it was started');
    expect(movedByEvents('none', ['unpause', 'pause'])).toBe('it was unpaused');
  });
});

describe('watchOf (engine/events.ts): a container event stream read line by line', () => {
  const opened = (stream: PassThrough) => watchOf(Promise.resolve(stream), new AbortController());
  it("keeps each event's action in order, across chunks, and closes the stream", async () => {
    const stream = new PassThrough();
    const watch = opened(stream);
    expect(await watch.ready).toBe(true);
    stream.write('{"Type":"container","Action":"pause"}\n{"Type":"contai');
    stream.write('ner","Action":"unpause"}\n');
    await new Promise((r) => setImmediate(r));
    watch.close();
    expect({ actions: watch.actions, intact: watch.intact, destroyed: stream.destroyed }).toEqual({
      actions: ['pause', 'unpause'],
      intact: true,
      destroyed: true,
    });
  });
  it('a stream that fails, ends early, or could not be opened is not intact', async () => {
    const failing = new PassThrough();
    const w1 = opened(failing);
    await w1.ready;
    failing.destroy(new Error('socket hang up'));
    await new Promise((r) => setImmediate(r));
    const ending = new PassThrough();
    const w2 = opened(ending);
    await w2.ready;
    ending.end();
    ending.resume();
    await new Promise((r) => setImmediate(r));
    const w3 = watchOf(Promise.reject(new Error('refused')), new AbortController());
    expect(await w3.ready).toBe(false);
    expect([w1.intact, w2.intact, w3.intact]).toEqual([false, false, false]);
    [w1, w2, w3].forEach((w) => w.close());
  });
  it('seen: a barrier that waits for an event, and gives up at its deadline or when the stream fails', async () => {
    const stream = new PassThrough();
    const watch = opened(stream);
    await watch.ready;
    const destroyed = watch.seen('destroy', 5_000);
    stream.write('{"Action":"start"}\n{"Action":"die"}\n{"Action":"destroy"}\n');
    expect(await destroyed).toBe(true);
    expect(watch.actions).toEqual(['start', 'die', 'destroy']);
    expect(await watch.seen('destroy', 5_000)).toBe(true);
    expect(await watch.seen('start', 5_000)).toBe(true);
    expect(await watch.seen('pause', 10)).toBe(false);
    const never = watch.seen('pause', 5_000);
    stream.destroy(new Error('socket hang up'));
    expect(await never).toBe(false);
    watch.close();
  });
  it('closed before the engine answered: the stream that arrives later is destroyed', async () => {
    const stream = new PassThrough();
    let answer: (s: PassThrough) => void = () => undefined;
    const watch = watchOf(new Promise<PassThrough>((r) => (answer = r)), new AbortController());
    watch.close();
    answer(stream);
    expect(await watch.ready).toBe(false);
    expect(stream.destroyed).toBe(true);
  });
});

describe('Holder.held: a group member whose pause is refused (crash-looping) is taken as it is', () => {
  it('is stored when its restart policy ran it (and it exited again) while its group waited for the other members, before its read', async () => {
    const state = (s: Partial<ContainerInspect['State']>) => ({ Status: 'running', Running: true, Paused: false, Restarting: false, StartedAt: 'S1', ...s });
    const info = container({}, {});
    // Refused at the hold: restarting between two runs.
    let current = state({ Restarting: true });
    const watches: Array<{ actions: string[] }> = [];
    const engine = {
      inspectContainer: async () => ({ ...info, State: current }),
      pause: async () => {
        throw new Error('Container c1 is restarting, wait until the container is running');
      },
      unpause: async () => undefined,
      watchContainer: (): ContainerWatch => {
        const w = { ready: Promise.resolve(true), actions: [] as string[], intact: true, seen: async () => true, close: () => undefined };
        watches.push(w);
        return w;
      },
    };
    const gate = {
      beforeHold: async () => undefined,
      // The other members' stops take seconds: the policy runs it meanwhile, and it exits again.
      afterHold: async () => {
        watches.at(-1)?.actions.push('start', 'die');
        current = state({ Restarting: true, StartedAt: 'S2' });
      },
      afterTake: async () => undefined,
      released: () => undefined,
    } as unknown as MemberGate;
    const log = { info: () => undefined, warning: () => undefined, error: () => undefined, group: (_t: string, fn: () => unknown) => fn() };
    const holder = new Holder({ engine, log, journal: undefined, signal: undefined } as never, { hookTimeout: 60 } as never, new Map());
    // Nothing moves while it is read (restarting, S2, before and after).
    expect(await holder.held(info, 'c1', 'pause', 0, gate, async () => 'read')).toMatchObject({ value: 'read', held: 'none' });
  });
});
