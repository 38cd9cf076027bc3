import { describe, expect, it } from 'vitest';
import { UndoJournal, emptyUndo, hasPending, parsePending } from '../../src/core/undo.js';

describe('the undo journal', () => {
  it('records a stopped container until it is started again, and reports each change', () => {
    const seen: string[] = [];
    const journal = new UndoJournal((p) => seen.push(JSON.stringify(p)));
    journal.stopped('c1');
    expect(hasPending(journal.pending)).toBe(true);
    journal.restarted('c1');
    expect(journal.pending).toEqual(emptyUndo());
    expect(hasPending(journal.pending)).toBe(false);
    expect(seen).toEqual(['{"paused":[],"stopped":["c1"],"tempImages":[]}', '{"paused":[],"stopped":[],"tempImages":[]}']);
  });

  it('reads what an earlier version saved (no stopped list)', () => {
    expect(parsePending('{"paused":["p"],"tempImages":["t"]}')).toEqual({ paused: ['p'], stopped: [], tempImages: ['t'] });
  });
});
