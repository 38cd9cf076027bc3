import { describe, expect, it } from 'vitest';
import { provenanceOf } from '../../src/core/provenance.js';

describe('provenanceOf', () => {
  it('gives the commit and the run of a workflow step, and nothing outside a workflow', () => {
    const sha = 'f'.repeat(40);
    expect(provenanceOf({ GITHUB_SHA: sha, GITHUB_REPOSITORY: 'acme/app', GITHUB_RUN_ID: '42' })).toEqual({ revision: sha, run: 'acme/app/actions/runs/42' });
    expect(provenanceOf({ GITHUB_SHA: sha })).toEqual({ revision: sha });
    expect(provenanceOf({})).toEqual({});
  });
});
