import { describe, expect, it } from 'vitest';
import { inspectDiff } from '../support/inspect-diff.js';

const id = 'abcdef012345'.padEnd(64, '0');
const base = () => ({
  Id: id,
  Config: { Hostname: id.slice(0, 12), Env: ['A=1'], Image: 'x' },
  HostConfig: { Memory: 1, Dns: [] as string[] },
  NetworkSettings: { Networks: { net: { Aliases: [id.slice(0, 12), 'a'], IPAddress: '10.0.0.2' } } },
});

describe('inspectDiff', () => {
  it('reports every differing leaf, a field only one side has included, but not what differs by design', () => {
    const before = base();
    const after = { ...base(), Id: 'f'.repeat(64), Config: { Hostname: 'ffffffffffff', Env: ['A=2'], Image: 'y', New: true } };
    after.NetworkSettings.Networks.net = { Aliases: ['ffffffffffff', 'a'], IPAddress: '10.0.0.3' };
    (after.HostConfig as Record<string, unknown>).Dns = null;
    expect(
      inspectDiff(before, after, [
        { path: 'Config.Image', why: 'test' },
        { path: 'Networks.*.IPAddress', why: 'test' },
      ]),
    ).toEqual([
      { path: 'Config.Env', before: ['A=1'], after: ['A=2'] },
      { path: 'Config.New', before: undefined, after: true },
      { path: 'HostConfig.Dns', before: [], after: null },
    ]);
  });
});
