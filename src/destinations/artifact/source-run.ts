import type { FindOptions } from '@actions/artifact';
import type { ArtifactRun } from '../../core/destination-input.js';

/** The library's options to list and download the artifacts of `run` (another workflow run), or of this run when absent. */
export function findOptions(run: ArtifactRun | undefined): FindOptions {
  if (!run) return {};
  const { runId, owner, repo, token } = run;
  return { findBy: { workflowRunId: runId, repositoryOwner: owner, repositoryName: repo, token } };
}

/** The run whose artifacts are read, for messages. */
export function describeRun(run: ArtifactRun | undefined): string {
  return run ? `run ${run.runId} of ${run.owner}/${run.repo}` : 'this workflow run';
}
