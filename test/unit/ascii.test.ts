import { describe, expect, it } from 'vitest';
// @ts-expect-error: a build script in JavaScript, without types
import { asciiOnly } from '../../scripts/ascii.mjs';

const run = (code: string): unknown => new Function(code)();
const ascii = (code: string): string => (asciiOnly as (code: string, name: string) => string)(code, 'test.js');

describe('build: bundles made pure ASCII (scripts/ascii.mjs)', () => {
  const cases: Record<string, string> = {
    'a string and a comment': "// it’s a comment\nreturn 'l’été → ×1.5';",
    'a template with an expression': 'const n = 2; return `${n} × — ${n}…`;',
    'a regular expression, with and without u': "return [/[→×]+/.exec('a→×b')[0], /é{2}/u.test('éé'), /😀/u.test('x😀')];",
    'an astral character in a string': "return '😀'.length + '😀'.codePointAt(0);",
    'an identifier': 'const café = 3; return café * 2;',
    'a no-break space between tokens': 'const o = null; return o ||\u00a0{ ok: 1 };',
  };
  for (const [what, code] of Object.entries(cases)) {
    it(`${what}: same result, no character above U+007F`, () => {
      const out = ascii(code);
      expect(out).toMatch(/^\p{ASCII}*$/u);
      expect(run(out)).toEqual(run(code));
    });
  }

  it('an ASCII bundle is returned as is', () => {
    const code = "return 'plain';";
    expect(ascii(code)).toBe(code);
  });

  it('refuses a tagged template holding one (the tag would see the escape in its raw text)', () => {
    expect(() => ascii('return String.raw`a→b`;')).toThrow(/test\.js:1: a non-ASCII character in a tagged template/);
  });
});
