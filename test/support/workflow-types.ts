/** The parts of a GitHub workflow file the template tests read. */
export interface Step {
  id?: string;
  name?: string;
  uses?: string;
  run?: string;
  if?: string;
  with?: Record<string, unknown>;
  env?: Record<string, unknown>;
}

export interface Job {
  'runs-on': string | string[];
  needs?: string | string[];
  if?: string;
  outputs?: Record<string, string>;
  permissions?: unknown;
  strategy?: { matrix?: Record<string, unknown> };
  steps: Step[];
}

export interface Workflow {
  on: { workflow_dispatch?: { inputs?: Record<string, { default?: unknown }> } } & Record<string, unknown>;
  permissions?: unknown;
  concurrency?: { group: string; 'cancel-in-progress'?: boolean };
  jobs: Record<string, Job>;
}
