import { defineConfig } from 'vitest/config';
import { TEST_STATE_DIR } from './test/support/state-dir.js';

// Integration and end-to-end tests share one real engine and one real registry:
// the global setup checks the engine (failing, never skipping, when it is absent),
// starts an authenticated registry and builds the fixture image under a unique run prefix.
export default defineConfig({
  test: {
    include: ['test/itg/**/*.test.ts', 'test/e2e/**/*.test.ts'],
    environment: 'node',
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 180_000,
    hookTimeout: 180_000,
    fileParallelism: false,
    // Journals of interrupted backups go to a directory of this run, not the user's state directory.
    env: { CONTAINER_SNAPSHOT_STATE_DIR: TEST_STATE_DIR },
  },
});
