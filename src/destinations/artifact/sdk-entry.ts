// The entry of dist/artifact/bundle.js (scripts/build.mjs): @actions/artifact and what it pulls in
// (the Azure storage SDK, protobuf, Octokit: ~5.5 MB of the 9.5 MB a bundle held with it), bundled
// on its own so that runs without an artifact: destination never load it (sdk.ts).
export { DefaultArtifactClient } from '@actions/artifact';
