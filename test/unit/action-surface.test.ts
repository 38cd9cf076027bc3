import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { BackupOutput, RestoreOutput } from '../../src/action/surface.js';

/** The names under `outputs:` in an action.yml (two-space indented keys of that block). */
function outputsOf(path: string): string[] {
  const text = readFileSync(path, 'utf8');
  const block = /^outputs:\n((?:(?: {2}.*)?\n)+)/m.exec(text)?.[1] ?? '';
  return [...block.matchAll(/^ {2}([a-z][a-z0-9-]*):/gm)].map((m) => m[1]);
}

describe('the actions surface', () => {
  it('names every backup output of action.yml, and no other', () => {
    expect(Object.values(BackupOutput).sort()).toEqual(outputsOf('action.yml').sort());
  });

  it('names every restore output of restore/action.yml, and no other', () => {
    expect(Object.values(RestoreOutput).sort()).toEqual(outputsOf('restore/action.yml').sort());
  });

  it('sets outputs only through these names', () => {
    for (const entry of ['src/backup/main.ts', 'src/restore/main.ts']) {
      expect(readFileSync(entry, 'utf8')).not.toMatch(/setOutput\('/);
    }
  });
});
