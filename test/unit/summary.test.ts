import * as core from '@actions/core';
import { describe, expect, it } from 'vitest';
import { backupSummary } from '../../src/report.js';
import type { BackupResult, ContainerOutcome } from '../../src/snapshot/backup.js';

const container = (over: Partial<ContainerOutcome>): ContainerOutcome => ({
  name: 'web',
  id: 'c1',
  state: 'running',
  status: 'ok',
  destinations: [],
  volumes: [],
  bytes: 2048,
  pausedMs: 0,
  stoppedMs: 0,
  blobs: { written: 1, reused: 0 },
  ...over,
});

describe('the backup job summary, a table through core.summary', () => {
  it('shows one row per container with every field, the text of each cell as it is', () => {
    const result: BackupResult = {
      tag: 'n-1',
      failed: 1,
      written: true,
      containers: [
        container({
          volumes: ['data', 'logs'],
          pausedMs: 12,
          destinations: [
            { destination: 'dir:/a', ref: 'dir:/a#n-1/web' },
            { destination: 'artifact:x', ref: 'artifact:x#n-1/web' },
          ],
        }),
        container({ name: 'db', status: 'failed', error: 'expected <digest> | got\nnothing & more' }),
      ],
      artifacts: [{ destination: 'artifact:x', name: 'x@n-1.attempt-1.set.json', id: 7, url: 'https://example.test/a/7' }],
      destinations: [{ destination: 'dir:/a', written: true }],
    } as BackupResult;
    const text = backupSummary(core.summary.emptyBuffer(), result, false).stringify();
    expect(text).toContain(
      '### Container snapshot n-1\n\n<table><tr><th>Container</th><th>State</th><th>Result</th><th>Volumes</th><th>Stored</th><th>Quiesced</th><th>Stored at</th></tr>',
    );
    expect(text).toContain(
      '<tr><td>web</td><td>running</td><td>✅</td><td>data, logs</td><td>2.0 KiB</td><td>12 ms paused</td><td>dir:/a#n-1/web<br>artifact:x#n-1/web</td></tr>',
    );
    expect(text).toContain(
      '<tr><td>db</td><td>running</td><td>❌ expected &lt;digest&gt; | got nothing &amp; more</td><td>—</td><td>2.0 KiB</td><td>—</td><td>—</td></tr></table>\n',
    );
    expect(text).toContain('\nSet written to:\n- ✅ dir:/a\n');
    expect(text).toContain('Artifact: [x@n-1.attempt-1.set.json](https://example.test/a/7) (ID 7)\n');
  });
});
