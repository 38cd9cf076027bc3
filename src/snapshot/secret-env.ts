import type { Vocabulary } from '../core/words.js';

/** Names that usually hold secrets (the list, and PASSWD). Matched anywhere in the name, any case. */
const SECRET_NAME = /PASSWORD|PASSWD|TOKEN|SECRET|KEY|CREDENTIAL/i;

/** The names (never the values) of `NAME=value` entries whose name looks secret, sorted, each once. */
export function secretLookingNames(env: string[]): string[] {
  const names = env.map((e) => e.split('=', 1)[0]).filter((n) => SECRET_NAME.test(n));
  return [...new Set(names)].sort();
}

/**
 * The warning for a container whose environment is stored in clear and names variables that look
 * secret; undefined when none does. Says names only, never values. `clear`: no encryption key at all;
 * `pullable`: a key, but registry-pullable-image keeps the image config (which `docker commit` fills
 * with the environment) in clear.
 */
export function secretEnvWarning(container: string, env: string[], words: Vocabulary, how: 'clear' | 'pullable' = 'clear'): string | undefined {
  const names = secretLookingNames(env);
  if (names.length === 0) return undefined;
  if (how === 'pullable') {
    return (
      `${container}: its environment has ${names.join(', ')}, whose names look secret; with ${words.enable('registry-pullable-image')} the image config ` +
      `(which docker commit fills with the environment) is stored in clear, in every destination. Expected ${words.name('exclude-env')} to leave them out.`
    );
  }
  return (
    `${container}: its environment has ${names.join(', ')}, whose names look secret; the set keeps the environment ` +
    `(and docker commit copies it into the image config) in clear. Expected ${words.name('encryption-recipients')} or ${words.encryptionPassphrase} to store it encrypted, or ${words.name('exclude-env')} to leave them out.`
  );
}

/** True when `name` (an environment variable's) matches one of `exclude`. */
function excluded(name: string, exclude: RegExp[]): boolean {
  return exclude.some((p) => p.test(name));
}

/** `NAME=value` entries without those whose name `exclude` matches. */
export function withoutEnv(env: string[], exclude: RegExp[]): string[] {
  return env.filter((e) => !excluded(e.split('=', 1)[0], exclude));
}

/** The captured spec without the excluded variables (exclude-env); the spec itself when nothing is excluded. */
export function specWithoutEnv<T extends { config: Record<string, unknown> }>(spec: T, exclude: RegExp[]): T {
  if (exclude.length === 0 || !Array.isArray(spec.config.Env)) return spec;
  return { ...spec, config: { ...spec.config, Env: withoutEnv(spec.config.Env as string[], exclude) } };
}

/**
 * An image config (OCI image-spec `config.Env`, and Docker's legacy `container_config.Env`) without the
 * excluded variables: `docker commit` copies the container's whole environment there. The image ID
 * changes with it (it is the config's digest); the layers do not.
 */
export function imageConfigWithoutEnv(config: Buffer, exclude: RegExp[]): Buffer {
  const doc = JSON.parse(config.toString('utf8')) as Record<string, { Env?: string[] } | undefined>;
  for (const key of ['config', 'container_config']) {
    const section = doc[key];
    if (section && Array.isArray(section.Env)) section.Env = withoutEnv(section.Env, exclude);
  }
  return Buffer.from(JSON.stringify(doc));
}
