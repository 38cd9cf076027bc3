import { describe, expect, it } from 'vitest';
import { RestoreTransaction, hasPending, type RestorePending } from '../../src/snapshot/transaction.js';
import { rollBackAll } from '../../src/snapshot/restore-journal.js';
import { ConflictError, EngineError, NotFoundError } from '../../src/engine/errors.js';
import type { Engine } from '../../src/engine/engine.js';

/** A transaction whose every save is kept as a copy, so a test sees what each journal write held. */
function recorded() {
  const saves: RestorePending[] = [];
  const txn = new RestoreTransaction('host/1/0', (p) => saves.push(structuredClone(p)));
  return { txn, saves };
}

describe('committing a restore', () => {
  it('forgets the committed targets and records what is left to remove in one write', () => {
    const { txn, saves } = recorded();
    for (const t of ['db', 'app', 'cache']) txn.record(t, (e) => (e.creating = true));
    const before = saves.length;
    txn.committed(['db', 'app'], { containers: ['c1'], images: ['container-snapshot-aside/x:p1'], volumes: ['data-aside-1'] });
    expect(saves.length).toBe(before + 1);
    const written = saves.at(-1)!;
    expect(written.targets.map((t) => t.target)).toEqual(['cache']);
    expect(written.leftovers).toEqual({ containers: ['c1'], images: ['container-snapshot-aside/x:p1'], volumes: ['data-aside-1'] });
    expect(hasPending(written)).toBe(true);
  });

  it('a later commit adds to what is left; what was removed is forgotten, and nothing pending once all is', () => {
    const { txn, saves } = recorded();
    txn.record('a', (e) => (e.creating = true));
    txn.record('b', (e) => (e.creating = true));
    txn.committed(['a'], { containers: ['c1'], images: [], volumes: ['v1'] });
    txn.committed(['b'], { containers: [], images: ['i2'], volumes: ['v2'] });
    expect(saves.at(-1)!.leftovers).toEqual({ containers: ['c1'], images: ['i2'], volumes: ['v1', 'v2'] });
    txn.removed({ containers: ['c1'], images: [], volumes: ['v1'] });
    expect(saves.at(-1)!.leftovers).toEqual({ containers: [], images: ['i2'], volumes: ['v2'] });
    expect(hasPending(saves.at(-1)!)).toBe(true);
    txn.removed({ containers: [], images: ['i2'], volumes: ['v2'] });
    expect(saves.at(-1)!.leftovers).toBeUndefined();
    expect(hasPending(saves.at(-1)!)).toBe(false);
  });

  it('a commit is written even once the restore was cancelled (it is past the point of no return)', () => {
    const { txn, saves } = recorded();
    txn.record('a', (e) => (e.creating = true));
    txn.abort('Received SIGTERM');
    expect(() => txn.record('a', (e) => (e.created = 'x'))).toThrow('Received SIGTERM');
    txn.committed(['a'], { containers: ['old'], images: [], volumes: [] });
    expect(saves.at(-1)!.targets).toEqual([]);
    expect(saves.at(-1)!.leftovers?.containers).toEqual(['old']);
  });

  it('a journal of an older version (no leftovers) is pending only while it has targets', () => {
    expect(hasPending({ run: 'r', targets: [] })).toBe(false);
    expect(hasPending({ run: 'r', targets: [{ target: 'a', creating: true, createdVolumes: [], replaced: [] }] })).toBe(true);
  });
});

describe('finishing a commit a run was killed in (rollBackAll)', () => {
  /** An engine that records removals; `fail` gives the error a removal of that name throws. */
  function engineWith(fail: Record<string, Error>) {
    const removed: string[] = [];
    const remove = async (x: string) => {
      if (fail[x]) throw fail[x];
      removed.push(x);
    };
    const engine = {
      containersLabelled: async () => [],
      removeContainer: remove,
      removeImage: remove,
      removeVolume: remove,
    } as unknown as Engine;
    return { engine, removed };
  }
  const warnings: string[] = [];
  const log = {
    info: () => undefined,
    warning: (m: string) => void warnings.push(m),
    error: () => undefined,
    group: <T>(_t: string, fn: () => Promise<T>) => fn(),
  };

  it('removes what is left and is no rollback: a gone one and one in use count as done, one the engine failed on stays for the next run', async () => {
    warnings.length = 0;
    const pending: RestorePending = { run: 'host/1/0', targets: [], leftovers: { containers: ['c1'], images: ['i1', 'i2'], volumes: ['v1', 'v2', 'v3'] } };
    const { engine, removed } = engineWith({
      i1: new NotFoundError('No such image'),
      i2: new EngineError('engine answered 500', 500),
      v2: new ConflictError('volume is in use', 409),
    });
    let saves = 0;
    const problems = await rollBackAll(engine, pending, log, () => void saves++);
    expect(problems).toEqual([]);
    expect(removed).toEqual(['c1', 'v1', 'v3']);
    expect(pending.leftovers).toEqual({ containers: [], images: ['i2'], volumes: [] });
    expect(hasPending(pending)).toBe(true);
    expect(saves).toBeGreaterThan(0);
    expect(warnings.join('\n')).toContain('Volume v2 is in use: left in place');
    expect(warnings.join('\n')).toContain('i2 could not be removed (the next restore tries again): engine answered 500');

    const again = engineWith({});
    expect(await rollBackAll(again.engine, pending, log)).toEqual([]);
    expect(again.removed).toEqual(['i2']);
    expect(pending.leftovers).toBeUndefined();
    expect(hasPending(pending)).toBe(false);
  });
});
