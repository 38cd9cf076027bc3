import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Resources, runContainer } from '../support/fixtures.js';
import { runCli, runStep } from '../support/runner.js';

describe('retention through the bundled action and CLI', () => {
  const res = new Resources(inject('runPrefix'), 'e2e-keep');
  let store = '';
  let app = '';
  const env = { DOCKER_CONFIG: '/nonexistent' };
  const tags = () =>
    readdirSync(join(store, 'sets'))
      .map((n) => n.replace(/\.json$/, ''))
      .sort();

  beforeAll(async () => {
    store = join(res.tempDir(), 'store');
    app = res.name('app');
    await runContainer({ name: app, Image: inject('fixtureImage'), Cmd: ['sh', '-c', 'exec sleep 100000'] }, 'running');
  });
  afterAll(() => res.cleanup());

  it('the action applies keep after its set is written: pruned output and a Retention section in the summary', async () => {
    for (const tag of ['k1', 'k2']) {
      const r = await runStep('.', { containers: app, destination: `dir:${store}`, tag, 'pre-command': `echo ${tag} > /stamp` }, { env });
      expect(r.code, r.stderr).toBe(0);
      expect(r.outputs.pruned).toBe('');
    }
    const r = await runStep('.', { containers: app, destination: `dir:${store}`, tag: 'k3', 'pre-command': 'echo k3 > /stamp', keep: 'last=2' }, { env });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const pruned = JSON.parse(r.outputs.pruned) as Array<{
      destination: string;
      removed: Array<{ tag: string }>;
      kept: Array<{ tag: string; reasons: string[] }>;
      swept: { blobs: number; bytes: number };
    }>;
    expect(pruned.map((p) => [p.destination, p.kept.map((k) => k.tag), p.removed.map((x) => x.tag)])).toEqual([[`dir:${store}`, ['k3', 'k2'], ['k1']]]);
    expect(pruned[0].swept.blobs).toBeGreaterThan(0);
    expect(r.summary).toContain('#### Retention');
    expect(r.summary).toMatch(/removed\s+k1/);
    expect(tags()).toEqual(['k2', 'k3']);
  });

  it('prune-only prunes without backing up; the CLI prune says what it keeps and why, and refuses a bad policy in one line', async () => {
    const dry = await runCli(['prune', '--destination', `dir:${store}`, '--keep', 'last=1', '--dry-run']);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout.trimEnd()).toMatch(
      /^dir:.*: keep last=1 \(dry run\): 1 kept, 1 would remove\n {2}keep\s+k3\s+\S+\s+last snapshot, newest set\n {2}would remove\s+k2\s+\S+\nWould free \S+ \S+ \(\d+ unreferenced blob\(s\)\)\.$/,
    );
    expect(tags()).toEqual(['k2', 'k3']);

    const only = await runStep('.', { destination: `dir:${store}`, keep: 'last=1', 'prune-only': 'true' }, { env });
    expect(only.code, only.stdout + only.stderr).toBe(0);
    expect(only.outputs.snapshot).toBe('');
    expect((JSON.parse(only.outputs.pruned) as Array<{ removed: Array<{ tag: string }> }>)[0].removed.map((x) => x.tag)).toEqual(['k2']);
    expect(only.summary).not.toContain('<th>Container</th>');
    expect(tags()).toEqual(['k3']);

    const bad = await runCli(['prune', '--destination', `dir:${store}`, '--keep', 'dialy=3']);
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^error: Invalid --keep 'dialy=3'\. Expected rules like last=7/)]);
    const none = await runStep('.', { destination: `dir:${store}`, 'prune-only': 'true' }, { env });
    expect(none.code).not.toBe(0);
    expect(none.stdout + none.stderr).toContain('prune-only needs keep.');
  });
});
