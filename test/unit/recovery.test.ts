import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { journalOwner, recoverAbandoned } from '../../src/core/recovery.js';
import type { Engine } from '../../src/engine/engine.js';

/** An engine with no temporary images: recovery of an empty journal must call nothing else. */
const engine = { imageTags: async () => [] } as unknown as Engine;

describe('recovery of a backup that ended without cleaning up', () => {
  const dir = mkdtempSync(join(tmpdir(), 'csx-recovery-'));
  const env = { CONTAINER_SNAPSHOT_STATE_DIR: dir, DOCKER_HOST: 'unix:///nowhere.sock' };
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('removes the journal of a run killed while it held nothing, without a word', async () => {
    const gone = spawnSync('true').pid!;
    const file = join(dir, 'journal', `${gone}.json`);
    mkdirSync(join(dir, 'journal'), { recursive: true });
    writeFileSync(file, JSON.stringify({ ...journalOwner(env), pid: gone, started: 'gone', pending: { paused: [], stopped: [], tempImages: [] } }));
    const said: string[] = [];
    const log = { info: (m: string) => said.push(m), warning: (m: string) => said.push(m), error: (m: string) => said.push(m), group: <T>(_t: string, fn: () => Promise<T>) => fn() };
    expect(await recoverAbandoned(engine, log, env)).toBe(0);
    expect([existsSync(file), said]).toEqual([false, []]);
  });
});
