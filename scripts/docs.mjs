#!/usr/bin/env node
// Generates the Inputs and Outputs tables of README.md (from action.yml) and of
// restore/README.md (from restore/action.yml), between marker comments:
//
//   <!-- inputs:begin (generated from action.yml by npm run docs) -->   … <!-- inputs:end -->
//   <!-- outputs:begin (generated from action.yml by npm run docs) -->  … <!-- outputs:end -->
//
// Usage:
//   node scripts/docs.mjs            rewrite the tables (npm run docs)
//   node scripts/docs.mjs --check    change nothing; exit 1, one line per table, when a
//                                    README differs from what it would generate (CI)
//   either with a directory argument: work on that checkout instead of this one
//
// Everything outside the markers (the type legend above the inputs table included) is
// hand-written and left alone.
//
// Where the Type and Default columns come from: action.yml itself, so it stays the
// single source. An input's `description:` is the README's Description cell. When the
// Type or the Default column cannot be read off the input, the description starts with
// a one-line "signature", a sentence for the reader of action.yml as much as a marker
// for this script, which moves it into those columns:
//
//   containers:
//     description: |-
//       List, one per line or comma-separated. Default: all.
//       Names, full or short IDs, globs (`web-*`), …
//
//   signature  = TYPE [", " note] "." [" Default: " human default "."]
//   TYPE       = String | List | Bool | Choice | Number   (the words of the README legend)
//
// Without a signature, the type is Bool when `default:` is 'true' or 'false', else String,
// and the Default column is `default:` in backticks (empty when it is empty). A default
// that is an expression (${{ … }}) must be given a human one in the signature.
//
// Why a signature line rather than extra keys or a map in this script: GitHub's
// metadata syntax has no key for an input's type (an extra key risks the runner's and
// the schema validators' checks), and a map here would hide from action.yml's readers (the Marketplace, editors that
// show input descriptions) what they most need: that a List takes one item per line or
// commas, and what an empty value means. The signature says exactly that, in words.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parse } from 'yaml';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Each README, the action.yml its tables are generated from, and whether it embeds workflows/ (relative to the root). */
export const DOCS = [
  { readme: 'README.md', action: 'action.yml', workflows: true },
  { readme: 'restore/README.md', action: 'restore/action.yml' },
];

export const TYPES = ['String', 'List', 'Bool', 'Choice', 'Number'];
const SIGNATURE = new RegExp(`^(${TYPES.join('|')})(?:, [^.\\n]+)?\\.(?: Default: (.+)\\.)?$`);

/** Splits an input's description into its signature (if any) and the rest. */
export function splitSignature(description) {
  const text = String(description ?? '').trim();
  const newline = text.indexOf('\n');
  if (newline < 0) return { type: undefined, defaultText: undefined, text };
  const m = SIGNATURE.exec(text.slice(0, newline).trim());
  if (m === null) return { type: undefined, defaultText: undefined, text };
  return { type: m[1], defaultText: m[2], text: text.slice(newline + 1).trim() };
}

/** One table row's cells for an input: { name, type, default, description }. */
export function describeInput(name, input) {
  const spec = input ?? {};
  const sig = splitSignature(spec.description);
  const value = spec.default === undefined ? '' : String(spec.default);
  const type = sig.type ?? (value === 'true' || value === 'false' ? 'Bool' : 'String');
  if (sig.defaultText === undefined && value.includes('${{')) {
    throw new Error(
      `input '${name}': its default ${value} is an expression; start its description with a signature line such as "String. Default: this repository."`,
    );
  }
  const def = sig.defaultText ?? (value === '' ? '' : code(value));
  if (sig.text === '') throw new Error(`input '${name}' has no description`);
  return { name, type, default: def, description: sig.text };
}

/** A markdown code span for a value (longer fences when the value holds backticks). */
function code(value) {
  const fence = '`'.repeat(Math.max(0, ...[...value.matchAll(/`+/g)].map((m) => m[0].length)) + 1);
  return fence.length > 1 ? `${fence} ${value} ${fence}` : `\`${value}\``;
}

/** A table cell: one line, pipes escaped. */
function cell(text) {
  return String(text).replace(/\s+/g, ' ').trim().replaceAll('|', '\\|');
}

function row(cells) {
  return `|${cells.map((c) => (cell(c) === '' ? ' ' : ` ${cell(c)} `)).join('|')}|`;
}

/** The inputs table of a parsed action.yml, as markdown lines without a final newline. */
export function inputsTable(action) {
  const lines = ['| Name | Type | Default | Description |', '|---|---|---|---|'];
  for (const [name, input] of Object.entries(action.inputs ?? {})) {
    const d = describeInput(name, input);
    lines.push(row([code(d.name), d.type, d.default, d.description]));
  }
  return lines.join('\n');
}

/** The outputs table of a parsed action.yml, as markdown lines without a final newline. */
export function outputsTable(action) {
  const lines = ['| Name | Description |', '|---|---|'];
  for (const [name, output] of Object.entries(action.outputs ?? {})) {
    const description = String(output?.description ?? '').trim();
    if (description === '') throw new Error(`output '${name}' has no description`);
    lines.push(row([code(name), description]));
  }
  return lines.join('\n');
}

export const TABLES = { inputs: inputsTable, outputs: outputsTable };

const beginMarker = (table) => new RegExp(`^<!-- ${table}:begin\\b.*-->[ \\t]*$`, 'gm');
const endMarker = (table) => new RegExp(`^<!-- ${table}:end -->[ \\t]*$`, 'gm');

/**
 * The README text with the region between `table`'s markers replaced by `content`, and
 * what the region held before. Throws when the markers are missing, repeated or out of order.
 */
export function replaceRegion(readme, table, content) {
  const begins = [...readme.matchAll(beginMarker(table))];
  const ends = [...readme.matchAll(endMarker(table))];
  if (begins.length !== 1 || ends.length !== 1) {
    throw new Error(`expected one <!-- ${table}:begin … --> and one <!-- ${table}:end --> line, found ${begins.length} and ${ends.length}`);
  }
  const from = begins[0].index + begins[0][0].length + 1;
  const to = ends[0].index;
  if (to < from) throw new Error(`<!-- ${table}:end --> comes before <!-- ${table}:begin … -->`);
  return { text: readme.slice(0, from) + content + '\n' + readme.slice(to), previous: readme.slice(from, to) };
}

/**
 * Regenerates the tables of one README from its action.yml text. Returns the new README
 * text and the names of the tables that changed.
 */
export function render(readme, actionYaml) {
  const action = parse(actionYaml);
  let text = readme;
  const changed = [];
  for (const [table, generate] of Object.entries(TABLES)) {
    const content = generate(action);
    const r = replaceRegion(text, table, content);
    if (r.previous !== content + '\n') changed.push(table);
    text = r.text;
  }
  return { text, changed };
}

/**
 * Checks (write: false) or rewrites (write: true) every README under `root`. Returns
 * `drift`, one line per table that differs from what its action.yml generates (with
 * write, those tables have been rewritten), and `errors`, one line per README whose
 * tables cannot be generated (missing markers, an expression default without a human one).
 */
export function run(root = ROOT, { write = false } = {}) {
  const drift = [];
  const errors = [];
  for (const doc of DOCS) {
    const readmePath = join(root, doc.readme);
    const readme = readFileSync(readmePath, 'utf8');
    let result;
    try {
      result = render(readme, readFileSync(join(root, doc.action), 'utf8'));
    } catch (err) {
      errors.push(`${doc.readme}: cannot generate its tables from ${doc.action}: ${err.message}`);
      continue;
    }
    for (const table of result.changed) drift.push(`${doc.readme}: the ${table} table differs from ${doc.action}`);
    let text = result.text;
    if (doc.workflows) {
      try {
        const embedded = renderWorkflows(text, (file) => readFileSync(join(root, 'workflows', file), 'utf8'));
        for (const file of embedded.changed) drift.push(`${doc.readme}: the workflow ${file} differs from workflows/${file}`);
        for (const file of readdirSync(join(root, 'workflows'))
          .filter((f) => /\.ya?ml$/.test(f))
          .sort()) {
          if (!embedded.files.includes(file))
            errors.push(`${doc.readme}: workflows/${file} is not embedded (add a <!-- workflow:${file}:begin --> … <!-- workflow:${file}:end --> region)`);
        }
        text = embedded.text;
      } catch (err) {
        errors.push(`${doc.readme}: cannot embed its workflows: ${err.message}`);
      }
    }
    if (write && text !== readme) writeFileSync(readmePath, text);
  }
  return { drift, errors };
}

const WORKFLOW_MARKER = /^<!-- (workflow:[\w.-]+\.ya?ml):begin\b.*-->[ \t]*$/gm;

/**
 * The complete workflows the root README shows, one per use: each region
 * `<!-- workflow:FILE:begin … -->` … `<!-- workflow:FILE:end -->` holds workflows/FILE verbatim.
 * Returns the new text, the files whose region changed and every file embedded.
 */
export function renderWorkflows(readme, readWorkflow) {
  let text = readme;
  const changed = [];
  const files = [];
  for (const [, region] of [...readme.matchAll(WORKFLOW_MARKER)]) {
    const file = region.slice('workflow:'.length);
    files.push(file);
    const content = `\`\`\`yaml\n${readWorkflow(file).trimEnd()}\n\`\`\``;
    const r = replaceRegion(text, region, content);
    if (r.previous !== content + '\n') changed.push(file);
    text = r.text;
  }
  return { text, changed, files };
}

function main(argv) {
  const check = argv.includes('--check');
  const unknown = argv.filter((a) => a.startsWith('-') && a !== '--check');
  const dirs = argv.filter((a) => !a.startsWith('-'));
  if (unknown.length > 0 || dirs.length > 1) {
    console.error('usage: node scripts/docs.mjs [--check] [ROOT]');
    return 2;
  }
  const { drift, errors } = run(dirs.length === 1 ? resolve(dirs[0]) : ROOT, { write: !check });
  for (const e of errors) console.error(e);
  if (check) {
    for (const d of drift) console.error(`${d}; run npm run docs and commit`);
    if (drift.length === 0 && errors.length === 0) console.log('READMEs: the inputs and outputs tables match action.yml, the workflows match workflows/');
    return drift.length > 0 || errors.length > 0 ? 1 : 0;
  }
  for (const d of drift) console.log(`${d}: rewritten`);
  return errors.length > 0 ? 1 : 0;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  process.exitCode = main(process.argv.slice(2));
}
