import { describe, expect, it } from 'vitest';
import type { Engine } from '../../src/engine/engine.js';
import { NotFoundError } from '../../src/engine/errors.js';
import { displacedImage, removeIfDangling } from '../../src/snapshot/left-images.js';
import { recordingLog } from '../support/log.js';

const ID = `sha256:${'ab'.repeat(32)}`;

const logger = recordingLog;

/** An engine with one image `ID` (its tags), its users, and what its removal answers; `removed` records the calls. */
function engine(tags: string[] | undefined, users: string[] = [], remove: () => Promise<boolean> = async () => true) {
  const removed: string[] = [];
  const e = {
    inspectImage: async (id: string) => (tags === undefined || id !== ID ? Promise.reject(new NotFoundError('no such image')) : { Id: ID, RepoTags: tags }),
    imageId: async (ref: string) => (ref === 'repo:t' ? ID : undefined),
    imageUsers: async () => users,
    removeImageIfUnused: async (id: string) => {
      removed.push(id);
      return remove();
    },
  };
  return { engine: e as unknown as Engine, removed };
}

describe('removeIfDangling', () => {
  it('removes an image without tags nor users, saying so once with its short ID', async () => {
    const { engine: e, removed } = engine(['<none>:<none>']);
    const log = logger();
    await removeIfDangling(e, ID, 'tag repo:t moved', log);
    expect(removed).toEqual([ID]);
    expect(log.lines).toEqual(['Removed image abababababab: tag repo:t moved, and nothing used it']);
  });

  it('leaves, silently, an image with a tag, one a container uses, one the engine refuses to remove, or one gone', async () => {
    const cases: Array<[ReturnType<typeof engine>, string[]]> = [
      [engine(['other:1']), []],
      [engine([], ['c1']), []],
      [engine([], [], async () => false), [ID]],
      [engine(undefined), []],
    ];
    for (const [{ engine: e, removed }, asked] of cases) {
      const log = logger();
      await removeIfDangling(e, ID, 'why', log);
      expect(log.lines).toEqual([]);
      expect(removed).toEqual(asked);
    }
  });

  it('turns an engine failure into a warning, never a throw', async () => {
    const { engine: e } = engine([], [], async () => Promise.reject(new Error('engine down')));
    const log = logger();
    await removeIfDangling(e, ID, 'why', log);
    expect(log.lines).toEqual(['warning: Image abababababab (why) was left: engine down']);
  });
});

describe('displacedImage', () => {
  it('is the image a reference names when it is another one', async () => {
    const { engine: e } = engine([]);
    expect(await displacedImage(e, 'repo:t', 'sha256:other')).toBe(ID);
    expect(await displacedImage(e, 'repo:t', ID)).toBeUndefined();
    expect(await displacedImage(e, 'repo:none', 'sha256:other')).toBeUndefined();
  });
});
