import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { journalOwner } from '../../src/core/journal-files.js';
import { recoverAbandoned } from '../../src/core/recovery.js';
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
    const log = {
      info: (m: string) => said.push(m),
      warning: (m: string) => said.push(m),
      error: (m: string) => said.push(m),
      group: <T>(_t: string, fn: () => Promise<T>) => fn(),
    };
    expect(await recoverAbandoned(engine, log, env)).toBe(0);
    expect([existsSync(file), said]).toEqual([false, []]);
  });
});

describe('journal files a killed process left half written', () => {
  const dir = mkdtempSync(join(tmpdir(), 'csx-recovery-tmp-'));
  const env = { CONTAINER_SNAPSHOT_STATE_DIR: dir, DOCKER_HOST: 'unix:///nowhere.sock' };
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('removes the temporary file of a writer that is gone, and keeps a live writer’s', async () => {
    const gone = spawnSync('true').pid!;
    const journals = join(dir, 'journal');
    mkdirSync(journals, { recursive: true });
    // A journal of any process, being written by a writer that is gone, and by this one.
    const dead = join(journals, `${hostname()}-${gone}.json.${gone}.tmp`);
    const live = join(journals, `${hostname()}-${gone}.json.${process.pid}.tmp`);
    writeFileSync(dead, '{"pid":');
    writeFileSync(live, '{"pid":');
    const log = { info: () => undefined, warning: () => undefined, error: () => undefined, group: <T>(_t: string, fn: () => Promise<T>) => fn() };
    await recoverAbandoned(engine, log, env);
    expect([existsSync(dead), existsSync(live)]).toEqual([false, true]);
  });
});
