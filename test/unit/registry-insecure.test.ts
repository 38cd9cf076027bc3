import { describe, expect, it } from 'vitest';
import { COMMANDS, commandHelp, parseArgs } from '../../src/cli-args.js';
import { parseBackupInputs, parseDestinations, parseSource } from '../../src/core/inputs.js';
import { CLI_WORDS } from '../../src/core/words.js';

const reader = (values: Record<string, string>) => (name: string) => values[name] ?? '';

describe('registry-insecure: registries reached over plain HTTP', () => {
  it('marks exactly the registry locations it names (host and port, any case), and nothing else', () => {
    const get = reader({ destination: 'registry:Reg.LAN:5000/a,registry:reg.lan/b,registry:ghcr.io/c,dir:/x', 'registry-insecure': 'reg.lan:5000\nother.lan' });
    expect(parseDestinations(get).map((d) => [d.raw, 'insecure' in d && d.insecure === true])).toEqual([
      ['registry:Reg.LAN:5000/a', true],
      ['registry:reg.lan/b', false],
      ['registry:ghcr.io/c', false],
      ['dir:/x', false],
    ]);
    expect(parseSource(reader({ source: 'registry:reg.lan:5000/a', 'registry-insecure': 'reg.lan:5000' }))).toMatchObject({ insecure: true });
    expect(parseSource(reader({ source: 'registry:reg.lan:5000/a' }))).not.toHaveProperty('insecure');
  });

  it('refuses an entry that is not HOST[:PORT], in the words of the interface', () => {
    const bad = { destination: 'registry:reg.lan:5000/a', 'registry-insecure': 'http://reg.lan:5000' };
    expect(() => parseBackupInputs(reader(bad))).toThrow(
      "Invalid registry-insecure 'http://reg.lan:5000'. Expected HOST[:PORT] of a registry, as in registry:HOST[:PORT]/PREFIX (e.g. registry.lan:5000).",
    );
    expect(() => parseSource(reader({ 'registry-insecure': 'reg.lan:5000/path' }), CLI_WORDS)).toThrow(
      /^Invalid --registry-insecure 'reg\.lan:5000\/path'\. Expected HOST\[:PORT\]/,
    );
  });

  it('is a flag of every command that reaches a registry, with its help line', () => {
    for (const command of ['backup', 'restore', 'list', 'verify', 'prune'] as const) {
      expect(
        COMMANDS[command].flags.map((f) => f.name),
        command,
      ).toContain('registry-insecure');
      expect(commandHelp(command)).toMatch(/--registry-insecure LIST +registries \(HOST\[:PORT\]\) reached over plain HTTP.*\(default: loopback only\)/);
    }
    expect(parseArgs('list', ['--registry-insecure', 'reg.lan:5000']).get('registry-insecure')).toBe('reg.lan:5000');
  });
});
