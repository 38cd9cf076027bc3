import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { backUp, restoreFrom } from '../support/commands.js';
import { Resources, docker, quietLog, runContainer } from '../support/fixtures.js';

const PASSWORD = 'pw-71aa02c4-excluded';
const TOKEN = 'tk-9be13d55-excluded';

describe('exclude-env', () => {
  const res = new Resources(inject('runPrefix'), 'xenv');
  const name = res.name('app');
  let store = '';

  beforeAll(async () => {
    store = join(res.tempDir(), 'store');
    await runContainer(
      { name, Image: inject('fixtureImage'), Env: [`DB_PASSWORD=${PASSWORD}`, `API_TOKEN=${TOKEN}`, 'MODE=primary'], Cmd: ['sleep', '100000'] },
      'running',
    );
  });
  afterAll(() => res.cleanup());

  it('leaves the variables out of the stored set and image config, says nothing of them, and the restored container lacks them', async () => {
    const from = quietLog.lines.length;
    const r = await backUp({ containers: name, destination: `dir:${store}`, tag: 'x1', 'exclude-env': 'DB_PASSWORD\n*_TOKEN' });
    expect(r.containers[0].status).toBe('ok');
    for (const hex of readdirSync(join(store, 'blobs', 'sha256'))) {
      const bytes = readFileSync(join(store, 'blobs', 'sha256', hex));
      expect([bytes.includes(PASSWORD), bytes.includes(TOKEN)], hex).toEqual([false, false]);
    }
    expect(quietLog.lines.slice(from).filter((l) => l.includes('look secret'))).toEqual([]);

    await docker.getContainer(name).remove({ force: true });
    const restored = await restoreFrom({ source: `dir:${store}`, snapshot: 'x1' });
    expect(restored.failed).toBe(0);
    const info = await docker.getContainer(name).inspect();
    res.image(info.Config.Image);
    expect(info.Config.Env).toContain('MODE=primary');
    expect(info.Config.Env.filter((e) => e.startsWith('DB_PASSWORD=') || e.startsWith('API_TOKEN='))).toEqual([]);
    const image = await docker.getImage(info.Image).inspect();
    expect(image.Config.Env.join('\n')).not.toMatch(/DB_PASSWORD|API_TOKEN/);
  });
});
