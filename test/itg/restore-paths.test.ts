import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { join } from 'node:path';
import tar from 'tar-stream';
import { Resources, docker, runContainer, waitFor } from '../support/fixtures.js';
import { backUp, inputs, restoreFrom, testEnv } from '../support/commands.js';
import { Engine } from '../../src/engine/engine.js';
import { restore } from '../../src/commands.js';
import { parseRestoreInputs } from '../../src/core/inputs.js';
import type { Logger } from '../../src/core/log.js';

/** A file's content read through the engine's archive API; undefined when it does not exist. */
async function readIn(container: string, path: string): Promise<string | undefined> {
  const stream = (await docker
    .getContainer(container)
    .getArchive({ path })
    .catch(() => undefined)) as NodeJS.ReadableStream | undefined;
  if (!stream) return undefined;
  const extract = tar.extract();
  stream.pipe(extract);
  let text = '';
  for await (const entry of extract) for await (const chunk of entry) text += (chunk as Buffer).toString();
  return text;
}

describe('restore with paths: some paths of a volume into the existing container', () => {
  const res = new Resources(inject('runPrefix'), 'paths');
  const image = inject('fixtureImage');
  let app: string;
  let volume: string;
  let more: string;
  let source: string;
  const change = (script: string) =>
    runContainer(
      {
        name: res.name(`change-${Math.random().toString(16).slice(2, 8)}`),
        Image: image,
        Cmd: ['sh', '-ec', script],
        HostConfig: { Binds: [`${volume}:/data`] },
      },
      'exited',
    );

  beforeAll(async () => {
    app = res.name('app');
    volume = res.volume('data');
    more = res.volume('more');
    source = `dir:${join(res.tempDir(), 'store')}`;
    const script = 'echo k1 > /data/keep; mkdir /data/up; echo a1 > /data/up/a; echo b1 > /data/up/b; echo m1 > /more/m; echo x > /etc/x; exec sleep 100000';
    await runContainer({ name: app, Image: image, Cmd: ['sh', '-c', script], HostConfig: { Binds: [`${volume}:/data`, `${more}:/more`] } }, 'running');
    await waitFor(async () => (await readIn(app, '/etc/x')) !== undefined);
    await backUp({ containers: app, destination: source, tag: 'p1' });
  });
  afterAll(() => res.cleanup());

  it('brings back a removed directory and nothing else, into the running container', async () => {
    const before = await docker.getContainer(app).inspect();
    await change('rm -r /data/up; echo k2 > /data/keep');
    const r = await restoreFrom({ source, snapshot: 'p1', containers: app, paths: '/data/up' });
    expect(r.containers).toEqual([{ name: app, from: app, id: before.Id, state: 'running', status: 'ok' }]);
    expect([await readIn(app, '/data/up/a'), await readIn(app, '/data/up/b'), await readIn(app, '/data/keep')]).toEqual(['a1\n', 'b1\n', 'k2\n']);
    expect((await docker.getContainer(app).inspect()).State.StartedAt).toBe(before.State.StartedAt);
  });

  it('refuses a path that exists there unless replace, which writes the snapshot over it', async () => {
    await change('echo a3 > /data/up/a');
    const refused = await restoreFrom({ source, snapshot: 'p1', containers: app, paths: '/data/up/a' });
    expect(refused.failed).toBe(1);
    expect(refused.containers[0].error).toBe(`refused: /data/up/a exists in volume '${volume}' (replace: true writes the snapshot's over it)`);
    expect(await readIn(app, '/data/up/a')).toBe('a3\n');
    const replaced = await restoreFrom({ source, snapshot: 'p1', containers: app, paths: '/data/up/a', replace: 'true' });
    expect(replaced.failed).toBe(0);
    expect(await readIn(app, '/data/up/a')).toBe('a1\n');
  });

  it('names a path outside the volumes, one the set has nothing at, and a container that does not exist', async () => {
    const layer = await restoreFrom({ source, snapshot: 'p1', containers: app, paths: '/etc/x' });
    expect(layer.containers[0].error).toBe(
      `/etc/x is in the writable layer of ${app} in the set, not in a volume: only volume content is restored by path (extract takes any path).`,
    );
    const nothing = await restoreFrom({ source, snapshot: 'p1', containers: app, paths: '/data/nothing' });
    expect(nothing.containers[0].error).toBe(`snapshot p1: ${app} has nothing at /data/nothing in volume ${volume}.`);
    const ghost = `${app}-ghost`;
    const missing = await restoreFrom({ source, snapshot: 'p1', containers: app, rename: `${app}=${ghost}`, paths: '/data/up' });
    expect(missing.containers[0].error).toBe(`paths restores into an existing container; '${ghost}' does not exist (restore it without paths first).`);
    expect(
      await docker
        .getContainer(ghost)
        .inspect()
        .catch(() => undefined),
    ).toBeUndefined();
  });

  it('says which paths were written, and which was being written, when the engine fails partway (nothing is undone)', async () => {
    await change('echo a9 > /data/up/a');
    const engine = new Engine();
    const real = engine.putArchive.bind(engine);
    let writes = 0;
    // The engine loses the helper of the second volume as its write begins.
    engine.putArchive = async (id, path, archive) => {
      if (++writes === 2) await docker.getContainer(id).remove({ force: true });
      return real(id, path, archive);
    };
    const warnings: string[] = [];
    const log: Logger = { info: () => undefined, error: () => undefined, warning: (m) => void warnings.push(m), group: (_t, fn) => fn() };
    const opts = parseRestoreInputs(inputs({ source, snapshot: 'p1', containers: app, paths: '/data/up,/more/m', replace: 'true' }), undefined, {});
    const r = await restore(opts, { log, env: testEnv, engine });
    const partly = 'paths partly written into the live volumes, not undone (written: /data/up; interrupted while writing: /more/m)';
    expect([writes, r.failed, r.containers[0].error]).toEqual([2, 1, expect.stringMatching(new RegExp(`; ${partly.replace(/[()]/g, '\\$&')}$`))]);
    expect(warnings).toEqual([`${app}: ${partly}`]);
    expect(await readIn(app, '/data/up/a')).toBe('a1\n');
  });
});
