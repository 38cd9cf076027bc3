import type { Vocabulary } from '../core/words.js';

/** Names that usually hold secrets (the list, and PASSWD). Matched anywhere in the name, any case. */
const SECRET_NAME = /PASSWORD|PASSWD|TOKEN|SECRET|KEY|CREDENTIAL/i;

/** The names (never the values) of `NAME=value` entries whose name looks secret, sorted, each once. */
export function secretLookingNames(env: string[]): string[] {
  const names = env.map((e) => e.split('=', 1)[0]).filter((n) => SECRET_NAME.test(n));
  return [...new Set(names)].sort();
}

/**
 * The warning for a container whose environment is stored in clear (no encryption key) and names
 * variables that look secret; undefined when none does. Says names only, never values.
 */
export function secretEnvWarning(container: string, env: string[], words: Vocabulary): string | undefined {
  const names = secretLookingNames(env);
  if (names.length === 0) return undefined;
  return (
    `${container}: its environment has ${names.join(', ')}, whose names look secret; the set keeps the environment ` +
    `(and docker commit copies it into the image config) in clear. Expected ${words.name('encryption-recipients')} or ${words.name('encryption-passphrase')} to store it encrypted.`
  );
}
