import { execFile, type ExecFileException } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { RegistryAuth } from './auth.js';

export interface CredentialOptions {
  username?: string;
  password?: string;
  env?: NodeJS.ProcessEnv;
  onSecret?: (secret: string) => void;
}

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
}

interface DockerConfig {
  auths?: Record<string, AuthEntry>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
}

interface Context {
  host: string;
  file: string;
  env: NodeJS.ProcessEnv;
  onSecret: (secret: string) => void;
}

const HELPER_TIMEOUT_MS = 30_000;
const DOCKER_HUB = 'https://index.docker.io/v1/';
const HUB_HOSTS = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

export async function resolveCredentials(host: string, opts: CredentialOptions = {}): Promise<RegistryAuth | undefined> {
  const onSecret = opts.onSecret ?? (() => undefined);
  const explicit = explicitCredentials(opts, onSecret);
  if (explicit) return explicit;
  const env = opts.env ?? process.env;
  const file = join(env.DOCKER_CONFIG || join(env.HOME || homedir(), '.docker'), 'config.json');
  const config = await readConfig(file);
  if (!config) return undefined;
  return fromConfig(config, { host, file, env, onSecret });
}

function explicitCredentials(opts: CredentialOptions, onSecret: (secret: string) => void): RegistryAuth | undefined {
  const { username, password } = opts;
  if (password) onSecret(password);
  if (!username && !password) return undefined;
  if (!username || !password) {
    const given = username ? 'registry-username' : 'registry-password';
    throw new Error(`Both registry-username and registry-password are needed, but only ${given} was given`);
  }
  return { username, password };
}

async function readConfig(file: string): Promise<DockerConfig | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`Cannot read Docker config ${file}: ${(err as Error).message}`, { cause: err });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // JSON.parse messages quote the input, which holds secrets
    throw new Error(`Docker config ${file} is not valid JSON`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new Error(`Docker config ${file} is not a JSON object`);
  }
  return parsed as DockerConfig;
}

async function fromConfig(config: DockerConfig, ctx: Context): Promise<RegistryAuth | undefined> {
  const helper = lookup(config.credHelpers, ctx.host);
  if (typeof helper === 'string' && helper) return runHelper(helper, ctx);
  const entry = lookup(config.auths, ctx.host);
  const fromEntry = entry ? authFromEntry(entry, ctx) : undefined;
  if (fromEntry) return fromEntry;
  if (typeof config.credsStore === 'string' && config.credsStore) return runHelper(config.credsStore, ctx);
  return undefined;
}

/** Docker keys its config by `host`, `https://host`, `https://host/v1/` and so on. */
export function normaliseServerAddress(address: string): string {
  const bare = address.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '');
  const host = bare.split('/')[0].toLowerCase();
  return HUB_HOSTS.has(host) ? 'index.docker.io' : host;
}

function lookup<T>(map: Record<string, T> | undefined, host: string): T | undefined {
  if (!map || typeof map !== 'object') return undefined;
  if (Object.hasOwn(map, host)) return map[host];
  const wanted = normaliseServerAddress(host);
  const key = Object.keys(map).find((k) => normaliseServerAddress(k) === wanted);
  return key === undefined ? undefined : map[key];
}

function authFromEntry(entry: AuthEntry, ctx: Context): RegistryAuth | undefined {
  for (const secret of [entry.auth, entry.password, entry.identitytoken]) {
    if (typeof secret === 'string' && secret) ctx.onSecret(secret);
  }
  const auth: RegistryAuth = entry.auth ? decodeAuth(entry.auth, ctx) : {};
  if (!auth.username && entry.username) auth.username = entry.username;
  if (!auth.password && entry.password) auth.password = entry.password;
  if (entry.identitytoken) auth.identityToken = entry.identitytoken;
  if (auth.identityToken || (auth.username && auth.password)) return auth;
  return undefined;
}

function decodeAuth(encoded: string, ctx: Context): RegistryAuth {
  const decoded = Buffer.from(encoded, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0) throw new Error(`Docker config ${ctx.file}: the "auth" for ${ctx.host} is not base64 of user:password`);
  const password = decoded.slice(colon + 1);
  if (password) ctx.onSecret(password);
  return { username: decoded.slice(0, colon), password };
}

function helperAddress(host: string): string {
  return normaliseServerAddress(host) === 'index.docker.io' ? DOCKER_HUB : host;
}

async function runHelper(name: string, ctx: Context): Promise<RegistryAuth | undefined> {
  const program = `docker-credential-${name}`;
  const { stdout, stderr, failure } = await execHelper(program, helperAddress(ctx.host), ctx.env);
  if (failure) {
    if (/credentials not found/i.test(`${stdout} ${stderr}`)) return undefined;
    throw helperError(program, ctx, failure, stdout || stderr);
  }
  return parseHelperOutput(stdout, program, ctx);
}

function helperError(program: string, ctx: Context, failure: ExecFileException, output: string): Error {
  if (failure.code === 'ENOENT') {
    return new Error(`Docker credential helper ${program} (configured in ${ctx.file} for ${ctx.host}) was not found on PATH`);
  }
  if (failure.killed) {
    return new Error(`Docker credential helper ${program} did not answer for ${ctx.host} within ${HELPER_TIMEOUT_MS / 1000}s`);
  }
  const said = output.trim().replace(/\s+/g, ' ').slice(0, 200);
  return new Error(`Docker credential helper ${program} failed for ${ctx.host}${said ? `: ${said}` : ''}`);
}

interface HelperRun {
  stdout: string;
  stderr: string;
  failure?: ExecFileException;
}

function execHelper(program: string, input: string, env: NodeJS.ProcessEnv): Promise<HelperRun> {
  return new Promise((resolve) => {
    const child = execFile(program, ['get'], { env, timeout: HELPER_TIMEOUT_MS, encoding: 'utf8' }, (err, stdout, stderr) => {
      resolve({ stdout, stderr, failure: err ?? undefined });
    });
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(input);
  });
}

function parseHelperOutput(stdout: string, program: string, ctx: Context): RegistryAuth | undefined {
  let parsed: { Username?: unknown; Secret?: unknown };
  try {
    parsed = JSON.parse(stdout) as typeof parsed;
  } catch {
    throw new Error(`Docker credential helper ${program} printed something other than JSON for ${ctx.host}`);
  }
  const secret = typeof parsed.Secret === 'string' ? parsed.Secret : '';
  const username = typeof parsed.Username === 'string' ? parsed.Username : '';
  if (!secret) return undefined;
  ctx.onSecret(secret);
  return username === '<token>' ? { identityToken: secret } : { username, password: secret };
}
