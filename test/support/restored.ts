import { expect } from 'vitest';
import { restore } from '../../src/commands.js';
import { parseRestoreInputs } from '../../src/core/inputs.js';
import { docker, quietLog, treeDigest, type Resources } from './fixtures.js';

/**
 * Which of `markers` (file names under /data) a snapshot holds: its container is restored from
 * `dir:store` beside the original, under new names (container and named volume), not started.
 */
export async function markersInSnapshot(
  res: Resources,
  store: string,
  tag: string,
  c: { name: string; volume: string; suffix: string },
  markers: string[],
): Promise<Record<string, boolean>> {
  const copy = res.name(`${c.suffix}-copy-${tag}`);
  const rename = `${c.name}=${copy},${c.volume}=${res.volume(`${c.suffix}-copy-${tag}-data`)}`;
  const inputs: Record<string, string> = { source: `dir:${store}`, snapshot: tag, containers: c.name, rename, start: 'never' };
  const r = await restore(
    parseRestoreInputs((n) => inputs[n] ?? ''),
    { log: quietLog, env: { ...process.env, DOCKER_CONFIG: '/nonexistent' } },
  );
  expect(r.failed, JSON.stringify(r.containers)).toBe(0);
  res.image((await docker.getContainer(copy).inspect()).Config.Image);
  const out: Record<string, boolean> = {};
  for (const m of markers)
    out[m] = await treeDigest(copy, `/data/${m}`).then(
      () => true,
      () => false,
    );
  return out;
}
