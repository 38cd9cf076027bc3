import { describe, expect, it } from 'vitest';
import { parseLabelFilter, parseSelector, type Selection } from '../../src/core/selection-input.js';
import { selectContainers, type Candidate } from '../../src/snapshot/select.js';

const all: Candidate[] = [
  { id: 'aaaa1111bbbb2222', name: 'web-1', labels: { tier: 'front', backup: 'true' }, state: 'running' },
  { id: 'cccc3333dddd4444', name: 'web-2', labels: { tier: 'front' }, state: 'exited' },
  { id: 'eeee5555ffff6666', name: 'db-10', labels: { tier: 'data', backup: 'true' }, state: 'paused' },
  { id: '9999888877776666', name: 'cache', labels: {}, state: 'created' },
  { id: '1111222233334444', name: 'blog-db-1', labels: { 'com.docker.compose.project': 'blog', tier: 'data' }, state: 'running' },
  { id: '5555666677778888', name: 'blog-web-1', labels: { 'com.docker.compose.project': 'blog', tier: 'front' }, state: 'running' },
  { id: '9999000011112222', name: 'shop-web-1', labels: { 'com.docker.compose.project': 'shop' }, state: 'running' },
];

function sel(partial: Partial<{ containers: string[]; labels: string[]; exclude: string[]; projects: string[] }>): Selection {
  return {
    containers: (partial.containers ?? []).map(parseSelector),
    labels: (partial.labels ?? []).map(parseLabelFilter),
    projects: partial.projects ?? [],
    exclude: (partial.exclude ?? []).map(parseSelector),
    ifNoMatch: 'warn',
  };
}

const names = (r: ReturnType<typeof selectContainers>) => r.selected.map((c) => c.name);

describe('selectContainers', () => {
  it('takes every container in any state when nothing is named', () => {
    expect(names(selectContainers(all, sel({})))).toEqual(['blog-db-1', 'blog-web-1', 'cache', 'db-10', 'shop-web-1', 'web-1', 'web-2']);
  });

  it('matches globs, regexes, names and ID prefixes', () => {
    expect(names(selectContainers(all, sel({ containers: ['web-*'] })))).toEqual(['web-1', 'web-2']);
    expect(names(selectContainers(all, sel({ containers: ['/^db-[0-9]+$/'] })))).toEqual(['db-10']);
    expect(names(selectContainers(all, sel({ containers: ['cache', 'eeee5555ffff'] })))).toEqual(['cache', 'db-10']);
  });

  it('requires every label and applies exclusions last', () => {
    expect(names(selectContainers(all, sel({ labels: ['backup=true'] })))).toEqual(['db-10', 'web-1']);
    expect(names(selectContainers(all, sel({ labels: ['tier', 'backup'] })))).toEqual(['db-10', 'web-1']);
    expect(names(selectContainers(all, sel({ containers: ['web-*'], exclude: ['web-2'] })))).toEqual(['web-1']);
  });

  it('reports names and IDs that match nothing, but not globs', () => {
    const r = selectContainers(all, sel({ containers: ['web-1', 'ghost', 'nope-*', 'abcdefabcdef'] }));
    expect(r.missing).toEqual(['ghost', 'abcdefabcdef']);
    expect(names(r)).toEqual(['web-1']);
  });

  it('takes the containers of the named Compose projects, combined with the other selectors', () => {
    expect(names(selectContainers(all, sel({ projects: ['blog', 'shop'] })))).toEqual(['blog-db-1', 'blog-web-1', 'shop-web-1']);
    expect(names(selectContainers(all, sel({ projects: ['blog'], labels: ['tier=front'] })))).toEqual(['blog-web-1']);
    expect(names(selectContainers(all, sel({ projects: ['blog', 'shop'], containers: ['*-web-1'], exclude: ['shop-*'] })))).toEqual(['blog-web-1']);
  });

  it('reports a project no container is in', () => {
    const r = selectContainers(all, sel({ projects: ['blog', 'ghost'] }));
    expect(r.missingProjects).toEqual(['ghost']);
    expect(r.missing).toEqual([]);
    expect(names(r)).toEqual(['blog-db-1', 'blog-web-1']);
  });

  it('says when nothing matched', () => {
    expect(selectContainers(all, sel({ containers: ['zzz-*'] })).empty).toBe(true);
  });
});
