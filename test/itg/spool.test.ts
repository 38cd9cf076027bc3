import { afterAll, describe, expect, inject, it } from 'vitest';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { backup, verify } from '../../src/commands.js';
import { parseBackupInputs } from '../../src/core/inputs.js';
import { parseDestination } from '../../src/core/destination-input.js';
import { startFaultyProxy } from '../support/faulty-proxy.js';
import { inputs, testEnv } from '../support/commands.js';
import { Resources, commitsOf, docker, quietLog, runBigVolumeContainer, waitFor } from '../support/fixtures.js';

const spoolFiles = (dir: string): string[] =>
  existsSync(dir)
    ? readdirSync(dir, { recursive: true, withFileTypes: true })
        .filter((e) => e.isFile())
        .map((e) => join(e.parentPath, e.name))
    : [];
const filesUnder = (dir: string): string[] =>
  existsSync(dir)
    ? readdirSync(dir, { recursive: true, withFileTypes: true })
        .filter((e) => e.isFile())
        .map((e) => e.name)
    : [];

describe('the pause never waits on the destination', () => {
  const res = new Resources(inject('runPrefix'), 'spool');
  const reg = inject('registry');
  const creds = { 'registry-username': reg.username, 'registry-password': reg.password };
  afterAll(() => res.cleanup());

  /**
   * A backup through a proxy whose first upload of more than 256 KiB stalls mid-body (a streamed PATCH, or
   * a blob sent whole in its PUT); resolves once it has stalled. `dropped.all`, once set, drops every later request.
   */
  async function stalledBackup(values: Record<string, string>, runnerTemp: string, dropped = { all: false }) {
    const upload = (req: { method?: string; url?: string }) => req.method === 'PATCH' || (req.method === 'PUT' && (req.url ?? '').includes('/blobs/uploads/'));
    const proxy = await startFaultyProxy(reg.host, (req) => (dropped.all ? 'reset' : upload(req) ? { stallAfter: 256 << 10 } : 'pass'));
    const env = { ...testEnv, RUNNER_TEMP: runnerTemp };
    const destination = [values.destination, `registry:${proxy.host}/${res.prefix}`].filter(Boolean).join('\n');
    const run = backup(parseBackupInputs(inputs({ ...values, ...creds, destination })), { log: quietLog, env }).then(
      (r) => ({ r }),
      (err: Error) => ({ err }),
    );
    // Whichever comes first: a backup that ends without ever stalling is a failure of the test's premise.
    const first = await Promise.race([proxy.stalled.then(() => 'stalled' as const), run.then(() => 'ended' as const)]);
    expect(first).toBe('stalled');
    return { proxy, run, registry: `registry:${proxy.host}/${res.prefix}` };
  }

  it('puts the container back while a registry upload is stalled, then completes once the registry answers again', async () => {
    const { name, id } = await runBigVolumeContainer(res, 'stall', inject('fixtureImage'), 8);
    const temp = res.tempDir();
    const { proxy, run, registry } = await stalledBackup({ containers: name, tag: 'stall' }, temp);
    try {
      // The upload is blocked now: the container has been unpaused already, and what it held is in the spool.
      const during = await docker.getContainer(id).inspect();
      expect(during.State).toMatchObject({ Running: true, Paused: false });
      expect(quietLog.lines).toContainEqual(expect.stringMatching(new RegExp(`^${name}: paused for \\d+ ms`)));
      expect(filesUnder(join(temp, 'container-snapshot-spool')).length).toBeGreaterThan(0);
      proxy.release('pass');
      const outcome = await run;
      expect('r' in outcome && outcome.r.failed, JSON.stringify(outcome)).toBe(0);
      const v = await verify(parseDestination(registry), 'stall', { username: reg.username, password: reg.password }, { log: quietLog, env: testEnv });
      expect(v.blobs).toBeGreaterThanOrEqual(3);
      expect(filesUnder(join(temp, 'container-snapshot-spool'))).toEqual([]);
    } finally {
      proxy.release('pass');
      await proxy.close();
    }
  });

  it("spools in clear without encryption, encrypted with it: while the upload stalls, no spool file holds the volume's marker", async () => {
    const marker = `MARKER-${res.prefix}-spool-clear-text`;
    const { name } = await runBigVolumeContainer(res, 'enc', inject('fixtureImage'), 1);
    const exec = await docker.getContainer(name).exec({ Cmd: ['sh', '-c', `for i in $(seq 2000); do echo ${marker}; done > /v/marker`] });
    await (await exec.start({})).resume();
    await waitFor(async () => (await exec.inspect()).Running === false, 30_000);
    for (const [tag, values] of [
      ['clear', {}],
      ['sealed', { 'encryption-passphrase': `spool passphrase ${res.prefix} long enough` }],
    ] as const) {
      const temp = res.tempDir();
      const { proxy, run } = await stalledBackup({ containers: name, tag, ...values }, temp);
      try {
        const files = spoolFiles(join(temp, 'container-snapshot-spool'));
        expect(files.length).toBeGreaterThan(0);
        const holding = files.filter((f) => readFileSync(f).includes(marker));
        expect(holding.length, tag).toBe(tag === 'clear' ? 1 : 0);
        proxy.release('pass');
        const outcome = await run;
        expect('r' in outcome && outcome.r.failed, JSON.stringify(outcome)).toBe(0);
      } finally {
        proxy.release('pass');
        await proxy.close();
      }
    }
  });

  it('fails cleanly when the stalled upload is dropped: container running, no spool and no partial blob left (spooled in the dir: destination)', async () => {
    const { name, id } = await runBigVolumeContainer(res, 'drop', inject('fixtureImage'), 8);
    const temp = res.tempDir();
    const store = join(res.tempDir(), 'store');
    // A blob sent whole is retried after a dropped connection: the registry stays unreachable from then on.
    const dropped = { all: false };
    const { proxy, run } = await stalledBackup({ containers: name, tag: 'drop', destination: `dir:${store}` }, temp, dropped);
    try {
      expect((await docker.getContainer(id).inspect()).State).toMatchObject({ Running: true, Paused: false });
      dropped.all = true;
      proxy.release('reset');
      const outcome = await run;
      const failed = 'err' in outcome ? outcome.err.message : outcome.r.containers.find((c) => c.status === 'failed')?.error;
      expect(failed, JSON.stringify(outcome)).toMatch(/registry|upload|socket|ECONNRESET|closed/i);
      expect((await docker.getContainer(id).inspect()).State).toMatchObject({ Running: true, Paused: false });
      expect(filesUnder(join(store, '.tmp'))).toEqual([]);
      expect(filesUnder(join(temp, 'container-snapshot-spool'))).toEqual([]);
      expect(readdirSync(join(store, 'sets'))).toEqual([]);
      expect(await commitsOf([id])).toEqual([]);
    } finally {
      proxy.release('pass');
      await proxy.close();
    }
  });
});
