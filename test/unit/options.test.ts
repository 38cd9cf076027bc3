import { describe, expect, it } from 'vitest';
import { availableParallelism } from 'node:os';
import { CLI_WORDS } from '../../src/core/words.js';
import { parseBackupInputs, parseRestoreInputs } from '../../src/core/inputs.js';
import { parseBoolean } from '../../src/core/input-values.js';
import { parseSelector } from '../../src/core/selection-input.js';
import { parseDestination } from '../../src/core/destination-input.js';
import { defaultTag, parseTag } from '../../src/core/backup-input.js';
import { parseRename } from '../../src/core/restore-input.js';

const reader = (values: Record<string, string>) => (name: string) => values[name] ?? '';

describe('selectors', () => {
  it('tells names, IDs, globs and regexes apart', () => {
    expect(parseSelector('web')).toEqual({ kind: 'name', value: 'web' });
    expect(parseSelector('/web')).toEqual({ kind: 'name', value: 'web' });
    expect(parseSelector('0123456789ab').kind).toBe('id');
    const glob = parseSelector('web-*');
    expect(glob.kind).toBe('glob');
    expect(glob.kind === 'glob' && glob.pattern.test('web-1')).toBe(true);
    expect(glob.kind === 'glob' && glob.pattern.test('xweb-1')).toBe(false);
    const re = parseSelector('/^db-[0-9]+$/');
    expect(re.kind === 'regex' && re.pattern.test('db-12')).toBe(true);
    expect(re.kind === 'regex' && re.pattern.test('db-x')).toBe(false);
  });

  it('rejects a bad regex and bad names with the expected format', () => {
    expect(() => parseSelector('/([/')).toThrow(/Expected a regular expression between slashes/);
    expect(() => parseSelector('bad name')).toThrow(/Expected a container name, an ID, a glob/);
  });
});

describe('destinations', () => {
  it('parses dir and registry locations', () => {
    expect(parseDestination('dir:./x')).toMatchObject({ kind: 'dir', path: './x' });
    expect(parseDestination('registry:127.0.0.1:5001/backups/nightly')).toMatchObject({ kind: 'registry', host: '127.0.0.1:5001', prefix: 'backups/nightly' });
    expect(parseDestination('registry:ghcr.io/acme/snap')).toMatchObject({ host: 'ghcr.io', prefix: 'acme/snap' });
  });

  it.each(['s3:bucket', 'dir:', 'registry:host', 'registry:host/UPPER', 'registry:/x', 'nothing'])('rejects %s with the expected format', (raw) => {
    expect(() => parseDestination(raw)).toThrow(/Expected dir:PATH, registry:HOST\[:PORT\]\/PREFIX or artifact:NAME/);
  });
});

describe('tags and booleans', () => {
  it('defaults the tag to a UTC timestamp', () => {
    expect(defaultTag(new Date('2026-11-22T04:05:06.789Z'))).toBe('20261122T040506Z');
    expect(parseTag('', new Date('2026-01-02T03:04:05Z'))).toBe('20260102T030405Z');
  });

  it('validates tags as OCI tags and reserves latest and all', () => {
    expect(parseTag('v1.2_3-x')).toBe('v1.2_3-x');
    expect(() => parseTag('-bad')).toThrow(/Expected an OCI tag/);
    expect(() => parseTag('a'.repeat(129))).toThrow(/Expected an OCI tag/);
    expect(() => parseTag('latest')).toThrow(/always means the newest/);
    expect(() => parseTag('all', undefined, '--tag')).toThrow("Invalid --tag 'all'. Expected a specific tag: 'all' always means every set (to verify).");
  });

  it('is strict about booleans', () => {
    expect(parseBoolean('pause', 'false', true)).toBe(false);
    expect(parseBoolean('pause', '', true)).toBe(true);
    expect(() => parseBoolean('pause', 'yes', true)).toThrow("Invalid pause 'yes'. Expected true or false.");
  });
});

describe('rename', () => {
  it('maps old to new and refuses collisions', () => {
    expect([...parseRename(['a=b', 'c=d'])]).toEqual([
      ['a', 'b'],
      ['c', 'd'],
    ]);
    expect(() => parseRename(['a=x', 'b=x'])).toThrow(/two containers would be named 'x'/);
    expect(() => parseRename(['a'])).toThrow(/Expected old=new/);
    expect(() => parseRename(['a=../x'])).toThrow(/Invalid rename target/);
  });
});

describe('backup inputs', () => {
  it('parses every input into one typed object, with defaults', () => {
    const opts = parseBackupInputs(
      reader({ containers: 'web-*\n/^db-[0-9]+$/, cache', labels: 'backup=true', exclude: 'web-tmp', destination: 'dir:/b\nregistry:r.example/p', tag: 't1' }),
    );
    expect(opts.selection.containers.map((s) => s.kind)).toEqual(['glob', 'regex', 'name']);
    expect(opts.selection.labels).toEqual([{ key: 'backup', value: 'true' }]);
    expect(opts.destinations.map((d) => d.kind)).toEqual(['dir', 'registry']);
    expect(opts).toMatchObject({ tag: 't1', pause: true, includeVolumes: true, includeBindMounts: false, onError: 'continue', dryRun: false, credentials: {} });
    expect(opts.selection.ifNoMatch).toBe('warn');
  });

  it('defaults the destination to a local directory', () => {
    expect(parseBackupInputs(reader({})).destinations).toEqual([{ kind: 'dir', path: './container-snapshots', raw: 'dir:./container-snapshots' }]);
  });

  it('refuses half credentials, unknown choices and duplicate destinations', () => {
    expect(() => parseBackupInputs(reader({ 'registry-username': 'u' }))).toThrow(/Expected both registry-username and registry-password/);
    expect(() => parseBackupInputs(reader({ 'on-error': 'retry' }))).toThrow("Invalid on-error 'retry'. Expected one of: continue, abort.");
    expect(() => parseBackupInputs(reader({ destination: 'dir:a\ndir:a' }))).toThrow(/listed twice/);
  });

  it('refuses two destinations that are one place, however written', () => {
    const same = (a: string, b: string) => () => parseBackupInputs(reader({ destination: `${a}\n${b}` }));
    expect(same('dir:/x', 'dir:/x/')).toThrow("Invalid destination: 'dir:/x' and 'dir:/x/' are the same place (dir:/x). Expected each destination once.");
    expect(same('dir:/x/y/..', 'dir:/x')).toThrow(/same place \(dir:\/x\)/);
    expect(same(`dir:${process.cwd()}/s`, 'dir:./s')).toThrow(/same place/);
    expect(same('registry:Reg.example:5000/a/b', 'registry:reg.example:5000/a/b/')).toThrow(/same place \(registry:reg\.example:5000\/a\/b\)/);
    expect(same('dir:/x', 'dir:/x2')).not.toThrow();
    expect(same('registry:r.example/a', 'registry:r.example/a/b')).not.toThrow();
  });

  it('reads CONTAINER_SNAPSHOT_LOCK_TIMEOUT with the inputs, so a bad one fails before any change', () => {
    const lock = (v?: string) => parseBackupInputs(reader({}), undefined, v === undefined ? {} : { CONTAINER_SNAPSHOT_LOCK_TIMEOUT: v }).lockTimeoutMs;
    expect(lock()).toBe(600_000);
    expect(lock('')).toBe(600_000);
    expect(lock('0')).toBe(0);
    expect(lock('1.5')).toBe(1500);
    for (const bad of ['abc', '-1', '1e3', 'Infinity', '10s']) {
      expect(() => lock(bad)).toThrow(`Invalid CONTAINER_SNAPSHOT_LOCK_TIMEOUT '${bad}'. Expected a number of seconds, like 600.`);
    }
  });
});

describe('artifact destinations and sources', () => {
  it('takes artifact:NAME and refuses every character GitHub refuses in artifact names', () => {
    expect(parseDestination('artifact:db nightly.v2')).toEqual({ kind: 'artifact', name: 'db nightly.v2', raw: 'artifact:db nightly.v2' });
    for (const c of ['"', ':', '<', '>', '|', '*', '?', '\\', '/', '\r', '\n']) {
      expect(() => parseDestination(`artifact:a${c}b`), JSON.stringify(c)).toThrow(`GitHub refuses ${JSON.stringify(c)} in artifact names`);
    }
    expect(() => parseDestination('artifact:')).toThrow(/Expected artifact:NAME, a name of 1 to 100 characters/);
    expect(() => parseDestination(`artifact:${'n'.repeat(101)}`)).toThrow(/1 to 100 characters/);
  });

  it('parses retention-days from 1 to 90, empty meaning the repository setting', () => {
    expect(parseBackupInputs(reader({ destination: 'artifact:x' })).retentionDays).toBeUndefined();
    expect(parseBackupInputs(reader({ destination: 'artifact:x', 'retention-days': '1' })).retentionDays).toBe(1);
    expect(parseBackupInputs(reader({ destination: 'artifact:x', 'retention-days': ' 90 ' })).retentionDays).toBe(90);
    for (const bad of ['0', '91', '-1', '1.5', '7d', '030']) {
      expect(() => parseBackupInputs(reader({ 'retention-days': bad })), bad).toThrow(
        `Invalid retention-days '${bad}'. Expected a whole number of days from 1 to 90.`,
      );
    }
  });

  it('reads another run with run-id, repository and token; this run without run-id', () => {
    const base = { source: 'artifact:nightly', snapshot: 'latest' };
    expect(parseRestoreInputs(reader({ ...base, repository: 'o/r', 'github-token': 't' })).artifactRun).toBeUndefined();
    expect(parseRestoreInputs(reader({ ...base, 'run-id': '123', repository: 'octo-org/octo.repo', 'github-token': ' ghs_x ' })).artifactRun).toEqual({
      runId: 123,
      owner: 'octo-org',
      repo: 'octo.repo',
      token: 'ghs_x',
    });
    expect(() => parseRestoreInputs(reader({ ...base, 'run-id': '0', repository: 'o/r', 'github-token': 't' }))).toThrow(
      /Expected the numeric ID of a workflow run/,
    );
    expect(() => parseRestoreInputs(reader({ ...base, 'run-id': '12', repository: 'o/r/x', 'github-token': 't' }))).toThrow(/Expected owner\/name/);
    expect(() => parseRestoreInputs(reader({ ...base, 'run-id': '12', repository: 'o/r' }))).toThrow(/Missing github-token for run-id 12/);
    expect(() => parseRestoreInputs(reader({ source: 'dir:x', snapshot: 'latest', 'run-id': '12' }))).toThrow(/Expected run-id only with source artifact:NAME/);
  });
});

describe('restore inputs', () => {
  it('parses source, snapshot, rename and start', () => {
    expect(() => parseRestoreInputs(reader({ source: 'dir:x' }))).toThrow(/an empty value never means latest/);
    const opts = parseRestoreInputs(reader({ source: 'registry:h:5000/p', snapshot: 'latest', rename: 'db=db2', start: 'never', replace: 'true' }));
    expect(opts).toMatchObject({ snapshot: 'latest', replace: true, start: 'never', includeVolumes: true });
    expect(opts.rename.get('db')).toBe('db2');
    expect(() => parseRestoreInputs(reader({ snapshot: 'latest', start: 'later' }))).toThrow(/Expected one of: auto, always, never/);
    expect(() => parseRestoreInputs(reader({ snapshot: '../x' }))).toThrow(/Expected a tag or latest/);
  });
});

describe('compression', () => {
  const dir = parseDestination('dir:/x');
  const reg = parseDestination('registry:r.example/p');
  it('auto picks zstd, unless a registry is written by an engine that cannot pull zstd layers', async () => {
    const { chooseCompression } = await import('../../src/snapshot/compression-choice.js');
    expect(chooseCompression({ compression: 'auto', destinations: [dir] }, '20.10.24+dfsg1')).toBe('zstd');
    expect(chooseCompression({ compression: 'auto', destinations: [dir, reg] }, '20.10.24+dfsg1')).toBe('gzip');
    expect(chooseCompression({ compression: 'auto', destinations: [reg] }, '28.2.2')).toBe('zstd');
    expect(chooseCompression({ compression: 'zstd', destinations: [reg] }, '20.10.24')).toBe('zstd');
    expect(chooseCompression({ compression: 'gzip', destinations: [dir] }, '28.0.0')).toBe('gzip');
    expect(() => parseBackupInputs(reader({ compression: 'xz' }))).toThrow("Invalid compression 'xz'. Expected one of: auto, zstd, gzip.");
  });
});

describe('stop inputs', () => {
  it("parses stop and stop-timeout (0 to 3600 s, empty: the container's own)", () => {
    expect(parseBackupInputs(reader({}))).toMatchObject({ stop: false, stopTimeout: undefined });
    expect(parseBackupInputs(reader({ stop: 'true', 'stop-timeout': '0' }))).toMatchObject({ stop: true, stopTimeout: 0 });
    expect(parseBackupInputs(reader({ 'stop-timeout': '3600' })).stopTimeout).toBe(3600);
    for (const bad of ['3601', '-1', '1.5', '10s']) {
      expect(() => parseBackupInputs(reader({ 'stop-timeout': bad })), bad).toThrow(`Invalid stop-timeout '${bad}'. Expected whole seconds from 0 to 3600.`);
    }
  });
});

describe('hook inputs', () => {
  it('parses pre-command, post-command and hook-timeout (1 to 86400 s, default 300)', () => {
    expect(parseBackupInputs(reader({}))).toMatchObject({ preCommand: undefined, postCommand: undefined, hookTimeout: 300 });
    expect(parseBackupInputs(reader({ 'pre-command': ' redis-cli save ', 'post-command': 'echo done', 'hook-timeout': '86400' }))).toMatchObject({
      preCommand: 'redis-cli save',
      postCommand: 'echo done',
      hookTimeout: 86400,
    });
    for (const bad of ['0', '86401', '5m']) {
      expect(() => parseBackupInputs(reader({ 'hook-timeout': bad })), bad).toThrow(`Invalid hook-timeout '${bad}'. Expected whole seconds from 1 to 86400.`);
    }
  });
});

describe('parallelism', () => {
  it('defaults to the number of CPUs; takes 1 to 64; says what it expected in the words of the interface', () => {
    expect(parseBackupInputs(reader({})).parallelism).toBe(Math.min(availableParallelism(), 64));
    expect(parseBackupInputs(reader({ parallelism: ' 3 ' })).parallelism).toBe(3);
    for (const bad of ['0', '65', '2.5', 'many', '-1']) {
      expect(() => parseBackupInputs(reader({ parallelism: bad })), bad).toThrow(`Invalid parallelism '${bad}'. Expected a whole number from 1 to 64.`);
    }
    expect(() => parseBackupInputs(reader({ parallelism: '0' }), undefined, {}, CLI_WORDS)).toThrow(
      "Invalid --parallelism '0'. Expected a whole number from 1 to 64.",
    );
  });
});

describe('group-by and projects', () => {
  it('reads none, compose-project and label:KEY', () => {
    expect(parseBackupInputs(reader({})).groupBy).toEqual({ kind: 'none' });
    expect(parseBackupInputs(reader({ 'group-by': 'none' })).groupBy).toEqual({ kind: 'none' });
    expect(parseBackupInputs(reader({ 'group-by': ' compose-project ' })).groupBy).toEqual({ kind: 'compose-project' });
    expect(parseBackupInputs(reader({ 'group-by': 'label:app.tier' })).groupBy).toEqual({ kind: 'label', key: 'app.tier' });
  });

  it('refuses other group-by values in the words of the interface', () => {
    for (const bad of ['project', 'label:', 'label:a b', 'label:a=b']) {
      expect(() => parseBackupInputs(reader({ 'group-by': bad })), bad).toThrow(
        `Invalid group-by '${bad}'. Expected none, compose-project or label:KEY (a label key, like label:app).`,
      );
    }
    expect(() => parseBackupInputs(reader({ 'group-by': 'x' }), undefined, {}, CLI_WORDS)).toThrow("Invalid --group-by 'x'.");
  });

  it('reads a list of Compose project names and refuses what Compose would not name a project', () => {
    expect(parseBackupInputs(reader({ projects: 'blog\nshop-2, my_app' })).selection.projects).toEqual(['blog', 'shop-2', 'my_app']);
    expect(parseBackupInputs(reader({})).selection.projects).toEqual([]);
    expect(() => parseBackupInputs(reader({ projects: 'Blog' }))).toThrow(
      "Invalid projects 'Blog'. Expected Compose project names: lowercase letters, digits, - and _, starting with a letter or digit.",
    );
    expect(() => parseBackupInputs(reader({ projects: '-x' }), undefined, {}, CLI_WORDS)).toThrow("Invalid --projects '-x'.");
  });
});
