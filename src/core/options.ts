/**
 * The typed option objects a backup and a restore run with, parsed once from the action's inputs or
 * the CLI's flags (inputs.ts, through one InputReader). The parsing of their parts lives beside
 * their types: selection-input.ts, destination-input.ts, backup-input.ts, restore-input.ts.
 */
import type { Decryption, Encryption } from '../crypto/keyring.js';
import type { RetentionPolicy } from '../snapshot/retention.js';
import type { Vocabulary } from './words.js';
import type { EngineAddress } from './engine-address.js';
import type { PortMapping } from './port-map.js';
import type { ArtifactRun, Credentials, DestinationSpec } from './destination-input.js';
import type { GroupBy, Selection } from './selection-input.js';

/** Everything a backup (or prune-only run) is told, checked before anything is changed (parseBackupInputs). */
export interface BackupOptions {
  selection: Selection;
  destinations: DestinationSpec[];
  tag: string;
  pause: boolean;
  /** Stop each running container for its snapshot (else the label container-snapshot.stop decides). */
  stop: boolean;
  /** Seconds to wait for a stop before the engine kills; undefined: the container's own StopTimeout. */
  stopTimeout?: number;
  /** Run inside each running container before its snapshot (sh -c); a failure fails that container. */
  preCommand?: string;
  /** Run inside each running container after its snapshot, also after a failed pre-command. */
  postCommand?: string;
  /** Seconds a pre- or post-command may take. */
  hookTimeout: number;
  includeVolumes: boolean;
  includeBindMounts: boolean;
  onError: 'continue' | 'abort';
  dryRun: boolean;
  compression: 'auto' | 'zstd' | 'gzip';
  /** Days an artifact destination keeps the set; undefined: the repository's setting. */
  retentionDays?: number;
  /** Applied to each dir: and registry: destination after the set is written there (retention.ts); undefined: keep every set. */
  keep?: RetentionPolicy;
  /** Apply `keep` to the destinations and back up nothing (the action's prune-only). */
  pruneOnly: boolean;
  credentials: Credentials;
  /** Environment variables left out of the captured configuration and the committed image config (exclude-env). */
  excludeEnv: RegExp[];
  /** Blobs and set documents stored encrypted (age) to these keys; undefined: stored in clear. */
  encryption?: Encryption;
  /** Milliseconds a backup waits for another backup's lock on a container (CONTAINER_SNAPSHOT_LOCK_TIMEOUT). */
  lockTimeoutMs: number;
  /** Seconds a volume's file must be unchanged before a backup to be read once the container is back, and a large one for the next backup to leave it unread; a file of the writable layer, for the next backup to compare it by its stat (layer-index.ts LayerEntry.racy) (CONTAINER_SNAPSHOT_SETTLE_SECONDS); absent: the kernel's writeback timing (file-index.ts racyMarginNs). */
  settleSeconds?: number;
  /** The engine to back up from (docker-host, else DOCKER_HOST); absent: the client's default (DOCKER_HOST as dockerode reads it, else the local socket). */
  engine?: EngineAddress;
  /** How many containers (or consistency groups, each as one) are backed up at once. */
  parallelism: number;
  /** Which containers are held together, as one consistency group (group-by). */
  groupBy: GroupBy;
  /** Delta layers on a full writable layer before the whole layer is taken again; 0: always the whole layer. Absent: 8. */
  layerCompaction?: number;
  /** The words of the interface the options came from, for messages; the action's when absent. */
  words?: Vocabulary;
}

/** When a restored container is started: auto (when it was running, paused or restarting at backup; target-check.ts willStart), always, or never. */
export type StartPolicy = 'auto' | 'always' | 'never';

/** Everything a restore is told, checked before anything is changed (parseRestoreInputs). */
export interface RestoreOptions {
  source: DestinationSpec;
  snapshot: string;
  containers: string[];
  rename: Map<string, string>;
  replace: boolean;
  start: StartPolicy;
  includeVolumes: boolean;
  /** Absolute container paths: restore only these, from volumes, into the existing containers (empty: a whole restore). */
  paths: string[];
  credentials: Credentials;
  /** The keys an encrypted set is read with; undefined: only a clear set can be restored. */
  decryption?: Decryption;
  /** Set when the source is artifact:NAME of another workflow run. */
  artifactRun?: ArtifactRun;
  /** The engine to restore onto (docker-host, else DOCKER_HOST); absent: the client's default, as for BackupOptions. */
  engine?: EngineAddress;
  /** Published host ports to change on the way (port-map); none when absent. */
  portMap?: PortMapping[];
  /** The words of the interface the options came from, for messages; the action's when absent. */
  words?: Vocabulary;
}
