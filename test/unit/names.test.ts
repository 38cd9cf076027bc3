import { describe, expect, it } from 'vitest';
import { repoComponent } from '../../src/core/names.js';
import { localImageName } from '../../src/snapshot/container-restore.js';

describe('repository names for containers', () => {
  it('keeps valid names and makes the others valid without collisions', () => {
    expect(repoComponent('web-1')).toBe('web-1');
    expect(repoComponent('my_db.2')).toBe('my_db.2');
    const upper = repoComponent('Web');
    const lower = repoComponent('web');
    expect(upper).toMatch(/^web-[0-9a-f]{6}$/);
    expect(upper).not.toBe(lower);
    expect(repoComponent('a..b-')).toMatch(/^a-b-[0-9a-f]{6}$/);
    expect(localImageName('Web')).toBe(`container-snapshot/${upper}`);
  });
});
