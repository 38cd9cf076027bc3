import { defineConfig } from 'vitest/config';
import Docker from 'dockerode';
import { TEST_STATE_DIR } from './test/support/state-dir.js';

/**
 * The run is named after the engine it tests (`DOCKER_HOST`, as dockerode reads it), so that
 * every file's result and every failure says which engine it happened on.
 */
async function engineName(): Promise<string> {
  const v = await new Docker().version().catch(() => undefined);
  return v ? `engine ${v.Version.replace(/\+.*$/, '')}` : `engine at ${process.env.DOCKER_HOST || 'unix:///var/run/docker.sock'}`;
}

// Integration and end-to-end tests share one real engine and one real registry:
// the global setup checks the engine (failing, never skipping, when it is absent),
// starts an authenticated registry and builds the fixture image under a unique run prefix.
export default defineConfig(async () => ({
  test: {
    name: await engineName(),
    include: ['test/itg/**/*.test.ts', 'test/e2e/**/*.test.ts'],
    environment: 'node',
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 180_000,
    hookTimeout: 180_000,
    fileParallelism: false,
    // Journals of interrupted backups go to a directory of this run, not the user's state directory.
    env: { CONTAINER_SNAPSHOT_STATE_DIR: TEST_STATE_DIR },
  },
}));
