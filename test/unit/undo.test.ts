import { describe, expect, it } from 'vitest';
import { UndoJournal, emptyUndo, hasPending, parsePending, undo } from '../../src/core/undo.js';
import type { ContainerInspect } from '../../src/engine/containers.js';
import type { Engine } from '../../src/engine/engine.js';
import { NotFoundError } from '../../src/engine/errors.js';
import { recordingLog } from '../support/log.js';

const quietLog = recordingLog();

const entry = { id: 'c1', startedAt: '2026-12-01T00:00:00Z', until: 0 };

/** An engine stand-in holding containers by ID; a missing one answers as the engine does (404). */
function fakeEngine(containers: Record<string, { Running: boolean; Paused?: boolean; StartedAt?: string; stopsAfterMs?: number }>) {
  const calls: string[] = [];
  const engine = {
    inspectContainer: async (id: string) => {
      const c = containers[id];
      if (!c) throw new NotFoundError(`inspect container ${id}: No such container: ${id}`);
      return { Name: `/${id}`, State: { Running: c.Running, Paused: c.Paused ?? false, StartedAt: c.StartedAt ?? '' } } as unknown as ContainerInspect;
    },
    waitNotRunning: async (id: string, ms: number) => {
      calls.push(`wait ${id}`);
      const c = containers[id];
      if (c.stopsAfterMs === undefined || c.stopsAfterMs > ms) return false;
      c.Running = false;
      return true;
    },
    start: async (id: string) => {
      calls.push(`start ${id}`);
      containers[id].Running = true;
      containers[id].StartedAt = 'later';
    },
    unpause: async (id: string) => void calls.push(`unpause ${id}`),
    removeImage: async (ref: string) => void calls.push(`rmi ${ref}`),
  };
  return { engine: engine as unknown as Engine, calls };
}

describe('the undo journal', () => {
  it('records a stopped container until it is started again, and reports each change', () => {
    const seen: string[] = [];
    const journal = new UndoJournal((p) => seen.push(JSON.stringify(p)));
    journal.stopped(entry);
    expect(hasPending(journal.pending)).toBe(true);
    journal.restarted('c1');
    expect(journal.pending).toEqual(emptyUndo());
    expect(hasPending(journal.pending)).toBe(false);
    expect(seen).toEqual([`{"paused":[],"stopped":[${JSON.stringify(entry)}],"tempImages":[]}`, '{"paused":[],"stopped":[],"tempImages":[]}']);
  });

  it('reads what earlier versions saved (no stopped list; stopped as IDs)', () => {
    expect(parsePending('{"paused":["p"],"tempImages":["t"]}')).toEqual({ paused: ['p'], stopped: [], tempImages: ['t'] });
    expect(parsePending('{"paused":[],"stopped":["s"],"tempImages":[]}').stopped).toEqual([{ id: 's', startedAt: '', until: 0 }]);
  });
});

describe('undo', () => {
  it('clears entries whose container is gone, with a warning, and reports no problem', async () => {
    const { engine } = fakeEngine({});
    const log = { ...quietLog, lines: [] as string[] };
    const { problems, left } = await undo({ paused: ['gone1'], stopped: [{ ...entry, id: 'gone2' }], tempImages: [] }, engine, log);
    expect(problems).toEqual([]);
    expect(left).toEqual(emptyUndo());
    expect(log.lines.filter((l) => l.includes('no longer exists'))).toHaveLength(2);
  });

  it('waits for a container still stopping (same run, before its deadline), then starts it again', async () => {
    const { engine, calls } = fakeEngine({ c1: { Running: true, StartedAt: entry.startedAt, stopsAfterMs: 10 } });
    const { left } = await undo({ paused: [], stopped: [{ ...entry, until: Date.now() + 5_000 }], tempImages: [] }, engine, quietLog);
    expect(calls).toEqual(['wait c1', 'start c1']);
    expect(left).toEqual(emptyUndo());
  });

  it('leaves alone a container already back (a newer run), and one that never stopped by its deadline', async () => {
    const { engine, calls } = fakeEngine({ back: { Running: true, StartedAt: 'newer' }, never: { Running: true, StartedAt: entry.startedAt } });
    const stopped = [
      { ...entry, id: 'back' },
      { ...entry, id: 'never', until: Date.now() + 50 },
    ];
    const { left } = await undo({ paused: [], stopped, tempImages: [] }, engine, quietLog);
    expect(calls).toEqual(['wait never']);
    expect(left).toEqual(emptyUndo());
  });

  it('keeps what it could not put back, with the reason', async () => {
    const { engine } = fakeEngine({ c1: { Running: false } });
    (engine as unknown as { start: () => Promise<void> }).start = async () => {
      throw new Error('start container c1: engine busy');
    };
    const { problems, left } = await undo({ paused: [], stopped: [entry], tempImages: ['tmp:1'] }, engine, quietLog);
    expect(problems).toEqual(['container c1: start container c1: engine busy']);
    expect(left).toEqual({ paused: [], stopped: [entry], tempImages: [] });
  });
});
