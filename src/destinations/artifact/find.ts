import type { FindOptions } from '@actions/artifact';
import type { ArtifactRun } from '../../core/options.js';

/** The library's options to list and download the artifacts of `other` (another workflow run), or of this run when absent. */
export function findOptions(other: ArtifactRun | undefined): FindOptions {
  if (!other) return {};
  const { runId, owner, repo, token } = other;
  return { findBy: { workflowRunId: runId, repositoryOwner: owner, repositoryName: repo, token } };
}

/** The run whose artifacts are read, for messages. */
export function describeRun(other: ArtifactRun | undefined): string {
  return other ? `run ${other.runId} of ${other.owner}/${other.repo}` : 'this workflow run';
}
