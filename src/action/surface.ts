/**
 * The actions' outputs and step-state keys, named once (inputs are named in core/inputs.ts).
 * test/unit/action-surface.test.ts holds these to action.yml and restore/action.yml.
 */

/** Outputs of the backup action (action.yml `outputs`). */
export const BackupOutput = {
  Snapshot: 'snapshot',
  Containers: 'containers',
  Failed: 'failed',
  Destinations: 'destinations',
  Pruned: 'pruned',
  ArtifactId: 'artifact-id',
  ArtifactUrl: 'artifact-url',
} as const;

/** Outputs of the restore action (restore/action.yml `outputs`). */
export const RestoreOutput = {
  Snapshot: 'snapshot',
  Containers: 'containers',
  Failed: 'failed',
} as const;

/**
 * Step state the main step saves for its post step (`core.saveState`): that the post step is
 * next, and what each action has not finished (a JSON document, never a secret).
 */
export const State = {
  IsPost: 'isPost',
  BackupPending: 'pending',
  RestorePending: 'restore-pending',
} as const;
