/**
 * @actions/artifact, loaded on first use. In dist/, it is a bundle of its own
 * (dist/artifact/bundle.js, from sdk-entry.ts; scripts/build.mjs) beside the entry bundles
 * (dist/<entry>/bundle.js), which leave it out: a run without an artifact: destination neither
 * reads nor compiles it (measured: `node dist/cli.js --help` 87 → 72 MB peak RSS, a small backup
 * to dir: 147 → 114 MB). From the sources (tests), the package itself. The SDK reads
 * GITHUB_API_URL when loaded: only artifact users load it, once their environment is set.
 */
import type { DefaultArtifactClient } from '@actions/artifact';

/** Whether this module runs from a bundle of dist/ (each is named bundle.js by scripts/build.mjs). */
const BUNDLED = import.meta.url.endsWith('/bundle.js');

type Sdk = { DefaultArtifactClient: typeof DefaultArtifactClient };

/**
 * The SDK's client class. Rejects with the import's error when its module cannot be loaded: in a
 * bundle, dist/artifact/ missing and no @actions/artifact resolvable from the bundle either (a
 * scratch build, `scripts/build.mjs ENTRY=OUT`, has no library bundle beside it and loads the
 * package from the checkout's node_modules).
 */
export async function loadArtifactClient(): Promise<typeof DefaultArtifactClient> {
  // webpackIgnore: ncc must not follow these imports into the bundle being built.
  const fromPackage = async () => ((await import(/* webpackIgnore: true */ '@actions/artifact')) as Sdk).DefaultArtifactClient;
  if (!BUNDLED) return fromPackage();
  try {
    return ((await import(/* webpackIgnore: true */ new URL(/* webpackIgnore: true */ '../artifact/bundle.js', import.meta.url).href)) as Sdk)
      .DefaultArtifactClient;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw err;
    return fromPackage().catch(() => Promise.reject(err));
  }
}
