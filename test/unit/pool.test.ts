import { describe, expect, it } from 'vitest';
import { forEachLimited } from '../../src/util/pool.js';

/** A task that runs until released, recording when it starts and ends. */
function gated() {
  const events: string[] = [];
  const gates = new Map<number, () => void>();
  let running = 0;
  let peak = 0;
  const task = (item: string, i: number) =>
    new Promise<void>((resolve) => {
      events.push(`start ${item}`);
      peak = Math.max(peak, ++running);
      gates.set(i, () => {
        running--;
        events.push(`end ${item}`);
        resolve();
      });
    });
  const release = async (i: number) => {
    while (!gates.has(i)) await new Promise((r) => setImmediate(r));
    gates.get(i)!();
  };
  return { events, task, release, peak: () => peak };
}

describe('forEachLimited', () => {
  it('runs at most `limit` at once, taking items in order', async () => {
    const g = gated();
    const done = forEachLimited(['a', 'b', 'c', 'd'], 2, g.task);
    await g.release(1);
    await g.release(0);
    await g.release(2);
    await g.release(3);
    await done;
    expect(g.peak()).toBe(2);
    expect(g.events.filter((e) => e.startsWith('start'))).toEqual(['start a', 'start b', 'start c', 'start d']);
    expect(g.events.slice(0, 3)).toEqual(['start a', 'start b', 'end b']);
  });

  it('after a task throws, starts no other, waits for those running, then rethrows', async () => {
    const events: string[] = [];
    let releaseA = () => undefined as void;
    const run = forEachLimited(['a', 'b', 'c'], 2, async (item) => {
      events.push(`start ${item}`);
      if (item === 'b') throw new Error('b failed');
      await new Promise<void>((r) => (releaseA = r));
      events.push(`end ${item}`);
    });
    let settled = false;
    void run.catch(() => (settled = true));
    await new Promise((r) => setImmediate(r));
    expect(settled).toBe(false);
    releaseA();
    await expect(run).rejects.toThrow('b failed');
    expect(events).toEqual(['start a', 'start b', 'end a']);
  });

  it('takes no further item once stop() says so', async () => {
    const seen: string[] = [];
    await forEachLimited(
      ['a', 'b', 'c'],
      1,
      async (item) => void seen.push(item),
      () => seen.length >= 2,
    );
    expect(seen).toEqual(['a', 'b']);
  });
});
