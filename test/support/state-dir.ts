import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Journals and locks of the backups a test run makes: a directory of that run, removed at its end. */
export const TEST_STATE_DIR = join(tmpdir(), `csx-test-state-${process.pid}`);
