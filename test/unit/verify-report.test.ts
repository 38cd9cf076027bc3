import * as core from '@actions/core';
import { describe, expect, it } from 'vitest';
import { parseVerifyInputs, parseVerifyOnly } from '../../src/core/inputs.js';
import { CLI_WORDS } from '../../src/core/words.js';
import { verifyFailureLine, verifyLines, verifySummary } from '../../src/report.js';
import type { VerifyReport } from '../../src/snapshot/verify.js';

const get = (values: Record<string, string>) => (name: string) => values[name] ?? '';

const report: VerifyReport = {
  sets: [
    {
      tag: 's-2',
      containers: [
        { snapshot: 's-2', name: 'web', blobs: 3, status: 'ok' },
        { snapshot: 's-2', name: 'db', blobs: 0, status: 'failed', error: 'db layer 0 (dir:/b): checksum mismatch' },
      ],
    },
    { tag: 's-1', containers: [], error: 'the set document fails its digest' },
  ],
  failed: 2,
};

describe('verification report and inputs', () => {
  it('says each set and each container on a line of its own, and every damage in one line', () => {
    expect(verifyLines(report)).toEqual([
      's-2: DAMAGED (1 of 2 container(s)), 3 blob(s) verified',
      '  web: ok, 3 blob(s)',
      '  db: DAMAGED: db layer 0 (dir:/b): checksum mismatch',
      's-1: DAMAGED: the set document fails its digest',
    ]);
    expect(verifyFailureLine(report)).toBe(
      '2 damaged: snapshot s-2 container db (db layer 0 (dir:/b): checksum mismatch); snapshot s-1 (the set document fails its digest)',
    );
    expect(verifyFailureLine({ sets: [{ tag: 'ok', containers: [{ snapshot: 'ok', name: 'web', blobs: 2, status: 'ok' }] }], failed: 0 })).toBeUndefined();
    const summary = verifySummary(core.summary.emptyBuffer(), report).stringify();
    expect(summary).toContain('<tr><th>Snapshot</th><th>Container</th><th>Blobs</th><th>Result</th></tr>');
    expect(summary).toContain('<tr><td>s-2</td><td>db</td><td>0</td><td>❌ db layer 0 (dir:/b): checksum mismatch</td></tr>');
  });

  it('reads verify-only strictly, takes snapshot all, and refuses what only a restore uses, in the words of the interface', () => {
    expect(parseVerifyOnly(get({}))).toBe(false);
    expect(() => parseVerifyOnly(get({ 'verify-only': 'yes' }))).toThrow(/verify-only/);
    expect(parseVerifyInputs(get({ snapshot: 'all' })).snapshot).toBe('all');
    expect(() => parseVerifyInputs(get({ snapshot: 'latest', containers: 'web', paths: '/x' }))).toThrow(
      'containers, paths cannot be used with verify-only: true. Expected them empty: a verification reads every container of the set and restores nothing.',
    );
    expect(() => parseVerifyInputs(get({ snapshot: 'latest', rename: 'a=b' }), CLI_WORDS)).toThrow(/^--rename cannot be used/);
  });
});
