/** The environment variable the CLI reads a registry password from (never a flag value). */
export const PASSWORD_ENV = 'CONTAINER_SNAPSHOT_REGISTRY_PASSWORD';
/** The environment variable the CLI reads a token for another run's artifacts from. */
export const TOKEN_ENV = 'GITHUB_TOKEN';
/** The environment variables the CLI reads keys from (never flag values, which `ps` shows). */
export const ENCRYPTION_PASSPHRASE_ENV = 'CONTAINER_SNAPSHOT_ENCRYPTION_PASSPHRASE';
export const IDENTITY_ENV = 'CONTAINER_SNAPSHOT_DECRYPTION_IDENTITY';
export const DECRYPTION_PASSPHRASE_ENV = 'CONTAINER_SNAPSHOT_DECRYPTION_PASSPHRASE';

/**
 * How the interface in use names its inputs, so that a message says what its reader types:
 * `--replace` on the command line, `replace: true` in a workflow. Chosen once, at parse time,
 * and carried in the parsed options to every layer that explains itself.
 */
export interface Vocabulary {
  /** An input by its name in this interface: `--stop-timeout` or `stop-timeout`. */
  name(input: string): string;
  /** How to turn a boolean input on: `--replace` or `replace: true`. */
  enable(input: string): string;
  /** How to give registry credentials. */
  credentials: string;
  /** How to name the repository of another workflow run. */
  repository: string;
  /** Where the token for another run's artifacts comes from. */
  token: string;
  /** How to give the key of an encrypted set. */
  decryption: string;
  /** How to give a backup's passphrase (the CLI reads it from stdin or its variable, never a flag's value). */
  encryptionPassphrase: string;
}

/** The action's words: its input names, as in action.yml and restore/action.yml. */
export const ACTION_WORDS: Vocabulary = {
  name: (input) => input,
  enable: (input) => `${input}: true`,
  credentials: 'registry-username and registry-password',
  repository: 'repository',
  token: 'github-token',
  decryption: 'decryption-identity or decryption-passphrase',
  encryptionPassphrase: 'encryption-passphrase',
};

/** The CLI's words: its flags, and the environment variables it reads instead of secret flags. */
export const CLI_WORDS: Vocabulary = {
  name: (input) => `--${input}`,
  enable: (input) => `--${input}`,
  credentials: `--registry-username with --registry-password-stdin (or ${PASSWORD_ENV})`,
  repository: '--repository (or GITHUB_REPOSITORY)',
  token: TOKEN_ENV,
  decryption: `--decryption-identity FILE (or ${IDENTITY_ENV}), or --decryption-passphrase-stdin (or ${DECRYPTION_PASSPHRASE_ENV})`,
  encryptionPassphrase: `--encryption-passphrase-stdin (or ${ENCRYPTION_PASSPHRASE_ENV})`,
};
