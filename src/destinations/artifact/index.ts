export { ArtifactDestination } from './destination.js';
export { runContext, type RunContext } from './run-context.js';
