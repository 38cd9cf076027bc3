import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/runner.js';

const version = JSON.parse(readFileSync('package.json', 'utf8')).version as string;
const CACHE = `container-snapshot-compile-cache-${process.getuid?.()}`;

/** Every file under `dir`, as paths relative to it. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => join(d.parentPath, d.name).slice(dir.length + 1));
}

// The entries of dist/ are scripts/loader.mjs, which keeps Node's compile cache of the bundle in a
// directory of the user's own in the temporary directory (never RUNNER_TEMP) and then imports the bundle.
describe('the entries of dist/ start their bundle through the compile-cache loader', () => {
  const temp = mkdtempSync(join(tmpdir(), 'csx-startup-'));
  // Node's own switch of a cache directory, off (empty) so that the loader chooses.
  const clean = { NODE_COMPILE_CACHE: '' };

  afterAll(() => rmSync(temp, { recursive: true, force: true }));

  it('each entry is the loader, importing its bundle beside its side files', () => {
    for (const [entry, bundle] of [
      ['dist/cli.js', './cli/bundle.js'],
      ['dist/backup/index.js', './bundle.js'],
      ['dist/restore/index.js', './bundle.js'],
    ]) {
      const source = readFileSync(entry, 'utf8');
      expect(source, entry).toContain('enableCompileCache(dir)');
      expect(source.trimEnd().endsWith(`await import('${bundle}');`), entry).toBe(true);
      expect(statSync(join(entry, '..', bundle)).size, entry).toBeGreaterThan(1 << 20);
    }
  });

  it('leaves the artifact client out of the entry bundles: a bundle of its own, imported beside them when an artifact: destination opens', async () => {
    // BlobServiceClient: the Azure storage SDK the artifact client uploads with.
    for (const bundle of ['dist/cli/bundle.js', 'dist/backup/bundle.js', 'dist/restore/bundle.js']) {
      const source = readFileSync(bundle, 'utf8');
      expect(source.includes('BlobServiceClient'), bundle).toBe(false);
      expect(source, bundle).toContain("'../artifact/bundle.js'");
    }
    expect(readFileSync('dist/artifact/bundle.js', 'utf8')).toContain('BlobServiceClient');
    expect(readFileSync('dist/artifact/licenses.txt', 'utf8')).toContain('@azure/storage-blob');
    const sdk = (await import(join(process.cwd(), 'dist/artifact/bundle.js'))) as { DefaultArtifactClient: unknown };
    expect(typeof sdk.DefaultArtifactClient).toBe('function');
  });

  it("leaves dockerode's BuildKit packages (gRPC, protobuf) out of the entry bundles: a module beside each that throws on any use", () => {
    for (const dir of ['dist/cli', 'dist/backup', 'dist/restore']) {
      const source = readFileSync(join(dir, 'bundle.js'), 'utf8');
      // One of grpc-js's own option names; and the .proto files proto-loader would read, not beside it.
      expect(source.includes('grpc.ssl_target_name_override'), dir).toBe(false);
      expect(existsSync(join(dir, 'proto')), dir).toBe(false);
      expect(source, dir).toContain('("./buildkit-absent.cjs")');
      const absent = createRequire(join(process.cwd(), dir, 'bundle.js'))('./buildkit-absent.cjs') as Record<string, unknown>;
      expect(absent.__esModule).toBeUndefined();
      expect(() => absent.Server).toThrow(/BuildKit support \(gRPC, protobuf\) is not part of container-snapshot: Server/);
    }
  });

  it('keeps the cache in a directory of its own (mode 700) in TMPDIR, none in RUNNER_TEMP, and runs the same from it the second time', async () => {
    const tmp = join(temp, 'tmp');
    const runnerTemp = join(temp, 'runner');
    mkdirSync(tmp);
    mkdirSync(runnerTemp);
    const env = { ...clean, TMPDIR: tmp, RUNNER_TEMP: runnerTemp };
    const first = await runCli(['--version'], { env });
    expect([first.code, first.stdout.trim(), first.stderr]).toEqual([0, version, '']);
    expect(statSync(join(tmp, CACHE)).mode & 0o777).toBe(0o700);
    const cached = filesUnder(join(tmp, CACHE));
    expect(cached.length).toBeGreaterThan(0);
    const second = await runCli(['--version'], { env });
    expect([second.code, second.stdout.trim(), second.stderr]).toEqual([0, version, '']);
    expect(filesUnder(join(tmp, CACHE))).toEqual(cached);
    expect(readdirSync(runnerTemp)).toEqual([]);
  });

  it('runs without a cache where the directory cannot be made', async () => {
    const notDir = join(temp, 'a-file');
    writeFileSync(notDir, '');
    const run = await runCli(['--version'], { env: { ...clean, TMPDIR: notDir } });
    expect([run.code, run.stdout.trim(), run.stderr]).toEqual([0, version, '']);
  });

  it('does not use a directory that others may write (a shared /tmp), and runs without a cache', async () => {
    const shared = join(temp, 'shared');
    mkdirSync(join(shared, CACHE), { recursive: true });
    chmodSync(join(shared, CACHE), 0o777);
    const run = await runCli(['--version'], { env: { ...clean, TMPDIR: shared } });
    expect([run.code, run.stdout.trim(), run.stderr]).toEqual([0, version, '']);
    expect(filesUnder(join(shared, CACHE))).toEqual([]);
  });

  it('leaves the cache off with NODE_DISABLE_COMPILE_CACHE=1', async () => {
    const off = join(temp, 'off');
    mkdirSync(off);
    const run = await runCli(['--version'], { env: { ...clean, TMPDIR: off, NODE_DISABLE_COMPILE_CACHE: '1' } });
    expect([run.code, run.stdout.trim()]).toEqual([0, version]);
    expect(readdirSync(off)).toEqual([]);
  });
});
