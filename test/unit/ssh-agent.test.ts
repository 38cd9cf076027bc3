import { describe, expect, it, vi } from 'vitest';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// ssh2 as dist/ssh2/index.cjs stands for it when its bundle cannot be read: making a Client throws.
vi.mock('ssh2', () => ({
  default: {
    Client: function Client() {
      throw new Error('SSH support could not be loaded');
    },
  },
}));

const { SshAgent } = await import('../../src/engine/ssh-agent.js');

describe('SshAgent when no SSH client can be made', () => {
  it('fails the call with the error at once instead of leaving it waiting', async () => {
    const agent = new SshAgent({ host: '127.0.0.1', port: 1, agent: '/nonexistent' });
    const outcome = await new Promise<{ err: Error | null; socket: unknown }>((resolve) => {
      agent.createConnection({}, (err, socket) => resolve({ err, socket }));
    });
    agent.close();
    expect(outcome.err?.message).toBe('SSH support could not be loaded');
    expect(outcome.socket).toBeUndefined();
  });
});

describe('dist/ssh2/index.cjs (scripts/ssh2-lazy.cjs): ssh2 read on first use', () => {
  /** The shim copied into a directory of its own, beside a stand-in bundle.cjs (or none). */
  function shimIn(bundle?: string) {
    const dir = mkdtempSync(join(tmpdir(), 'cs-ssh2-lazy-'));
    copyFileSync('scripts/ssh2-lazy.cjs', join(dir, 'index.cjs'));
    if (bundle !== undefined) writeFileSync(join(dir, 'bundle.cjs'), bundle);
    const shim = createRequire(join(dir, 'index.cjs'))('./index.cjs') as { Client: new (...args: unknown[]) => { args: unknown[] } };
    return { dir, shim, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
  }

  it("reads the bundle when the first Client is made, not before, and makes the bundle's own Client", () => {
    const loads = ((globalThis as { sshBundleLoads?: number }).sshBundleLoads = 0);
    const { shim, cleanup } = shimIn('globalThis.sshBundleLoads++; exports.Client = class Client { constructor(...args) { this.args = args; } };');
    try {
      expect((globalThis as { sshBundleLoads?: number }).sshBundleLoads).toBe(loads);
      const a = new shim.Client(1, 'two');
      const b = new shim.Client();
      expect((globalThis as { sshBundleLoads?: number }).sshBundleLoads).toBe(1);
      expect(a.constructor.name).toBe('Client');
      expect(a.args).toEqual([1, 'two']);
      expect(b.args).toEqual([]);
    } finally {
      cleanup();
    }
  });

  it('a bundle that cannot be read: one Error naming it, when a Client is made', () => {
    const { dir, shim, cleanup } = shimIn();
    try {
      expect(() => new shim.Client()).toThrow(`SSH support could not be loaded from ${dir}/bundle.cjs (is dist/ complete?): Cannot find module './bundle.cjs'`);
    } finally {
      cleanup();
    }
  });
});
