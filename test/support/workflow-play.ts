import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { parseFileCommands, runStep, ROOT } from './runner.js';
import type { Job, Step, Workflow } from './workflow-types.js';

/**
 * Plays a workflow template the way the runner would on one self-hosted machine: jobs in
 * `needs` order with their `if:`, each job's steps in order with their `if:`, `${{ … }}`
 * expressions evaluated (a small subset of the expression language), our actions run through
 * runStep (main, then post at the end of the job), docker/login-action simulated by what it
 * does (a DOCKER_CONFIG config.json with `auths`, removed again by its post step), and `run:`
 * steps run with bash as the runner runs them.
 */

type Value = string | number | boolean | null | undefined | Value[] | { [key: string]: Value };
export type Contexts = { [key: string]: Value };

// ---------------------------------------------------------------- expressions

type Token = { kind: 'str' | 'num' | 'id' | 'op'; text: string };

function tokenize(src: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    if (/\s/.test(c)) i++;
    else if (c === "'") {
      let s = '';
      for (i++; ; i++) {
        if (i >= src.length) throw new Error(`unterminated string in ${src}`);
        if (src[i] === "'" && src[i + 1] === "'") {
          s += "'";
          i++;
        } else if (src[i] === "'") break;
        else s += src[i];
      }
      i++;
      tokens.push({ kind: 'str', text: s });
    } else if (/[0-9]/.test(c)) {
      const m = /^[0-9.]+/.exec(src.slice(i))![0];
      tokens.push({ kind: 'num', text: m });
      i += m.length;
    } else if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][A-Za-z0-9_-]*/.exec(src.slice(i))![0];
      tokens.push({ kind: 'id', text: m });
      i += m.length;
    } else {
      const op = ['||', '&&', '==', '!=', '!', '(', ')', ',', '.'].find((o) => src.startsWith(o, i));
      if (!op) throw new Error(`unsupported character '${c}' in expression ${src}`);
      tokens.push({ kind: 'op', text: op });
      i += op.length;
    }
  }
  return tokens;
}

const truthy = (v: Value) => !(v === false || v === 0 || v === '' || v === null || v === undefined);

export function toText(v: Value): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/** Evaluates one expression (without `${{ }}`). `status` answers success() / failure(). */
export function evaluate(src: string, ctx: Contexts, status: { failed: boolean } = { failed: false }): Value {
  const tokens = tokenize(src);
  let pos = 0;
  const peek = (text: string) => tokens[pos]?.kind === 'op' && tokens[pos].text === text;
  const expect = (text: string) => {
    if (!peek(text)) throw new Error(`expected '${text}' in ${src}`);
    pos++;
  };
  const functions: Record<string, (args: Value[]) => Value> = {
    success: () => !status.failed,
    failure: () => status.failed,
    always: () => true,
    cancelled: () => false,
    startsWith: ([text, prefix]) => toText(text).toLowerCase().startsWith(toText(prefix).toLowerCase()),
    format: ([fmt, ...args]) => toText(fmt).replace(/\{(\d+)\}/g, (_, n: string) => toText(args[Number(n)])),
  };
  const or = (): Value => {
    let left = and();
    while (peek('||')) {
      pos++;
      const right = and();
      left = truthy(left) ? left : right;
    }
    return left;
  };
  const and = (): Value => {
    let left = equality();
    while (peek('&&')) {
      pos++;
      const right = equality();
      left = truthy(left) ? right : left;
    }
    return left;
  };
  const equality = (): Value => {
    let left = unary();
    while (peek('==') || peek('!=')) {
      const negate = tokens[pos++].text === '!=';
      const right = unary();
      const same = toText(left).toLowerCase() === toText(right).toLowerCase();
      left = negate ? !same : same;
    }
    return left;
  };
  const unary = (): Value => {
    if (peek('!')) {
      pos++;
      return !truthy(unary());
    }
    return primary();
  };
  const primary = (): Value => {
    const t = tokens[pos++];
    if (!t) throw new Error(`unexpected end of ${src}`);
    if (t.kind === 'str') return t.text;
    if (t.kind === 'num') return Number(t.text);
    if (t.kind === 'op' && t.text === '(') {
      const v = or();
      expect(')');
      return v;
    }
    if (t.kind !== 'id') throw new Error(`unexpected '${t.text}' in ${src}`);
    if (t.text === 'true' || t.text === 'false') return t.text === 'true';
    if (t.text === 'null') return null;
    if (peek('(')) {
      pos++;
      const args: Value[] = [];
      while (!peek(')')) {
        args.push(or());
        if (!peek(')')) expect(',');
      }
      pos++;
      const fn = functions[t.text];
      if (!fn) throw new Error(`unsupported function ${t.text}() in ${src}`);
      return fn(args);
    }
    if (!(t.text in ctx)) throw new Error(`unknown context '${t.text}' in ${src}`);
    let v: Value = ctx[t.text];
    while (peek('.')) {
      pos++;
      const key = tokens[pos++];
      if (key?.kind !== 'id') throw new Error(`expected a property name in ${src}`);
      v = v !== null && typeof v === 'object' && !Array.isArray(v) ? v[key.text] : undefined;
    }
    return v;
  };
  const value = or();
  if (pos !== tokens.length) throw new Error(`unexpected '${tokens[pos].text}' in ${src}`);
  return value;
}

/** Replaces each `${{ … }}` in a string with its value as text. */
export function substitute(text: string, ctx: Contexts): string {
  return text.replace(/\$\{\{(.*?)\}\}/gs, (_, expr: string) => toText(evaluate(expr, ctx)));
}

/** An `if:` condition: implicitly `success() && (…)` unless it calls a status function. */
function condition(src: string | undefined, ctx: Contexts, failed: boolean): boolean {
  const expr = (src ?? 'success()').replace(/^\s*\$\{\{(.*)\}\}\s*$/s, '$1');
  const full = /\b(success|failure|always|cancelled)\s*\(/.test(expr) ? expr : `success() && (${expr})`;
  return truthy(evaluate(full, ctx, { failed }));
}

// ---------------------------------------------------------------- running

export interface StepRecord {
  id?: string;
  name?: string;
  outcome: 'success' | 'failure' | 'skipped';
  outputs: Record<string, string>;
  log: string;
}
export interface JobRecord {
  result: 'success' | 'failure' | 'skipped';
  outputs: Record<string, string>;
  steps: StepRecord[];
}

export interface PlayOptions {
  /** Values of the contexts the template reads: inputs, vars, secrets, runner, github … */
  contexts: Contexts;
  /** Our actions by their `uses:` reference, as the directory of their action.yml. */
  actions: Record<string, string>;
  /** The runner's environment for every step (DOCKER_CONFIG among it). */
  env: Record<string, string>;
  /** Replaces a `run:` script: return the new script, or undefined to keep the template's. */
  run?: (job: string, step: Step) => string | undefined;
}

export function loadWorkflow(file: string): Workflow {
  return parse(readFileSync(join(ROOT, 'workflows', file), 'utf8'), { strict: true, uniqueKeys: true }) as Workflow;
}

/** Inputs of a workflow_dispatch run: the declared defaults, then what the "user" typed. */
export function dispatchInputs(wf: Workflow, given: Record<string, string | boolean>): Record<string, string | boolean> {
  const declared = wf.on.workflow_dispatch?.inputs ?? {};
  for (const name of Object.keys(given)) if (!(name in declared)) throw new Error(`workflow_dispatch has no input '${name}'`);
  return Object.fromEntries(Object.entries(declared).map(([name, spec]) => [name, given[name] ?? (spec.default as string | boolean | undefined) ?? '']));
}

function withValues(step: Step, ctx: Contexts): Record<string, string> {
  return Object.fromEntries(Object.entries(step.with ?? {}).map(([k, v]) => [k, substitute(typeof v === 'string' ? v : toText(v as Value), ctx)]));
}

async function bash(script: string, env: NodeJS.ProcessEnv, cwd: string): Promise<{ code: number; log: string; outputs: Record<string, string> }> {
  const dir = mkdtempSync(join(tmpdir(), 'csx-run-'));
  try {
    writeFileSync(join(dir, 'script.sh'), script);
    writeFileSync(join(dir, 'output'), '');
    const child = spawn('bash', ['--noprofile', '--norc', '-eo', 'pipefail', join(dir, 'script.sh')], {
      env: { ...env, GITHUB_OUTPUT: join(dir, 'output') },
      cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = '';
    child.stdout.on('data', (c: Buffer) => (log += c.toString()));
    child.stderr.on('data', (c: Buffer) => (log += c.toString()));
    const code = await new Promise<number>((res) => child.on('close', (c) => res(c ?? 1)));
    return { code, log, outputs: parseFileCommands(readFileSync(join(dir, 'output'), 'utf8')) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function dockerConfigFile(env: Record<string, string>): string {
  if (!env.DOCKER_CONFIG) throw new Error('the play needs DOCKER_CONFIG in env, as docker/login-action writes there');
  mkdirSync(env.DOCKER_CONFIG, { recursive: true });
  return join(env.DOCKER_CONFIG, 'config.json');
}

function readConfig(file: string): { auths?: Record<string, { auth: string }> } {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as { auths?: Record<string, { auth: string }> };
  } catch {
    return {};
  }
}

/** docker/login-action: `docker login REGISTRY` into DOCKER_CONFIG; its post step logs out. */
function login(withs: Record<string, string>, env: Record<string, string>): () => void {
  const file = dockerConfigFile(env);
  if (!withs.registry || !withs.username || !withs.password) throw new Error('docker/login-action: registry, username and password are required here');
  const config = readConfig(file);
  config.auths = { ...config.auths, [withs.registry]: { auth: Buffer.from(`${withs.username}:${withs.password}`).toString('base64') } };
  writeFileSync(file, JSON.stringify(config, null, 2));
  return () => {
    const after = readConfig(file);
    delete after.auths?.[withs.registry];
    writeFileSync(file, JSON.stringify(after, null, 2));
  };
}

async function playJob(name: string, job: Job, ctx: Contexts, opts: PlayOptions, workspace: string): Promise<JobRecord> {
  const steps: Record<string, { outputs: Record<string, string>; outcome: string; conclusion: string }> = {};
  const records: StepRecord[] = [];
  const posts: Array<() => Promise<void>> = [];
  let failed = false;
  for (const step of job.steps) {
    const stepCtx = { ...ctx, steps };
    const record: StepRecord = { id: step.id, name: step.name, outcome: 'skipped', outputs: {}, log: '' };
    records.push(record);
    if (condition(step.if, stepCtx, failed)) {
      const env = { ...opts.env, ...Object.fromEntries(Object.entries(step.env ?? {}).map(([k, v]) => [k, substitute(toText(v as Value), stepCtx)])) };
      let ok: boolean;
      if (step.uses && step.uses in opts.actions) {
        const dir = opts.actions[step.uses];
        const main = await runStep(dir, withValues(step, stepCtx), { env, cwd: workspace });
        Object.assign(record, { outputs: main.outputs, log: main.stdout + main.stderr });
        ok = main.code === 0;
        const post = (parse(readFileSync(join(ROOT, dir, 'action.yml'), 'utf8')) as { runs: { post?: string } }).runs.post;
        if (post) {
          posts.unshift(async () => {
            const r = await runStep(dir, {}, { phase: 'post', state: main.state, env, cwd: workspace });
            record.log += r.stdout + r.stderr;
            if (r.code !== 0) failed = true;
          });
        }
      } else if (step.uses?.startsWith('docker/login-action@')) {
        const logout = login(withValues(step, stepCtx), opts.env);
        posts.unshift(async () => logout());
        ok = true;
      } else if (step.run !== undefined) {
        const script = opts.run?.(name, step) ?? substitute(step.run, stepCtx);
        const r = await bash(script, { ...process.env, ...env }, workspace);
        Object.assign(record, { outputs: r.outputs, log: r.log });
        ok = r.code === 0;
      } else {
        throw new Error(`${name}: cannot play step ${step.name ?? step.uses}`);
      }
      record.outcome = ok ? 'success' : 'failure';
      if (!ok) failed = true;
    }
    if (step.id) steps[step.id] = { outputs: record.outputs, outcome: record.outcome, conclusion: record.outcome };
  }
  for (const post of posts) await post();
  const outputs = Object.fromEntries(Object.entries(job.outputs ?? {}).map(([k, v]) => [k, substitute(v, { ...ctx, steps })]));
  return { result: failed ? 'failure' : 'success', outputs, steps: records };
}

/** Plays every job of a workflow in `needs` order; returns each job's result, outputs and steps. */
export async function playWorkflow(wf: Workflow, opts: PlayOptions): Promise<Record<string, JobRecord>> {
  const results: Record<string, JobRecord> = {};
  const needsOf = (job: Job) => [job.needs ?? []].flat();
  const ancestors = (name: string): string[] => needsOf(wf.jobs[name]).flatMap((n) => [n, ...ancestors(n)]);
  const pending = Object.keys(wf.jobs);
  const workspace = mkdtempSync(join(tmpdir(), 'csx-workspace-'));
  try {
    while (pending.length > 0) {
      const next = pending.findIndex((n) => needsOf(wf.jobs[n]).every((d) => d in results));
      if (next === -1) throw new Error(`cycle in needs: ${pending.join(', ')}`);
      const [name] = pending.splice(next, 1);
      const job = wf.jobs[name];
      const needs = Object.fromEntries(needsOf(job).map((d) => [d, { result: results[d].result, outputs: results[d].outputs }]));
      const ctx: Contexts = { ...opts.contexts, needs };
      const up = ancestors(name).map((a) => results[a].result);
      const anyFailed = up.includes('failure');
      const run = up.every((r) => r === 'success') || /\b(failure|always|cancelled)\s*\(/.test(job.if ?? '') ? condition(job.if, ctx, anyFailed) : false;
      results[name] = run ? await playJob(name, job, ctx, opts, workspace) : { result: 'skipped', outputs: {}, steps: [] };
    }
    return results;
  } finally {
    rmSync(workspace, { recursive: true, force: true });
  }
}
