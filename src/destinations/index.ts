import type { ArtifactRun, Credentials, DestinationSpec } from '../core/destination-input.js';
import type { Vocabulary } from '../core/words.js';
import type { Keyring } from '../crypto/keyring.js';
import { RegistryClient } from '../registry/client.js';
import { resolveCredentials } from '../registry/credentials.js';
import { ArtifactDestination, runContext } from './artifact/index.js';
import { loadArtifactClient } from './artifact/sdk.js';
import { DirDestination } from './dir/index.js';
import { RegistryDestination } from './registry.js';
import type { Destination } from './types.js';

export interface OpenOptions {
  credentials: Credentials;
  warn?: (message: string) => void;
  /** Progress worth a line (a registry retried). */
  info?: (message: string) => void;
  /** The caller's words for its inputs, for messages (the action's when absent). */
  words?: Vocabulary;
  onSecret?: (secret: string) => void;
  env?: NodeJS.ProcessEnv;
  /** The run's keys (encryption at rest); none: nothing is encrypted, and an encrypted set is refused. */
  keyring?: Keyring;
  /** artifact: only. */
  retentionDays?: number;
  artifactRun?: ArtifactRun;
}

export async function openDestination(spec: DestinationSpec, opts: OpenOptions): Promise<Destination> {
  if (spec.kind === 'dir') return new DirDestination(spec.raw, spec.path, opts.warn, opts.keyring);
  if (spec.kind === 'artifact') {
    if (opts.artifactRun) opts.onSecret?.(opts.artifactRun.token);
    const DefaultArtifactClient = await loadArtifactClient();
    return new ArtifactDestination(
      spec.raw,
      spec.name,
      new DefaultArtifactClient(),
      runContext(opts.env ?? process.env),
      opts.retentionDays,
      opts.artifactRun,
      opts.warn,
      opts.words,
      opts.keyring,
    );
  }
  const auth = await resolveCredentials(spec.host, { ...opts.credentials, env: opts.env, onSecret: opts.onSecret });
  const onRetry = (m: string) => (opts.info ?? opts.warn)?.(m);
  const client = new RegistryClient({
    host: spec.host,
    auth,
    scheme: spec.insecure ? 'http' : undefined,
    credentialsHint: opts.words?.credentials,
    insecureHint: opts.words?.name('registry-insecure'),
    onRetry,
  });
  return new RegistryDestination(spec.raw, spec.prefix, client, opts.warn, opts.keyring);
}

export type { Destination } from './types.js';
