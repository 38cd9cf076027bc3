import pkg from '../package.json' with { type: 'json' };

/**
 * The tool's name and version, read once from package.json (the bundles inline it). Written into
 * every set document (`tool`), printed by `--version` and in the job summary.
 */
export const TOOL: { readonly name: string; readonly version: string } = { name: 'container-snapshot', version: pkg.version };

/** The User-Agent sent to registries, `container-snapshot/<version>`. */
export const USER_AGENT = `${TOOL.name}/${TOOL.version}`;
