import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { resolveCredentials } from '../../src/registry/credentials.js';

const dirs: string[] = [];

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'csx-cred-'));
  dirs.push(dir);
  return dir;
}

afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const HELPER = `#!/bin/sh
[ "$1" = get ] || exit 2
read -r server
case "$server" in
  user.example) echo '{"ServerURL":"user.example","Username":"alice","Secret":"helper-pass"}' ;;
  token.example) echo '{"ServerURL":"token.example","Username":"<token>","Secret":"helper-identity"}' ;;
  store.example) echo '{"ServerURL":"store.example","Username":"bob","Secret":"store-pass"}' ;;
  broken.example) echo 'exploded' >&2; exit 3 ;;
  *) echo 'credentials not found in native keychain'; exit 1 ;;
esac
`;

function helperPath(): string {
  const bin = tempDir();
  const file = join(bin, 'docker-credential-csxtest');
  writeFileSync(file, HELPER);
  chmodSync(file, 0o755);
  return `${bin}:${process.env.PATH ?? ''}`;
}

function setup(config: unknown) {
  const dir = tempDir();
  writeFileSync(join(dir, 'config.json'), typeof config === 'string' ? config : JSON.stringify(config));
  const secrets: string[] = [];
  return {
    dir,
    secrets,
    opts: {
      env: { DOCKER_CONFIG: dir, PATH: helperPath() },
      onSecret: (s: string) => secrets.push(s),
    },
  };
}

const b64 = (s: string) => Buffer.from(s).toString('base64');

describe('resolveCredentials', () => {
  it('prefers explicit username and password and reports the password as a secret', async () => {
    const { opts, secrets } = setup({ auths: { 'reg.example': { auth: b64('x:y') } } });
    const auth = await resolveCredentials('reg.example', { ...opts, username: 'me', password: 'pw' });
    expect(auth).toEqual({ username: 'me', password: 'pw' });
    expect(secrets).toEqual(['pw']);
  });

  it('needs both username and password', async () => {
    await expect(resolveCredentials('reg.example', { username: 'me' })).rejects.toThrow(/Both registry-username and registry-password/);
    await expect(resolveCredentials('reg.example', { password: 'pw' })).rejects.toThrow(/only registry-password was given/);
  });

  it('returns undefined without a config file', async () => {
    const dir = tempDir();
    expect(await resolveCredentials('reg.example', { env: { DOCKER_CONFIG: dir } })).toBeUndefined();
  });

  it('defaults to ~/.docker/config.json', async () => {
    const home = tempDir();
    mkdirSync(join(home, '.docker'));
    writeFileSync(join(home, '.docker', 'config.json'), JSON.stringify({ auths: { 'reg.example': { auth: b64('u:p') } } }));
    expect(await resolveCredentials('reg.example', { env: { HOME: home } })).toEqual({ username: 'u', password: 'p' });
  });

  it('names the file when the JSON is invalid, without quoting its content', async () => {
    const { dir, opts } = setup('{"auths": {"reg.example": {"auth": "c2VjcmV0"');
    const err = await resolveCredentials('reg.example', opts).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toContain(join(dir, 'config.json'));
    expect((err as Error).message).not.toContain('c2VjcmV0');
  });

  it('reads base64 auth entries under normalised keys', async () => {
    for (const key of ['reg.example:5000', 'https://reg.example:5000', 'http://reg.example:5000', 'https://reg.example:5000/v1/']) {
      const { opts, secrets } = setup({ auths: { [key]: { auth: b64('user:pa:ss') } } });
      expect(await resolveCredentials('reg.example:5000', opts)).toEqual({ username: 'user', password: 'pa:ss' });
      expect(secrets).toEqual([b64('user:pa:ss'), 'pa:ss']);
    }
  });

  it('reads username/password and identity token entries', async () => {
    const plain = setup({ auths: { 'reg.example': { username: 'u', password: 'p' } } });
    expect(await resolveCredentials('reg.example', plain.opts)).toEqual({ username: 'u', password: 'p' });
    expect(plain.secrets).toEqual(['p']);
    const token = setup({ auths: { 'reg.example': { auth: b64('u:'), identitytoken: 'idt' } } });
    expect(await resolveCredentials('reg.example', token.opts)).toEqual({ username: 'u', password: '', identityToken: 'idt' });
    expect(token.secrets).toContain('idt');
  });

  it('matches Docker Hub aliases', async () => {
    const { opts } = setup({ auths: { 'https://index.docker.io/v1/': { auth: b64('hub:pw') } } });
    expect(await resolveCredentials('docker.io', opts)).toEqual({ username: 'hub', password: 'pw' });
  });

  it('uses credHelpers before auths', async () => {
    const { opts, secrets } = setup({
      credHelpers: { 'user.example': 'csxtest' },
      auths: { 'user.example': { auth: b64('file:pw') } },
    });
    expect(await resolveCredentials('user.example', opts)).toEqual({ username: 'alice', password: 'helper-pass' });
    expect(secrets).toEqual(['helper-pass']);
  });

  it('turns a <token> username from a helper into an identity token', async () => {
    const { opts, secrets } = setup({ credHelpers: { 'token.example': 'csxtest' } });
    expect(await resolveCredentials('token.example', opts)).toEqual({ identityToken: 'helper-identity' });
    expect(secrets).toEqual(['helper-identity']);
  });

  it('treats "credentials not found" from a helper as no credentials', async () => {
    const { opts } = setup({ credHelpers: { 'none.example': 'csxtest' } });
    expect(await resolveCredentials('none.example', opts)).toBeUndefined();
  });

  it('reports a failing helper', async () => {
    const { opts } = setup({ credHelpers: { 'broken.example': 'csxtest' } });
    await expect(resolveCredentials('broken.example', opts)).rejects.toThrow(/docker-credential-csxtest failed for broken.example: exploded/);
  });

  it('reports a missing helper', async () => {
    const { opts } = setup({ credHelpers: { 'reg.example': 'csxmissing' } });
    await expect(resolveCredentials('reg.example', opts)).rejects.toThrow(/docker-credential-csxmissing .* was not found on PATH/);
  });

  it('falls back to credsStore when auths has no usable entry', async () => {
    const { opts, secrets } = setup({ credsStore: 'csxtest', auths: { 'store.example': {} } });
    expect(await resolveCredentials('store.example', opts)).toEqual({ username: 'bob', password: 'store-pass' });
    expect(secrets).toEqual(['store-pass']);
  });

  it('returns undefined when nothing matches', async () => {
    const { opts } = setup({ auths: { 'other.example': { auth: b64('a:b') } } });
    expect(await resolveCredentials('reg.example', opts)).toBeUndefined();
  });

  it('rejects an auth value that is not user:password', async () => {
    const { opts } = setup({ auths: { 'reg.example': { auth: b64('nocolon') } } });
    await expect(resolveCredentials('reg.example', opts)).rejects.toThrow(/not base64 of user:password/);
  });
});
