import { describe, expect, it } from 'vitest';
import { isEngineScratch, vanishedScratchOnly } from '../../src/snapshot/engine-scratch.js';

describe("the engine's own directories of a moment (moby SwitchRoot's os.MkdirTemp(root, '.pivot_root'))", () => {
  it('are /.pivot_root and digits at the root, and what is below one; nothing else', () => {
    expect(['/.pivot_root1130745838', '/.pivot_root7', '/.pivot_root42/old'].filter(isEngineScratch)).toHaveLength(3);
    expect(['/.pivot_root', '/.pivot_rootx1', '/app/.pivot_root12', '/.pivot_root12x', '.pivot_root12', '/x/.pivot_root1/y'].filter(isEngineScratch)).toEqual(
      [],
    );
  });

  it('a find or getfattr run failed only on one gone mid-walk (C locale messages, as printed here); not when any other line is there', () => {
    const root = '/var/lib/docker/overlay2/abc/diff';
    expect(vanishedScratchOnly(`find: '${root}/.pivot_root12': No such file or directory\n`, root)).toBe(true);
    expect(vanishedScratchOnly(`getfattr: ${root}/.pivot_root12: No such file or directory\n`, `${root}/`)).toBe(true);
    expect(
      vanishedScratchOnly(`find: '${root}/.pivot_root12/x': No such file or directory\ngetfattr: ${root}/.pivot_root9: No such file or directory`, root),
    ).toBe(true);
    // Another path, another error, another root, or nothing said: a failure as before.
    expect(vanishedScratchOnly(`find: '${root}/etc': No such file or directory\n`, root)).toBe(false);
    expect(vanishedScratchOnly(`find: '${root}/.pivot_root12': Permission denied\n`, root)).toBe(false);
    expect(vanishedScratchOnly(`getfattr: /other/.pivot_root12: No such file or directory\n`, root)).toBe(false);
    expect(vanishedScratchOnly(`getfattr: ${root}/.pivot_root12: No such file or directory\ngetfattr: ${root}/etc/x: No such file or directory\n`, root)).toBe(
      false,
    );
    expect(vanishedScratchOnly('', root)).toBe(false);
  });
});
