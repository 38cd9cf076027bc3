import { afterEach, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parse } from 'yaml';

const ROOT = resolve(import.meta.dirname, '../..');
const SCRIPT = join(ROOT, 'scripts/docs.mjs');

interface ActionYaml {
  inputs: Record<string, { description: string; required?: boolean; default?: string }>;
  outputs: Record<string, { description: string }>;
}
interface InputRow {
  name: string;
  type: string;
  default: string;
  description: string;
}
/** What scripts/docs.mjs exports (plain JavaScript, so typed here). */
interface Docs {
  DOCS: { readme: string; action: string }[];
  TYPES: string[];
  splitSignature(description: string): { type?: string; defaultText?: string; text: string };
  describeInput(name: string, input: ActionYaml['inputs'][string]): InputRow;
  inputsTable(action: ActionYaml): string;
  outputsTable(action: ActionYaml): string;
  replaceRegion(readme: string, table: string, content: string): { text: string; previous: string };
  run(root?: string, opts?: { write?: boolean }): { drift: string[]; errors: string[] };
}

// A runtime URL, so TypeScript does not look for declarations of the .mjs.
const docs = (await import(pathToFileURL(SCRIPT).href)) as Docs;

const action = (file: string, root = ROOT) => parse(readFileSync(join(root, file), 'utf8')) as ActionYaml;
const cli = (...args: string[]) => spawnSync(process.execPath, [SCRIPT, ...args], { encoding: 'utf8' });

/** The lines between a README's markers for one table. */
function region(readme: string, table: string): string[] {
  const lines = readme.split('\n');
  const begin = lines.findIndex((l) => l.startsWith(`<!-- ${table}:begin (generated from action.yml by npm run docs) -->`));
  const end = lines.indexOf(`<!-- ${table}:end -->`);
  expect(begin, `${table}:begin`).toBeGreaterThanOrEqual(0);
  expect(end, `${table}:end`).toBeGreaterThan(begin);
  return lines.slice(begin + 1, end);
}

const temps: string[] = [];
afterEach(() => {
  for (const dir of temps.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A temporary copy of the READMEs and action.yml files the script reads. */
function copy(): string {
  const dir = mkdtempSync(join(tmpdir(), 'csx-docs-'));
  temps.push(dir);
  for (const doc of docs.DOCS) {
    for (const file of [doc.readme, doc.action]) {
      mkdirSync(dirname(join(dir, file)), { recursive: true });
      cpSync(join(ROOT, file), join(dir, file));
    }
  }
  cpSync(join(ROOT, 'workflows'), join(dir, 'workflows'), { recursive: true });
  return dir;
}

describe('README tables generated from action.yml (scripts/docs.mjs)', () => {
  it('the committed READMEs are current', () => {
    expect(docs.run(ROOT)).toEqual({ drift: [], errors: [] });
    const r = cli('--check');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  describe.each([
    ['README.md', 'action.yml'],
    ['restore/README.md', 'restore/action.yml'],
  ])('%s from %s', (readme, file) => {
    const spec = action(file);
    const text = readFileSync(join(ROOT, readme), 'utf8');

    it('lists every input, in order, with a type the legend names and its default', () => {
      const rows = region(text, 'inputs').slice(2);
      expect(rows.map((r) => /^\| `([^`]+)` \|/.exec(r)?.[1])).toEqual(Object.keys(spec.inputs));
      for (const [name, input] of Object.entries(spec.inputs)) {
        const row = docs.describeInput(name, input);
        expect(docs.TYPES, name).toContain(row.type);
        if (input.default === 'true' || input.default === 'false') expect(row.type, name).toBe('Bool');
        const human = docs.splitSignature(input.description).defaultText;
        if (human !== undefined) expect(row.default, name).toBe(human);
        else expect(row.default, name).toBe(input.default ? `\`${input.default}\`` : '');
        expect(row.default, name).not.toContain('${{');
        expect(rows, name).toContain(`| \`${name}\` | ${row.type} |${row.default ? ` ${row.default} ` : ' '}| ${row.description} |`);
      }
      expect(docs.inputsTable(spec)).toBe(region(text, 'inputs').join('\n'));
    });

    it('lists every output, in order, with its description', () => {
      const rows = region(text, 'outputs').slice(2);
      expect(rows.map((r) => /^\| `([^`]+)` \|/.exec(r)?.[1])).toEqual(Object.keys(spec.outputs));
      for (const [name, output] of Object.entries(spec.outputs)) expect(rows).toContain(`| \`${name}\` | ${output.description} |`);
      expect(docs.outputsTable(spec)).toBe(region(text, 'outputs').join('\n'));
    });

    it('keeps the type legend above the inputs table, outside the markers', () => {
      const legend = text.indexOf('Types: **String**; **List**');
      expect(legend).toBeGreaterThan(0);
      expect(legend).toBeLessThan(text.indexOf('<!-- inputs:begin'));
    });
  });

  it('reads the type and a human default from a signature line, and only from a first line that is one', () => {
    expect(docs.splitSignature('List, one per line or comma-separated. Default: all.\nNames.')).toEqual({ type: 'List', defaultText: 'all', text: 'Names.' });
    expect(docs.splitSignature("String. Default: the workflow's token.\nA token.")).toEqual({
      type: 'String',
      defaultText: "the workflow's token",
      text: 'A token.',
    });
    expect(docs.splitSignature('Choice.\n`a` or `b`.')).toEqual({ type: 'Choice', defaultText: undefined, text: '`a` or `b`.' });
    expect(docs.splitSignature('List.')).toEqual({ type: undefined, defaultText: undefined, text: 'List.' });
    expect(docs.splitSignature('Pause each container.\nMore.').type).toBeUndefined();
    expect(docs.describeInput('pause', { description: 'Pause.', default: 'true' })).toEqual({
      name: 'pause',
      type: 'Bool',
      default: '`true`',
      description: 'Pause.',
    });
    expect(docs.describeInput('x', { description: 'X.', default: '' })).toEqual({ name: 'x', type: 'String', default: '', description: 'X.' });
    expect(() => docs.describeInput('repository', { description: 'A repository.', default: '${{ github.repository }}' })).toThrow(/expression/);
  });

  it('escapes pipes, so a description cannot break the table', () => {
    const table = docs.outputsTable({ inputs: {}, outputs: { x: { description: 'a | b' } } });
    expect(table.split('\n')[2]).toBe('| `x` | a \\| b |');
  });

  it('reports a README whose table drifted, one line per table, and rewrites it', () => {
    const dir = copy();
    const readme = join(dir, 'README.md');
    const original = readFileSync(readme, 'utf8');
    writeFileSync(readme, original.replace('| Password or token. Masked in the log. |', '| Password or token. |'));
    const restoreAction = join(dir, 'restore/action.yml');
    writeFileSync(restoreAction, readFileSync(restoreAction, 'utf8').replace("'How many containers were not restored.", "'How many containers failed."));

    expect(docs.run(dir)).toEqual({
      drift: ['README.md: the inputs table differs from action.yml', 'restore/README.md: the outputs table differs from restore/action.yml'],
      errors: [],
    });
    const r = cli('--check', dir);
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([
      'README.md: the inputs table differs from action.yml; run npm run docs and commit',
      'restore/README.md: the outputs table differs from restore/action.yml; run npm run docs and commit',
    ]);

    expect(cli(dir).status).toBe(0);
    expect(readFileSync(readme, 'utf8')).toBe(original);
    expect(readFileSync(join(dir, 'restore/README.md'), 'utf8')).toContain('| `failed` | How many containers failed. The step fails when this is not 0. |');
    expect(docs.run(dir)).toEqual({ drift: [], errors: [] });
  });

  it('fails on a README without its markers, and leaves everything outside them alone', () => {
    const dir = copy();
    const readme = join(dir, 'restore/README.md');
    writeFileSync(readme, readFileSync(readme, 'utf8').replace('<!-- outputs:end -->\n', ''));
    expect(docs.run(dir).errors).toEqual([
      expect.stringMatching(/^restore\/README\.md: cannot generate its tables from restore\/action\.yml: expected one <!-- outputs:begin/),
    ]);
    expect(cli('--check', dir).status).toBe(1);

    const r = docs.replaceRegion('above\n<!-- inputs:begin (x) -->\nold\n<!-- inputs:end -->\nbelow\n', 'inputs', 'new');
    expect(r).toEqual({ text: 'above\n<!-- inputs:begin (x) -->\nnew\n<!-- inputs:end -->\nbelow\n', previous: 'old\n' });
  });

  it('embeds the complete workflows verbatim, and reports one that drifted', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const templates = readdirSync(join(ROOT, 'workflows')).filter((f) => f.endsWith('.yml'));
    expect(templates.length).toBeGreaterThanOrEqual(5);
    for (const file of templates) {
      expect(readme).toContain('```yaml\n' + readFileSync(join(ROOT, 'workflows', file), 'utf8').trimEnd() + '\n```');
    }
    const dir = copy();
    const wf = join(dir, 'workflows', 'fleet-backup.yml');
    writeFileSync(wf, readFileSync(wf, 'utf8').replace('name:', 'name: # changed\n  # x\nname2:'));
    expect(docs.run(dir).drift).toEqual(['README.md: the workflow fleet-backup.yml differs from workflows/fleet-backup.yml']);
    expect(cli(dir).status).toBe(0);
    expect(docs.run(dir)).toEqual({ drift: [], errors: [] });
  });

  it('refuses a template in workflows/ that the README does not embed', () => {
    const dir = copy();
    writeFileSync(join(dir, 'workflows', 'new-template.yml'), 'name: x\n');
    expect(docs.run(dir).errors).toEqual([
      'README.md: workflows/new-template.yml is not embedded (add a <!-- workflow:new-template.yml:begin --> … <!-- workflow:new-template.yml:end --> region)',
    ]);
    expect(cli('--check', dir).status).toBe(1);
  });
});
