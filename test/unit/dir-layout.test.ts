import { hostname } from 'node:os';
import { basename, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DirLayout, blobName, tmpOwner } from '../../src/destinations/dir/layout.js';
import { DestinationError } from '../../src/destinations/types.js';
import { checkableHere, processHost } from '../../src/core/process-liveness.js';

describe('dir: layout', () => {
  const layout = new DirLayout('/backups/x');
  const digest = `sha256:${'ab'.repeat(32)}`;

  it('puts blobs under blobs/sha256/<hex> and tags under sets/<tag>.json', () => {
    expect(layout.blobPath(digest)).toBe(join('/backups/x', 'blobs', 'sha256', 'ab'.repeat(32)));
    expect(layout.setPath('t1')).toBe(join('/backups/x', 'sets', 't1.json'));
  });

  it('refuses a name that is not a sha256 digest', () => {
    expect(() => blobName('sha256:../../etc/passwd')).toThrow(DestinationError);
    expect(() => layout.blobPath('md5:00')).toThrow(DestinationError);
  });

  it('names temporary files so that their process can be told from the name', () => {
    for (const [kind, length] of [
      ['blob', 6],
      ['set', 4],
    ] as const) {
      const path = layout.tmpPath(kind, length);
      expect(path.startsWith(join('/backups/x', '.tmp'))).toBe(true);
      expect(tmpOwner(basename(path))).toEqual({ host: processHost(), pid: process.pid });
      // The host name and this process's PID namespace: a pid is this process only there.
      expect(processHost().slice(0, hostname().length + 1)).toBe(`${hostname()}~`);
      expect(processHost().slice(hostname().length + 1)).toMatch(/^pidns\d+$/);
    }
    expect(tmpOwner('notes.txt')).toBeUndefined();
  });

  it('checks by pid only a writer of this host and PID namespace (or of an older version, named by the host name alone)', () => {
    expect(checkableHere(processHost())).toBe(true);
    expect(checkableHere(hostname())).toBe(true);
    // A process with the host's name in another PID namespace (a container run with --network host): its pid means nothing here.
    expect(checkableHere(`${hostname()}~pidns1`)).toBe(false);
    expect(checkableHere('another-host')).toBe(false);
  });
});
