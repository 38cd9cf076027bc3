import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { COMMANDS, commandHelp, parseArgs, unknownCommand, usage, type Command } from '../../src/cli-args.js';
import { closest, editDistance } from '../../src/core/spelling.js';
import { parseBackupInputs, parseRestoreInputs, parseSource, parseSourceRun } from '../../src/core/inputs.js';
import { CLI_WORDS } from '../../src/core/words.js';
import { TOOL } from '../../src/version.js';

const commands = Object.keys(COMMANDS) as Command[];
const reader = (values: Record<string, string>) => (name: string) => values[name] ?? '';

describe('CLI help', () => {
  it.each(commands)('%s --help has one line per flag, with what it takes and its default', (command) => {
    const help = commandHelp(command);
    for (const f of COMMANDS[command].flags) {
      const line = help
        .split('\n')
        .find((l) => l.trimStart().startsWith(`--${f.name} `) || l.trim() === `--${f.name}` || l.trimStart().startsWith(`--${f.name}  `));
      expect(line, f.name).toBeDefined();
      if (f.takes) expect(line).toContain(`--${f.name} ${f.takes}`);
      if (f.default) expect(line).toContain(`(default: ${f.default})`);
    }
    expect(help).not.toContain(commandHelp(commands.find((c) => c !== command)!).split('\n')[0]);
  });

  it('has a line for every input of the actions that the CLI takes as a flag, with the same default', () => {
    const inputs = { ...parse(readFileSync('action.yml', 'utf8')).inputs, ...parse(readFileSync('restore/action.yml', 'utf8')).inputs } as Record<
      string,
      { default?: string }
    >;
    for (const command of commands) {
      for (const f of COMMANDS[command].flags) {
        const input = inputs[f.name];
        if (input && /^(true|false|\d+|auto|continue|warn|latest|dir:\.\/container-snapshots)$/.test(input.default ?? ''))
          expect(f.default, `${command} --${f.name}`).toBe(input.default);
      }
    }
  });

  it('names every command in the global usage, with the exit statuses the CLI returns', () => {
    const text = usage();
    for (const command of commands) expect(text).toMatch(new RegExp(`^  ${command} +\\S`, 'm'));
    expect(text).toMatch(/Exit status: 0 .*1 .*2 .*130\/143/);
  });

  it('prints the version of package.json', () => {
    expect(TOOL.version).toBe(JSON.parse(readFileSync('package.json', 'utf8')).version);
  });
});

describe('CLI flags and suggestions', () => {
  it('suggests the flag that means the same here before the nearest spelling', () => {
    // --force is nearest to --source by spelling; what it asks for is --replace.
    expect(() => parseArgs('restore', ['--force'])).toThrow(/^Unknown flag --force for restore\. Did you mean --replace\?/);
    expect(() => parseArgs('extract', ['--force'])).toThrow(/Did you mean --overwrite\?/);
    // The location is --destination where a command writes it, --source where it reads it.
    expect(() => parseArgs('prune', ['--source', 'dir:x'])).toThrow(/^Unknown flag --source for prune\. Did you mean --destination\?/);
    expect(() => parseArgs('backup', ['--source', 'dir:x'])).toThrow(/Did you mean --destination\?/);
    expect(() => parseArgs('list', ['--destination', 'dir:x'])).toThrow(/^Unknown flag --destination for list\. Did you mean --source\?/);
    expect(() => parseArgs('extract', ['--destination', '/tmp/x'])).toThrow(/Did you mean --to\?/);
    // Names an object inherits are flags like any other unknown one.
    for (const name of ['constructor', 'toString', '__proto__', 'valueOf']) expect(() => parseArgs('backup', [`--${name}`])).toThrow(/^Unknown flag --/);
  });

  it('suggests the nearest flag of the command, not the whole list', () => {
    expect(() => parseArgs('backup', ['--container', 'x'])).toThrow(
      /^Unknown flag --container for backup\. Did you mean --containers\? See node dist\/cli\.js backup --help\.$/,
    );
    expect(() => parseArgs('restore', ['--snapshto', 'x'])).toThrow(/Did you mean --snapshot\?/);
    expect(() => parseArgs('backup', ['--labels-x', 'x'])).toThrow(/Did you mean --labels\?/);
    expect(() => parseArgs('backup', ['--rename', 'a=b'])).toThrow(/Unknown flag --rename for backup\. It is a flag of restore\./);
    expect(() => parseArgs('list', ['--zzzzzz'])).toThrow(/^Unknown flag --zzzzzz for list\. See/);
    expect(() => parseArgs('list', ['--zzzzzz'])).toThrow(/^Unknown flag --zzzzzz for list\. See/);
    expect(unknownCommand('backpu').message).toMatch(/Did you mean backup\?/);
    expect(unknownCommand('frobnicate').message).not.toMatch(/Did you mean/);
  });

  it('measures edit distance', () => {
    expect(editDistance('container', 'containers')).toBe(1);
    expect(editDistance('kitten', 'sitting')).toBe(3);
    expect(closest('destinaton', ['destination', 'tag'])).toBe('destination');
    expect(closest('x', ['destination', 'tag'])).toBeUndefined();
  });

  it('takes the word after a switch as its value, so --pause no is refused like --pause=no', () => {
    const spaced = parseArgs('backup', ['--pause', 'no']);
    const joined = parseArgs('backup', ['--pause=no']);
    expect(spaced.get('pause')).toBe('no');
    const message = (flags: Map<string, string>) => {
      try {
        parseBackupInputs((n) => flags.get(n) ?? '', undefined, {}, CLI_WORDS);
      } catch (err) {
        return (err as Error).message;
      }
    };
    expect(message(spaced)).toBe("Invalid --pause 'no'. Expected true or false.");
    expect(message(joined)).toBe(message(spaced));
    expect(parseArgs('backup', ['--dry-run', '--pause', 'false']).get('dry-run')).toBe('true');
    expect(parseArgs('backup', ['--containers', 'a', '--containers', 'b']).get('containers')).toBe('a\nb');
  });

  it('refuses a flag that needs a value when another flag of the command follows it, rather than take that flag as its value', () => {
    expect(() => parseArgs('backup', ['--labels', '--dry-run'])).toThrow(
      'Flag --labels needs a value: LIST, not --dry-run (a value that starts with -- goes as --labels=VALUE).',
    );
    expect(() => parseArgs('backup', ['--destination', '--containers', 'x'])).toThrow(/^Flag --destination needs a value: .*, not --containers /);
    expect(parseArgs('backup', ['--pre-command=--flag']).get('pre-command')).toBe('--flag');
    // A mistyped flag after it too: taken as the value, the run would go on without the flag meant.
    expect(() => parseArgs('backup', ['--labels', '--dryrun'])).toThrow(/^Flag --labels needs a value: LIST, not --dryrun /);
  });
});

describe('messages in the words of the interface', () => {
  it('names CLI flags in the CLI and inputs in the action', () => {
    expect(() => parseSource(reader({ source: './x' }), CLI_WORDS)).toThrow(/^Invalid --source '\.\/x'\. Expected dir:PATH/);
    expect(() => parseSource(reader({ source: './x' }))).toThrow(/^Invalid source '\.\/x'/);
    expect(() => parseRestoreInputs(reader({ source: 'dir:x', snapshot: 'latest', rename: 'a' }), CLI_WORDS)).toThrow(
      /^Invalid --rename 'a'\. Expected old=new/,
    );
    expect(() => parseBackupInputs(reader({ 'stop-timeout': 'x' }), undefined, {}, CLI_WORDS)).toThrow(/^Invalid --stop-timeout 'x'/);
    expect(() => parseBackupInputs(reader({ 'stop-timeout': 'x' }))).toThrow(/^Invalid stop-timeout 'x'/);
  });

  it('names --repository and GITHUB_REPOSITORY with --run-id', () => {
    const source = parseSource(reader({ source: 'artifact:nightly' }), CLI_WORDS);
    expect(() => parseSourceRun(reader({ 'run-id': '123' }), source, CLI_WORDS)).toThrow(
      /^Missing repository for --run-id 123\. Expected owner\/name in --repository \(or GITHUB_REPOSITORY\)\.$/,
    );
    expect(() => parseSourceRun(reader({ 'run-id': '123', repository: 'o/r' }), source, CLI_WORDS)).toThrow(/^Missing GITHUB_TOKEN for --run-id 123/);
    expect(() => parseSourceRun(reader({ 'run-id': '123', repository: 'o/r' }), source)).toThrow(/^Missing github-token for run-id 123/);
    expect(() => parseSourceRun(reader({ 'run-id': '1' }), parseSource(reader({ source: 'dir:x' }), CLI_WORDS), CLI_WORDS)).toThrow(
      /Expected --run-id only with --source artifact:NAME/,
    );
  });
});
