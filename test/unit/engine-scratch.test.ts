import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import tar from 'tar-stream';
import { goneOrEmptyDir, isEngineScratch, scratchToDrop, vanishedScratchOnly } from '../../src/snapshot/engine-scratch.js';
import { upperLayerTar } from '../../src/snapshot/layer-upper-tar.js';
import { findUpperDir, walkUpperDir } from '../../src/snapshot/layer-walk.js';

describe("the engine's own directories of a moment (moby SwitchRoot's os.MkdirTemp(root, '.pivot_root'))", () => {
  it('are named /.pivot_root and digits, at the root; nothing else is', () => {
    expect(['/.pivot_root1130745838', '/.pivot_root7'].filter(isEngineScratch)).toHaveLength(2);
    expect(
      ['/.pivot_root', '/.pivot_rootx1', '/app/.pivot_root12', '/.pivot_root12x', '.pivot_root12', '/.pivot_root42/old', '/x/.pivot_root1/y'].filter(
        isEngineScratch,
      ),
    ).toEqual([]);
  });

  it('are left out of a list only with nothing below them: one that holds something is no engine’s', () => {
    expect([...scratchToDrop(['/app', '/.pivot_root1', '/.pivot_root2', '/.pivot_root2/data', '/.pivot_root3x'])]).toEqual(['/.pivot_root1']);
    expect(scratchToDrop(['/app', '/app/x']).size).toBe(0);
  });

  it('a find or getfattr run failed only on one gone mid-walk (C locale messages, as printed here); not when any other line is there', () => {
    const root = '/var/lib/docker/overlay2/abc/diff';
    expect(vanishedScratchOnly(`find: '${root}/.pivot_root12': No such file or directory\n`, root)).toBe(true);
    expect(vanishedScratchOnly(`getfattr: ${root}/.pivot_root12: No such file or directory\n`, `${root}/`)).toBe(true);
    expect(
      vanishedScratchOnly(`find: '${root}/.pivot_root12': No such file or directory\ngetfattr: ${root}/.pivot_root9: No such file or directory`, root),
    ).toBe(true);
    // Below one (no engine's: it holds nothing), another path, another error, another root, or nothing said: a failure as before.
    expect(vanishedScratchOnly(`find: '${root}/.pivot_root12/x': No such file or directory\n`, root)).toBe(false);
    expect(vanishedScratchOnly(`find: '${root}/etc': No such file or directory\n`, root)).toBe(false);
    expect(vanishedScratchOnly(`find: '${root}/.pivot_root12': Permission denied\n`, root)).toBe(false);
    expect(vanishedScratchOnly(`getfattr: /other/.pivot_root12: No such file or directory\n`, root)).toBe(false);
    expect(vanishedScratchOnly(`getfattr: ${root}/.pivot_root12: No such file or directory\ngetfattr: ${root}/etc/x: No such file or directory\n`, root)).toBe(
      false,
    );
    expect(vanishedScratchOnly('', root)).toBe(false);
  });

  describe('in an upper directory on this host', () => {
    const root = mkdtempSync(join(tmpdir(), 'csx-scratch-'));
    afterAll(() => rmSync(root, { recursive: true, force: true }));
    mkdirSync(join(root, 'app'));
    writeFileSync(join(root, 'app/a'), 'a');
    // The engine's: empty. A user's of the same form: it holds a file, so it is taken.
    mkdirSync(join(root, '.pivot_root7'));
    mkdirSync(join(root, '.pivot_root8'));
    writeFileSync(join(root, '.pivot_root8/keep'), 'k');
    const kept = ['/.pivot_root8', '/.pivot_root8/keep', '/app', '/app/a'];

    it('gone or empty: left out; holding something: read', () => {
      expect([goneOrEmptyDir(join(root, '.pivot_root7')), goneOrEmptyDir(join(root, '.pivot_root9')), goneOrEmptyDir(join(root, '.pivot_root8'))]).toEqual([
        true,
        true,
        false,
      ]);
    });

    it('the walks (find, and the one made here) leave the empty one out and list the other', async () => {
      const walked = walkUpperDir(root, () => false, 100);
      const found = await findUpperDir(root, () => false, 100);
      for (const walk of [walked, found]) {
        if (typeof walk !== 'object') throw new Error(String(walk));
        expect([...walk.entries.keys()].sort()).toEqual(kept);
      }
    });

    it('the whole layer’s tar made here leaves the empty one out and holds the other', async () => {
      const layer = await upperLayerTar({ root, shadowed: () => false } as never);
      if (typeof layer === 'string') throw new Error(layer);
      const names: string[] = [];
      const extract = tar.extract();
      (layer as Readable).pipe(extract);
      for await (const entry of extract) {
        names.push(`/${entry.header.name.replace(/\/$/, '')}`);
        entry.resume();
      }
      expect(names.sort()).toEqual(kept);
    });
  });
});

describe('find and getfattr failing on nothing but one gone mid-walk (stand-ins on PATH that run the real ones, then say so and exit 1)', () => {
  const root = mkdtempSync(join(tmpdir(), 'csx-scratch-run-'));
  const bin = mkdtempSync(join(tmpdir(), 'csx-scratch-bin-'));
  const path = process.env.PATH;
  afterAll(() => {
    process.env.PATH = path;
    rmSync(root, { recursive: true, force: true });
    rmSync(bin, { recursive: true, force: true });
  });
  mkdirSync(join(root, 'app'));
  writeFileSync(join(root, 'app/a'), 'a');
  // The real ones, looked up before PATH leads to the stand-ins.
  const real = Object.fromEntries(['find', 'getfattr'].map((tool) => [tool, execFileSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).trim()]));
  const standIn = (tool: string, message: string) =>
    writeFileSync(join(bin, tool), `#!/bin/sh\n${real[tool]} "$@"\necho "${message}" >&2\nexit 1\n`, { mode: 0o755 });
  standIn('find', `find: '${root}/.pivot_root5': No such file or directory`);
  standIn('getfattr', `getfattr: ${root}/.pivot_root5: No such file or directory`);

  it('find’s records and getfattr’s output stand: the walk and the whole layer’s tar are made', async () => {
    process.env.PATH = `${bin}:${path}`;
    const found = await findUpperDir(root, () => false, 100);
    if (typeof found !== 'object') throw new Error(String(found));
    expect([...found.entries.keys()].sort()).toEqual(['/app', '/app/a']);
    const layer = await upperLayerTar({ root, shadowed: () => false } as never);
    expect(typeof layer).not.toBe('string');
    (layer as Readable).resume();
  });

  it('one that holds something, gone mid-walk, is a failure as before', async () => {
    standIn('find', `find: '${root}/.pivot_root5/data': No such file or directory`);
    standIn('getfattr', `getfattr: ${root}/.pivot_root5/data: No such file or directory`);
    process.env.PATH = `${bin}:${path}`;
    expect(await findUpperDir(root, () => false, 100)).toMatch(/^find exited with 1/);
    expect(await upperLayerTar({ root, shadowed: () => false } as never)).toMatch(/^getfattr failed/);
  });
});
