/**
 * Architecture rules checked by `npm run check:deps` (part of `npm test`):
 * no import cycles, and the engine reached only through src/engine/.
 */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'Modules form layers; a cycle hides which one owns what.',
      severity: 'error',
      from: { path: '^src' },
      to: { circular: true },
    },
    {
      name: 'one-engine-module',
      comment: 'src/engine/ is the only module that talks to the Engine API (dockerode).',
      severity: 'error',
      from: { path: '^src', pathNot: '^src/engine/' },
      to: { path: 'node_modules/(dockerode|docker-modem)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
};
