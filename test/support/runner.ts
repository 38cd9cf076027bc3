import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parse } from 'yaml';

export const ROOT = resolve(import.meta.dirname, '../..');

interface ActionYaml {
  inputs?: Record<string, { default?: string }>;
  runs: { using: string; main: string; post?: string };
}

export interface StepResult {
  code: number;
  stdout: string;
  stderr: string;
  outputs: Record<string, string>;
  state: Record<string, string>;
  summary: string;
}

/** Parses the runner's file-command format: `name=value` lines or `name<<DELIM … DELIM` blocks. */
export function parseFileCommands(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const heredoc = /^([^=<]+)<<(.+)$/.exec(line);
    if (heredoc) {
      const [, name, delimiter] = heredoc;
      const value: string[] = [];
      while (++i < lines.length && lines[i] !== delimiter) value.push(lines[i]);
      out[name] = value.join('\n');
    } else if (line.includes('=')) {
      out[line.slice(0, line.indexOf('='))] = line.slice(line.indexOf('=') + 1);
    }
  }
  return out;
}

/** The contexts an input default may use, as the runner fills them for the step. */
const DEFAULT_CONTEXT: Record<string, (env: NodeJS.ProcessEnv) => string> = {
  'github.token': (env) => env.GITHUB_TOKEN ?? '',
  'github.repository': (env) => env.GITHUB_REPOSITORY ?? '',
};

function evaluateDefault(value: string, env: NodeJS.ProcessEnv): string {
  return value.replace(/\$\{\{\s*([^}]+?)\s*\}\}/g, (_m, expr: string) => {
    const fill = DEFAULT_CONTEXT[expr];
    if (!fill) throw new Error(`input default uses \${{ ${expr} }}, which this runner stand-in does not fill`);
    return fill(env);
  });
}

function inputEnv(action: ActionYaml, inputs: Record<string, string>, env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, spec] of Object.entries(action.inputs ?? {})) {
    out[`INPUT_${name.replace(/ /g, '_').toUpperCase()}`] = inputs[name] ?? evaluateDefault(spec.default ?? '', env);
  }
  for (const name of Object.keys(inputs)) {
    if (!(name in (action.inputs ?? {}))) throw new Error(`input '${name}' is not declared in the action`);
  }
  return out;
}

/**
 * Runs one step of an action from its action.yml, the way the runner does: the bundled
 * entry on Node, INPUT_* from `with:` and the declared defaults, GITHUB_OUTPUT,
 * GITHUB_STATE and GITHUB_STEP_SUMMARY files; `phase: 'post'` passes the main step's state as STATE_*.
 */
export async function runStep(
  actionDir: string,
  inputs: Record<string, string>,
  opts: {
    phase?: 'main' | 'post';
    state?: Record<string, string>;
    env?: NodeJS.ProcessEnv;
    cwd?: string;
    kill?: { afterMs: number; signal: NodeJS.Signals };
    onSpawn?: (child: ChildProcess) => void;
  } = {},
): Promise<StepResult> {
  const actionPath = join(ROOT, actionDir, 'action.yml');
  const action = parse(readFileSync(actionPath, 'utf8')) as ActionYaml;
  if (action.runs.using !== 'node24') throw new Error(`${actionPath}: runs.using is ${action.runs.using}, expected node24`);
  const entry = resolve(ROOT, actionDir, opts.phase === 'post' ? (action.runs.post ?? '') : action.runs.main);
  const files = mkdtempSync(join(tmpdir(), 'csx-runner-'));
  const paths = { GITHUB_OUTPUT: join(files, 'output'), GITHUB_STATE: join(files, 'state'), GITHUB_STEP_SUMMARY: join(files, 'summary') };
  for (const p of Object.values(paths)) writeFileSync(p, '');
  const stateEnv = Object.fromEntries(Object.entries(opts.state ?? {}).map(([k, v]) => [`STATE_${k}`, v]));
  const base = { ...process.env, ...opts.env };
  const env = { ...base, ...inputEnv(action, inputs, base), ...paths, ...stateEnv, GITHUB_ACTIONS: 'true', RUNNER_TEMP: files };
  try {
    const child = spawn(process.execPath, [entry], { env, cwd: opts.cwd ?? ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    if (opts.kill) setTimeout(() => child.kill(opts.kill?.signal), opts.kill.afterMs);
    opts.onSpawn?.(child);
    const code = await new Promise<number>((res) => child.on('close', (c, signal) => res(c ?? (signal ? 128 : 1))));
    return {
      code,
      stdout,
      stderr,
      outputs: parseFileCommands(readFileSync(paths.GITHUB_OUTPUT, 'utf8')),
      state: parseFileCommands(readFileSync(paths.GITHUB_STATE, 'utf8')),
      summary: readFileSync(paths.GITHUB_STEP_SUMMARY, 'utf8'),
    };
  } finally {
    rmSync(files, { recursive: true, force: true });
  }
}

/** Runs the bundled CLI with Node. */
export async function runCli(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string; onSpawn?: (child: ChildProcess) => void } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [join(ROOT, 'dist', 'cli.js'), ...args], {
    env: { ...process.env, ...opts.env },
    cwd: opts.cwd ?? ROOT,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  child.stdin.end(opts.input ?? '');
  opts.onSpawn?.(child);
  const code = await new Promise<number>((res) => child.on('close', (c, signal) => res(c ?? (signal ? 128 : 1))));
  return { code, stdout, stderr };
}
