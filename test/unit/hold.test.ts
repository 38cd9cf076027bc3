import { describe, expect, it } from 'vitest';
import { holdPlan, PRE_LABEL, STOP_LABEL } from '../../src/snapshot/hold.js';
import { isStill, startedDuring } from '../../src/snapshot/holder.js';
import type { ContainerInspect } from '../../src/engine/containers.js';

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
