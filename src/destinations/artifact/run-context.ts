import { tmpdir } from 'node:os';

/** The workflow run this process runs in, as the runner describes it. */
export interface RunContext {
  runtimeToken?: string;
  resultsUrl?: string;
  serverUrl: string;
  repository?: string;
  runId?: string;
  attempt: number;
  tempDir: string;
}

/** The run context from the runner's environment (ACTIONS_RUNTIME_TOKEN, GITHUB_RUN_ATTEMPT, RUNNER_TEMP, …); attempt 1 when unset. */
export function runContext(env: NodeJS.ProcessEnv): RunContext {
  return {
    runtimeToken: env.ACTIONS_RUNTIME_TOKEN || undefined,
    resultsUrl: env.ACTIONS_RESULTS_URL || undefined,
    serverUrl: (env.GITHUB_SERVER_URL || 'https://github.com').replace(/\/+$/, ''),
    repository: env.GITHUB_REPOSITORY || undefined,
    runId: env.GITHUB_RUN_ID || undefined,
    attempt: Number(env.GITHUB_RUN_ATTEMPT) >= 1 ? Number(env.GITHUB_RUN_ATTEMPT) : 1,
    tempDir: env.RUNNER_TEMP || tmpdir(),
  };
}
