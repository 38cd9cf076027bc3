#!/usr/bin/env node
// Prints, in a few lines each, the failed tests of a vitest JSON report (--reporter=json):
// the file, the test's full name, and the start of its failure message (stack frames left out).
// test-engines.sh prints it last, so that the tail of a CI log says what failed and why, not only
// where (a failure's message can be far above the end of a tier's log).
// Usage: node scripts/failures.mjs REPORT.json [LABEL]
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { stripVTControlCharacters as strip } from 'node:util';

const MAX_LINES = 14;
const [file, label = ''] = process.argv.slice(2);
let report;
try {
  report = JSON.parse(readFileSync(file, 'utf8'));
} catch (err) {
  console.log(`    (no test report at ${file}: ${err.message.split('\n')[0]})`);
  process.exit(0);
}
let printed = 0;
for (const suite of report.testResults ?? []) {
  const name = relative(process.cwd(), suite.name);
  const failed = (suite.assertionResults ?? []).filter((a) => a.status === 'failed');
  // A file that failed outside any test (its import, a hook) has a message and no failed test.
  if (failed.length === 0 && suite.status === 'failed') failed.push({ fullName: '(the file itself)', failureMessages: [suite.message ?? ''] });
  for (const a of failed) {
    printed++;
    console.log(`--- ${label}${name} > ${a.fullName}`);
    const lines = strip(a.failureMessages?.[0] ?? '')
      .split('\n')
      .filter((l) => !/^\s+at /.test(l));
    for (const l of lines.slice(0, MAX_LINES)) console.log(`    ${l.slice(0, 300)}`);
    if (lines.length > MAX_LINES) console.log(`    … (${lines.length - MAX_LINES} more lines in the tier's log)`);
  }
}
// A run can fail with no failed test: an unhandled error, which the JSON report leaves out.
if (printed === 0) console.log(`--- ${label}no failed test in the report: the tier's log above says what failed (an unhandled error, say)`);
