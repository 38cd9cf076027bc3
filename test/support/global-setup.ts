import type { TestProject } from 'vitest/node';
import { startRegistry, type RunningRegistry } from './registry.js';
import { buildFixtureImage, engineClient, requireEngine } from './engine.js';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { TEST_STATE_DIR } from './state-dir.js';

declare module 'vitest' {
  export interface ProvidedContext {
    runPrefix: string;
    fixtureImage: string;
    registry: { host: string; username: string; password: string; config: string };
    /** The engine this run tests against, for tests whose expectations depend on its version. */
    engine: { version: string; apiVersion: string; host: string };
  }
}

let registry: RunningRegistry | undefined;
let fixtureImage: string | undefined;

export async function setup(project: TestProject): Promise<void> {
  await requireEngine();
  const runPrefix = `csxt-${randomBytes(3).toString('hex')}`;
  fixtureImage = await buildFixtureImage(`${runPrefix}-base:latest`);
  registry = await startRegistry();
  project.provide('runPrefix', runPrefix);
  project.provide('fixtureImage', fixtureImage);
  const v = await engineClient().version();
  project.provide('engine', { version: v.Version, apiVersion: v.ApiVersion, host: process.env.DOCKER_HOST || 'unix:///var/run/docker.sock' });
  project.provide('registry', {
    host: registry.host,
    username: registry.username,
    password: registry.password,
    config: registry.config,
  });
}

export async function teardown(): Promise<void> {
  rmSync(TEST_STATE_DIR, { recursive: true, force: true });
  await registry?.stop();
  if (fixtureImage) {
    await engineClient()
      .getImage(fixtureImage)
      .remove({ force: true })
      .catch(() => undefined);
  }
}
