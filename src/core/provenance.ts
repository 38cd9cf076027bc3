/**
 * Where a run comes from, as a set document records it (`source.revision`, `source.run`): read once
 * from the environment GitHub Actions gives every step (GITHUB_SHA, GITHUB_REPOSITORY, GITHUB_RUN_ID;
 * https://docs.github.com/en/actions/reference/variables-reference), so the snapshot core is told
 * rather than reading the environment itself. Outside a workflow both are absent.
 */
export interface Provenance {
  /** The commit the workflow run is for (GITHUB_SHA), when set. */
  revision?: string;
  /** `<owner>/<repo>/actions/runs/<run id>`, when GITHUB_RUN_ID is set. */
  run?: string;
}

/** The run's provenance from `env` (absent variables leave their field out). Never throws. */
export function provenanceOf(env: NodeJS.ProcessEnv): Provenance {
  return {
    ...(env.GITHUB_SHA ? { revision: env.GITHUB_SHA } : {}),
    ...(env.GITHUB_RUN_ID ? { run: `${env.GITHUB_REPOSITORY ?? ''}/actions/runs/${env.GITHUB_RUN_ID}` } : {}),
  };
}
