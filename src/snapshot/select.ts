import type { LabelFilter, Selection, Selector } from '../core/selection-input.js';

export interface Candidate {
  id: string;
  name: string;
  labels: Record<string, string>;
  state: string;
}

export interface SelectionResult {
  selected: Candidate[];
  /** Selectors naming one container (name or ID) that matched none: an error for that container. */
  missing: string[];
  /** Compose projects no container is in: an error for that project. */
  missingProjects: string[];
  /** True when nothing matched at all. */
  empty: boolean;
}

function matches(selector: Selector, c: Candidate): boolean {
  switch (selector.kind) {
    case 'name':
      return c.name === selector.value;
    case 'id':
      return c.id.startsWith(selector.value);
    case 'glob':
    case 'regex':
      return selector.pattern.test(c.name);
  }
}

/** The label Compose sets on each container of a project (compose-spec, Compose v2). */
export const COMPOSE_PROJECT_LABEL = 'com.docker.compose.project';

function inProjects(projects: string[], c: Candidate): boolean {
  return projects.length === 0 || projects.includes(c.labels[COMPOSE_PROJECT_LABEL]);
}

function hasLabels(filters: LabelFilter[], c: Candidate): boolean {
  return filters.every((f) => Object.hasOwn(c.labels, f.key) && (f.value === undefined || c.labels[f.key] === f.value));
}

/**
 * Picks containers: any of `containers` (all when empty), with all `labels`, in one of `projects`
 * (when any), minus `exclude`.
 * Sorted by name so that runs are reproducible.
 */
export function selectContainers(all: Candidate[], selection: Selection): SelectionResult {
  const missing = selection.containers
    .filter((s) => s.kind === 'name' || s.kind === 'id')
    .filter((s) => !all.some((c) => matches(s, c)))
    .map((s) => s.value);
  const missingProjects = selection.projects.filter((p) => !all.some((c) => c.labels[COMPOSE_PROJECT_LABEL] === p));
  const selected = all
    .filter((c) => selection.containers.length === 0 || selection.containers.some((s) => matches(s, c)))
    .filter((c) => hasLabels(selection.labels, c))
    .filter((c) => inProjects(selection.projects, c))
    .filter((c) => !selection.exclude.some((s) => matches(s, c)))
    .sort((a, b) => a.name.localeCompare(b.name));
  return { selected, missing, missingProjects, empty: selected.length === 0 };
}
