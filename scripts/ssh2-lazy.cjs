// dist/ssh2/index.cjs (scripts/build.mjs copies this file there): ssh2, loaded on first use.
//
// The entry bundles leave the package `ssh2` out and get this module for every `require('ssh2')`
// in them: docker-modem's lib/ssh.js, which takes `require('ssh2').Client` when it loads (its own
// ssh transport, which src/engine/connection.ts never uses), and src/engine/ssh-agent.ts, which
// makes one Client per SSH connection when the engine is ssh://. The package itself is bundled
// beside this file (dist/ssh2/bundle.cjs) and read only when the first Client is made: loading it
// (its ciphers and the Poly1305 WebAssembly module it compiles at once) cost every run ~18 MB of
// peak RSS here, where only a run on an ssh:// engine needs it.
'use strict';

let ssh2;

/** The ssh2 package (its bundle beside this file), read on the first call. Throws an Error naming the bundle when it cannot be read. */
function load() {
  if (ssh2) return ssh2;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- CommonJS, read on demand: the point of this file.
    ssh2 = require('./bundle.cjs');
  } catch (err) {
    throw new Error(`SSH support could not be loaded from ${__dirname}/bundle.cjs (is dist/ complete?): ${err.message}`, { cause: err });
  }
  return ssh2;
}

/** ssh2's Client: `new Client(...)` makes the package's own (and loads the package the first time). */
function Client(...args) {
  const Real = load().Client;
  return new Real(...args);
}

module.exports = { Client };
