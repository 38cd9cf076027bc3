import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { RegistryClient } from '../../src/registry/client.js';
import { Resources, commitsOf, docker, runContainer, treeDigest, waitFor } from '../support/fixtures.js';
import { runCli, runStep } from '../support/runner.js';

type Case = { via: 'backup' | 'restore'; inputs: Record<string, string>; expected: RegExp } | { via: 'cli'; args: string[]; expected: RegExp; input?: string };

/** Every file of a directory tree with its size and modification time. */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const s = statSync(p);
      if (s.isDirectory()) walk(p);
      else out.push(`${p} ${s.size} ${s.mtimeMs}`);
    }
  };
  walk(dir);
  return out.sort();
}

describe('bad input: a one-line error saying what was expected, a non-zero exit, and nothing changed', () => {
  const res = new Resources(inject('runPrefix'), 'bad');
  const reg = inject('registry');
  const env = { DOCKER_CONFIG: '/nonexistent', GITHUB_REPOSITORY: '' };
  let store: string;
  let app: string;
  let registry: string;

  async function state() {
    const info = await docker.getContainer(app).inspect();
    const tags = await new RegistryClient({ host: reg.host, auth: { username: reg.username, password: reg.password } }).listTags(res.prefix);
    const volumes = ((await docker.listVolumes()).Volumes ?? [])
      .map((v) => v.Name)
      .filter((n) => n.startsWith(res.prefix))
      .sort();
    const containers = (await docker.listContainers({ all: true }))
      .filter((c) => c.Names.some((n) => n.startsWith(`/${res.prefix}`)))
      .map((c) => `${c.Id} ${c.State}`)
      .sort();
    return {
      id: info.Id,
      status: info.State.Status,
      paused: info.State.Paused,
      containers,
      volumes,
      store: tree(store),
      tags,
      commits: await commitsOf([info.Id]),
    };
  }

  beforeAll(async () => {
    store = join(res.tempDir(), 'store');
    registry = `registry:${reg.host}/${res.prefix}`;
    app = res.name('app');
    await runContainer(
      {
        name: app,
        Image: inject('fixtureImage'),
        Cmd: ['sh', '-c', 'test -f /v/f || echo f > /v/f; exec sleep 100000'],
        HostConfig: { Binds: [`${res.volume('v')}:/v`] },
      },
      'running',
    );
    await waitFor(
      async () =>
        await treeDigest(app, '/v/f').then(
          () => true,
          () => false,
        ),
    );
    for (const destination of [`dir:${store}`, registry]) {
      const r = await runCli(
        ['backup', '--containers', app, '--destination', destination, '--tag', 'existing', '--registry-username', reg.username, '--registry-password-stdin'],
        { env, input: reg.password },
      );
      expect(r.code, r.stderr).toBe(0);
    }
  });

  afterAll(() => res.cleanup());

  const dir = () => `dir:${store}`;
  const cases: Array<[string, () => Case]> = [
    [
      'backup: a regex that does not compile',
      () => ({ via: 'backup', inputs: { containers: '/([/', destination: dir() }, expected: /Expected a regular expression between slashes/ }),
    ],
    [
      'backup: a name with a space',
      () => ({ via: 'backup', inputs: { containers: 'bad name', destination: dir() }, expected: /Expected a container name, an ID, a glob/ }),
    ],
    [
      'backup: a bad exclude regex',
      () => ({ via: 'backup', inputs: { containers: app, exclude: '/(/', destination: dir() }, expected: /Expected a regular expression/ }),
    ],
    ['backup: a label filter without a key', () => ({ via: 'backup', inputs: { labels: '=x', destination: dir() }, expected: /Expected key or key=value/ })],
    [
      'backup: an unknown destination scheme',
      () => ({
        via: 'backup',
        inputs: { containers: app, destination: 's3:bucket' },
        expected: /Expected dir:PATH, registry:HOST\[:PORT\]\/PREFIX or artifact:NAME/,
      }),
    ],
    [
      'backup: a registry without a prefix',
      () => ({ via: 'backup', inputs: { containers: app, destination: `registry:${reg.host}` }, expected: /Expected dir:PATH, registry:/ }),
    ],
    [
      'backup: an upper-case registry prefix',
      () => ({ via: 'backup', inputs: { containers: app, destination: `registry:${reg.host}/Backups` }, expected: /lowercase repository prefix/ }),
    ],
    [
      'backup: a registry prefix with ../',
      () => ({ via: 'backup', inputs: { containers: app, destination: `registry:${reg.host}/../x` }, expected: /Expected dir:PATH, registry:/ }),
    ],
    ['backup: dir: with no path', () => ({ via: 'backup', inputs: { containers: app, destination: 'dir:' }, expected: /dir: needs a path/ })],
    [
      'backup: the same destination twice',
      () => ({ via: 'backup', inputs: { containers: app, destination: `${dir()}\n${dir()}` }, expected: /listed twice. Expected each destination once/ }),
    ],
    ['backup: a tag starting with -', () => ({ via: 'backup', inputs: { containers: app, destination: dir(), tag: '-x' }, expected: /Expected an OCI tag/ })],
    ['backup: a tag with ../', () => ({ via: 'backup', inputs: { containers: app, destination: dir(), tag: '../x' }, expected: /Expected an OCI tag/ })],
    ['backup: the tag latest', () => ({ via: 'backup', inputs: { containers: app, destination: dir(), tag: 'latest' }, expected: /Expected a specific tag/ })],
    [
      'backup: a tag of 129 characters',
      () => ({ via: 'backup', inputs: { containers: app, destination: dir(), tag: 'a'.repeat(129) }, expected: /up to 128/ }),
    ],
    [
      'backup: a tag that exists',
      () => ({
        via: 'backup',
        inputs: { containers: app, destination: dir(), tag: 'existing' },
        expected: /Snapshot existing already exists in dir:.*Expected a new tag/,
      }),
    ],
    [
      'backup: pause yes',
      () => ({ via: 'backup', inputs: { containers: app, destination: dir(), pause: 'yes' }, expected: /Invalid pause 'yes'. Expected true or false/ }),
    ],
    [
      'backup: stop please',
      () => ({ via: 'backup', inputs: { containers: app, destination: dir(), stop: 'please' }, expected: /Invalid stop 'please'. Expected true or false/ }),
    ],
    [
      'backup: stop-timeout -1',
      () => ({
        via: 'backup',
        inputs: { containers: app, destination: dir(), stop: 'true', 'stop-timeout': '-1' },
        expected: /Invalid stop-timeout '-1'. Expected whole seconds from 0 to 3600/,
      }),
    ],
    [
      'backup: stop-timeout 1h',
      () => ({ via: 'backup', inputs: { containers: app, destination: dir(), stop: 'true', 'stop-timeout': '1h' }, expected: /Invalid stop-timeout '1h'/ }),
    ],
    [
      'backup: hook-timeout 0',
      () => ({
        via: 'backup',
        inputs: { containers: app, destination: dir(), 'pre-command': 'true', 'hook-timeout': '0' },
        expected: /Invalid hook-timeout '0'. Expected whole seconds from 1 to 86400/,
      }),
    ],
    [
      'backup: include-volumes 1',
      () => ({ via: 'backup', inputs: { containers: app, destination: dir(), 'include-volumes': '1' }, expected: /Expected true or false/ }),
    ],
    [
      'backup: include-bind-mounts maybe',
      () => ({ via: 'backup', inputs: { containers: app, destination: dir(), 'include-bind-mounts': 'maybe' }, expected: /Expected true or false/ }),
    ],
    ['backup: dry-run sure', () => ({ via: 'backup', inputs: { containers: app, destination: dir(), 'dry-run': 'sure' }, expected: /Expected true or false/ })],
    [
      'backup: on-error retry',
      () => ({ via: 'backup', inputs: { containers: app, destination: dir(), 'on-error': 'retry' }, expected: /Expected one of: continue, abort/ }),
    ],
    [
      'backup: if-no-match panic',
      () => ({ via: 'backup', inputs: { containers: app, destination: dir(), 'if-no-match': 'panic' }, expected: /Expected one of: warn, error, ignore/ }),
    ],
    [
      'backup: compression xz',
      () => ({ via: 'backup', inputs: { containers: app, destination: dir(), compression: 'xz' }, expected: /Expected one of: auto, zstd, gzip/ }),
    ],
    [
      'backup: a user name without a password',
      () => ({
        via: 'backup',
        inputs: { containers: app, destination: registry, 'registry-username': 'u' },
        expected: /Expected both registry-username and registry-password/,
      }),
    ],
    [
      'backup: a password without a user name',
      () => ({
        via: 'backup',
        inputs: { containers: app, destination: registry, 'registry-password': 'p' },
        expected: /Expected both registry-username and registry-password/,
      }),
    ],
    [
      'backup: no credentials for the registry',
      () => ({ via: 'backup', inputs: { containers: app, destination: registry }, expected: /no credentials were given/ }),
    ],
    [
      'backup: a wrong password',
      () => ({
        via: 'backup',
        inputs: { containers: app, destination: registry, 'registry-username': reg.username, 'registry-password': 'wrong' },
        expected: /registry-username\/registry-password|docker login/,
      }),
    ],
    [
      'backup: a directory that cannot be made (procfs)',
      () => ({ via: 'backup', inputs: { containers: app, destination: 'dir:/proc/csx-nope' }, expected: /Cannot write to dir:\/proc\/csx-nope/ }),
    ],
    [
      'backup: a directory under a file',
      () => ({ via: 'backup', inputs: { containers: app, destination: 'dir:/etc/hostname/x' }, expected: /Cannot write to dir:\/etc\/hostname\/x/ }),
    ],
    [
      'backup: abort on a missing container',
      () => ({
        via: 'backup',
        inputs: { containers: `${app},${res.prefix}-ghost`, destination: dir(), 'on-error': 'abort' },
        expected: /Aborted before any change: .*no such container/,
      }),
    ],
    [
      'backup: if-no-match error',
      () => ({ via: 'backup', inputs: { containers: `${res.prefix}-none-*`, destination: dir(), 'if-no-match': 'error' }, expected: /No container matched/ }),
    ],
    [
      'backup: an artifact name with a colon',
      () => ({
        via: 'backup',
        inputs: { containers: app, destination: 'artifact:app:nightly' },
        expected: /GitHub refuses ":" in artifact names. Expected artifact:NAME/,
      }),
    ],
    [
      'backup: an artifact name with ../',
      () => ({ via: 'backup', inputs: { containers: app, destination: 'artifact:../x' }, expected: /GitHub refuses "\/" in artifact names/ }),
    ],
    [
      'backup: an artifact name of 101 characters',
      () => ({ via: 'backup', inputs: { containers: app, destination: `artifact:${'a'.repeat(101)}` }, expected: /a name of 1 to 100 characters/ }),
    ],
    [
      'backup: an artifact destination outside a workflow run',
      () => ({
        via: 'backup',
        inputs: { containers: app, destination: 'artifact:nightly' },
        expected: /exists only inside a workflow run .*ACTIONS_RUNTIME_TOKEN/,
      }),
    ],
    [
      'backup: retention-days 0',
      () => ({
        via: 'backup',
        inputs: { containers: app, destination: dir(), 'retention-days': '0' },
        expected: /Expected a whole number of days from 1 to 90/,
      }),
    ],
    [
      'backup: retention-days 91',
      () => ({
        via: 'backup',
        inputs: { containers: app, destination: dir(), 'retention-days': '91' },
        expected: /Expected a whole number of days from 1 to 90/,
      }),
    ],
    [
      'backup: retention-days a week',
      () => ({ via: 'backup', inputs: { containers: app, destination: dir(), 'retention-days': '7d' }, expected: /Invalid retention-days '7d'/ }),
    ],
    [
      'restore: run-id with a directory source',
      () => ({ via: 'restore', inputs: { source: dir(), 'run-id': '12' }, expected: /Expected run-id only with source artifact:NAME/ }),
    ],
    [
      'restore: a run-id that is not a number',
      () => ({ via: 'restore', inputs: { source: 'artifact:nightly', 'run-id': 'last' }, expected: /Invalid run-id 'last'. Expected the numeric ID/ }),
    ],
    [
      'restore: run-id with a repository that is not owner/name',
      () => ({
        via: 'restore',
        inputs: { source: 'artifact:nightly', 'run-id': '12', repository: 'nightly' },
        expected: /Invalid repository 'nightly'. Expected owner\/name/,
      }),
    ],
    [
      'restore: run-id with an empty token',
      () => ({
        via: 'restore',
        inputs: { source: 'artifact:nightly', 'run-id': '12', repository: 'o/r', 'github-token': '' },
        expected: /Missing github-token for run-id 12. Expected a token with actions:read/,
      }),
    ],
    [
      "restore: this run's artifacts outside a workflow run",
      () => ({
        via: 'restore',
        inputs: { source: 'artifact:nightly' },
        expected: /exists only inside a workflow run.*, or run-id with github-token to read another run's artifacts\.$/,
      }),
    ],
    ['restore: an unknown source scheme', () => ({ via: 'restore', inputs: { source: 'ftp:x' }, expected: /Expected dir:PATH, registry:/ })],
    ['restore: two sources', () => ({ via: 'restore', inputs: { source: `${dir()}\n${registry}` }, expected: /Expected one location/ })],
    [
      'restore: an empty snapshot (an expression that found nothing)',
      () => ({ via: 'restore', inputs: { source: dir(), snapshot: '' }, expected: /an empty value never means latest/ }),
    ],
    ['restore: a snapshot with ../', () => ({ via: 'restore', inputs: { source: dir(), snapshot: '../x' }, expected: /Expected a tag or latest/ })],
    [
      'restore: an unknown snapshot',
      () => ({ via: 'restore', inputs: { source: dir(), snapshot: 'nope' }, expected: /Snapshot 'nope' not found .*Expected one of: existing/ }),
    ],
    ['restore: a directory that does not exist', () => ({ via: 'restore', inputs: { source: `dir:${store}-missing` }, expected: /Cannot read dir:/ })],
    [
      'restore: a container the set lacks',
      () => ({ via: 'restore', inputs: { source: dir(), containers: 'zzz' }, expected: /has no container zzz. Expected one of:/ }),
    ],
    ['restore: rename without =', () => ({ via: 'restore', inputs: { source: dir(), rename: 'a' }, expected: /Expected old=new/ })],
    ['restore: two renames to one name', () => ({ via: 'restore', inputs: { source: dir(), rename: 'a=x\nb=x' }, expected: /Expected distinct new names/ })],
    ['restore: a rename target with ../', () => ({ via: 'restore', inputs: { source: dir(), rename: `${app}=../x` }, expected: /Invalid rename target/ })],
    [
      'restore: renaming what the set lacks',
      () => ({ via: 'restore', inputs: { source: dir(), rename: 'zzz=yyy' }, expected: /Cannot rename zzz: not a container or named volume being restored/ }),
    ],
    ['restore: start later', () => ({ via: 'restore', inputs: { source: dir(), start: 'later' }, expected: /Expected one of: auto, always, never/ })],
    ['restore: replace yes', () => ({ via: 'restore', inputs: { source: dir(), replace: 'yes' }, expected: /Expected true or false/ })],
    [
      'restore: an existing container, without replace',
      () => ({
        via: 'restore',
        inputs: { source: dir() },
        expected:
          /1 container\(s\) not restored: (\S+-app) \(refused: container '\1' exists \(replace: true replaces it, rename \1=NEW,\S+-v=NEW restores it beside it\);/,
      }),
    ],
    [
      'restore: a wrong registry password',
      () => ({
        via: 'restore',
        inputs: { source: registry, 'registry-username': reg.username, 'registry-password': 'wrong' },
        expected: /authentication|registry-username/,
      }),
    ],
    [
      'backup: group-by an unknown value',
      () => ({
        via: 'backup',
        inputs: { containers: app, destination: dir(), 'group-by': 'project' },
        expected: /^::error::Invalid group-by 'project'. Expected none, compose-project or label:KEY \(a label key, like label:app\).$/,
      }),
    ],
    [
      'backup: group-by label: without a key',
      () => ({
        via: 'backup',
        inputs: { containers: app, destination: dir(), 'group-by': 'label:' },
        expected: /Invalid group-by 'label:'. Expected none, compose-project or label:KEY/,
      }),
    ],
    [
      'backup: projects with an upper-case name',
      () => ({
        via: 'backup',
        inputs: { projects: 'Blog', destination: dir() },
        expected: /^::error::Invalid projects 'Blog'. Expected Compose project names: lowercase letters, digits, - and _, starting with a letter or digit.$/,
      }),
    ],
    [
      'cli: backup --tag all (every set, to verify)',
      () => ({
        via: 'cli',
        args: ['backup', '--containers', app, '--destination', dir(), '--tag', 'all'],
        expected: /^error: Invalid --tag 'all'. Expected a specific tag/,
      }),
    ],
    [
      'cli: prune of an artifact: location',
      () => ({
        via: 'cli',
        args: ['prune', '--destination', 'artifact:nightly', '--keep', 'last=1'],
        expected: /^error: prune takes dir: or registry: locations, not artifact:nightly/,
      }),
    ],
    [
      'cli: a flag that needs a value, followed by another flag',
      () => ({ via: 'cli', args: ['backup', '--labels', '--dry-run'], expected: /^error: Flag --labels needs a value: LIST, not --dry-run/ }),
    ],
    [
      'cli: list of a dir: location that does not exist',
      () => ({
        via: 'cli',
        args: ['list', '--source', `${dir()}-missing`],
        expected: /^error: Cannot read dir:\/\S+-missing: no such directory\. Expected a directory a backup wrote sets to\.$/,
      }),
    ],
    [
      'cli: --group-by an unknown value',
      () => ({
        via: 'cli',
        args: ['backup', '--containers', app, '--destination', dir(), '--group-by', 'compose'],
        expected: /^error: Invalid --group-by 'compose'. Expected none, compose-project or label:KEY/,
      }),
    ],
    [
      'cli: --projects with a space',
      () => ({
        via: 'cli',
        args: ['backup', '--projects', 'my blog', '--destination', dir()],
        expected: /^error: Invalid --projects 'my blog'. Expected Compose project names/,
      }),
    ],
    [
      'cli: --projects naming a project no container is in',
      () => ({
        via: 'cli',
        args: ['backup', '--projects', `${res.prefix}-nope`, '--destination', dir()],
        expected: /^error: 1 container\(s\) failed: project \S+-nope \(no container in Compose project \S+-nope\)$/,
      }),
    ],
    [
      'cli: an unknown command',
      () => ({
        via: 'cli',
        args: ['backpu'],
        expected: /Unknown command 'backpu'. Did you mean backup\? Expected backup, restore, list, verify, prune, ls, extract or diff/,
      }),
    ],
    [
      'cli: an unknown flag',
      () => ({
        via: 'cli',
        args: ['backup', '--contaners', 'x'],
        expected: /^error: Unknown flag --contaners for backup. Did you mean --containers\? See node dist\/cli.js backup --help.$/,
      }),
    ],
    ['cli: a password as a flag', () => ({ via: 'cli', args: ['backup', '--registry-password', 'secret'], expected: /Unknown flag --registry-password/ })],
    ['cli: a flag without its value', () => ({ via: 'cli', args: ['backup', '--tag'], expected: /Flag --tag needs a value/ })],
    [
      'cli: a stray argument',
      () => ({
        via: 'cli',
        args: ['restore', 'web'],
        expected: /Unexpected argument 'web' for restore. Expected --flag value; see node dist\/cli.js restore --help/,
      }),
    ],
    [
      'cli: verify an unknown snapshot',
      () => ({ via: 'cli', args: ['verify', '--source', dir(), '--snapshot', 'nope'], expected: /Snapshot 'nope' not found/ }),
    ],
    ['cli: list a bad location', () => ({ via: 'cli', args: ['list', '--source', 'registry:host'], expected: /Expected dir:PATH, registry:/ })],
    [
      'cli: a token as a flag',
      () => ({
        via: 'cli',
        args: ['restore', '--source', 'artifact:nightly', '--run-id', '1', '--github-token', 'ghs_x'],
        expected: /Unknown flag --github-token for restore/,
      }),
    ],
    [
      'cli: list artifacts of this run outside a workflow run',
      () => ({
        via: 'cli',
        args: ['list', '--source', 'artifact:nightly'],
        expected: /artifact:nightly needs GitHub's artifact service.*, or --run-id with GITHUB_TOKEN to read another run's artifacts\.$/,
      }),
    ],
    [
      'cli: a bad boolean',
      () => ({
        via: 'cli',
        args: ['backup', '--containers', app, '--destination', dir(), '--pause=maybe'],
        expected: /Invalid --pause 'maybe'. Expected true or false/,
      }),
    ],
    [
      'cli: a switch with a word after it',
      () => ({
        via: 'cli',
        args: ['backup', '--containers', app, '--destination', dir(), '--pause', 'no'],
        expected: /^error: Invalid --pause 'no'. Expected true or false.$/,
      }),
    ],
    [
      'cli: list a path that is not a location',
      () => ({ via: 'cli', args: ['list', '--source', './x'], expected: /^error: Invalid --source '.\/x'. Expected dir:PATH/ }),
    ],
    [
      'cli: run-id without a repository',
      () => ({
        via: 'cli',
        args: ['list', '--source', 'artifact:nightly', '--run-id', '123'],
        expected: /^error: Missing repository for --run-id 123. Expected owner\/name in --repository \(or GITHUB_REPOSITORY\).$/,
      }),
    ],
    [
      'cli: half registry credentials',
      () => ({
        via: 'cli',
        args: ['backup', '--containers', app, '--destination', registry, '--registry-username', 'u'],
        expected: /--registry-username needs a password. Expected --registry-password-stdin or CONTAINER_SNAPSHOT_REGISTRY_PASSWORD/,
      }),
    ],
    [
      'cli: no credentials for the registry',
      () => ({
        via: 'cli',
        args: ['backup', '--containers', app, '--destination', registry],
        expected: /no credentials were given: give --registry-username with --registry-password-stdin/,
      }),
    ],
    [
      'cli: an existing container, without --replace',
      () => ({
        via: 'cli',
        args: ['restore', '--source', dir()],
        expected:
          /^error: 1 container\(s\) failed: (\S+-app) \(refused: container '\1' exists \(--replace replaces it, --rename \1=NEW,\S+-v=NEW restores it beside it\);/,
      }),
    ],
  ];

  it('covers at least 30 cases across both actions and the CLI', () => {
    expect(cases.length).toBeGreaterThanOrEqual(30);
    const vias = new Set(cases.map(([, c]) => c().via));
    expect([...vias].sort()).toEqual(['backup', 'cli', 'restore']);
  });

  it.each(cases)('%s', async (_title, make) => {
    const c = make();
    const before = await state();
    let message: string;
    if (c.via === 'cli') {
      const r = await runCli(c.args, { env, input: c.input });
      expect(r.code).toBe(1);
      const lines = r.stderr.trim().split('\n');
      expect(lines.filter((l) => l.startsWith('error: '))).toHaveLength(1);
      message = lines.find((l) => l.startsWith('error: ')) ?? '';
      // Said once: no warning repeats what the error says.
      expect(lines.filter((l) => l.startsWith('warning: ') && message.includes(l.slice('warning: '.length)))).toEqual([]);
    } else {
      const r = await runStep(c.via === 'backup' ? '.' : 'restore', c.inputs, { env });
      expect(r.code, r.stdout).toBe(1);
      const errors = r.stdout.split('\n').filter((l) => l.startsWith('::error::'));
      expect(errors, r.stdout).toHaveLength(1);
      message = errors[0];
      expect(r.stdout.split('\n').filter((l) => l.startsWith('::warning::') && message.includes(l.slice('::warning::'.length)))).toEqual([]);
      expect(message).not.toContain('%0A');
    }
    expect(message).toMatch(c.expected);
    expect(await state()).toEqual(before);
  });
});
