import * as core from '@actions/core';
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TOOL, USER_AGENT } from '../../src/version.js';
import { backupSummary, restoreSummary } from '../../src/report.js';
import type { BackupResult } from '../../src/snapshot/backup.js';
import type { RestoreResult } from '../../src/snapshot/restore-types.js';

const json = (file: string) => JSON.parse(readFileSync(file, 'utf8'));
const pkg = json('package.json') as { version: string };
// semver 2.0.0's grammar, without build metadata (a tag never carries it).
const SEMVER = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?$/;

describe('the version, read once from package.json', () => {
  it('is a semver version, the same in package-lock.json', () => {
    expect(pkg.version).toMatch(SEMVER);
    const lock = json('package-lock.json') as { version: string; packages: Record<string, { version: string }> };
    expect([lock.version, lock.packages[''].version]).toEqual([pkg.version, pkg.version]);
  });

  it('is the tool version written into sets and sent as the User-Agent', () => {
    expect(TOOL).toEqual({ name: 'container-snapshot', version: pkg.version });
    expect(USER_AGENT).toBe(`container-snapshot/${pkg.version}`);
  });

  it('ends each job summary', () => {
    const backup = { tag: 't1', containers: [], destinations: [], artifacts: [] } as unknown as BackupResult;
    const restore = { tag: 't1', containers: [] } as unknown as RestoreResult;
    for (const text of [backupSummary(core.summary.emptyBuffer(), backup, false).stringify(), restoreSummary(core.summary.emptyBuffer(), restore).stringify()])
      expect(text.trimEnd().split('\n').at(-1)).toBe(`<sub>container-snapshot ${pkg.version}</sub>`);
  });

  it('has its section in CHANGELOG.md, with its link', () => {
    const changelog = readFileSync('CHANGELOG.md', 'utf8');
    expect(changelog).toMatch(new RegExp(`^## \\[${pkg.version.replace(/\./g, '\\.')}\\] - \\d{4}-\\d{2}-\\d{2}$`, 'm'));
    expect(changelog).toContain(`\n[${pkg.version}]: https://github.com/`);
    expect(changelog).toMatch(/^## \[Unreleased\]$/m);
  });

  it('is the major tag every README and template uses', () => {
    const major = `v${SEMVER.exec(pkg.version)![1]}`;
    const files = ['README.md', 'restore/README.md', ...readdirSync('workflows').map((f) => join('workflows', f))];
    const refs = files.flatMap((f) =>
      [...readFileSync(f, 'utf8').matchAll(/uses: [\w-]+\/container-snapshot(?:\/restore)?@(\S+)/g)].map((m) => `${f}: ${m[1]}`),
    );
    expect(refs.length).toBeGreaterThanOrEqual(10);
    expect(refs.filter((r) => !r.endsWith(`: ${major}`))).toEqual([]);
  });
});
