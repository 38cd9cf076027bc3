// The tests' local stand-in for GitHub's artifact service (test/support/artifact-service.ts),
// transpiled here, so @actions/artifact runs its real upload and download code over loopback.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, q } from './process.mjs';

/** Starts the service: ctx.artifacts (the running service), ctx.runnerTemp (the CLI's RUNNER_TEMP). */
export async function startArtifacts(ctx) {
  const ts = (await import('typescript')).default;
  const source = readFileSync(join(ROOT, 'test/support/artifact-service.ts'), 'utf8');
  const { outputText } = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } });
  const file = join(ctx.tmp, 'artifact-service.mjs');
  writeFileSync(file, outputText);
  ctx.artifacts = await (await import(file)).startArtifactService();
  ctx.runnerTemp = mkdtempSync(join(ctx.tmp, 'runner-temp-'));
}

/** A CLI command as a step of workflow run `runId` runs it: the runner's artifact variables set. */
export function inRun(ctx, runId, cmd) {
  const vars = { ...ctx.artifacts.env({ runId, repository: 'bench/bench' }), RUNNER_TEMP: ctx.runnerTemp };
  return `env ${Object.entries(vars)
    .map(([k, v]) => `${k}=${q(v)}`)
    .join(' ')} ${cmd}`;
}

/** Bytes the service stored for run `runId` (finalized artifacts). */
export function storedBytes(ctx, runId) {
  return ctx.artifacts
    .artifacts()
    .filter((a) => a.runId === runId && a.finalized)
    .reduce((n, a) => n + a.size, 0);
}
