// dist/<entry>/buildkit-absent.cjs (scripts/build.mjs writes this file beside each entry bundle):
// what the entry bundles' `require('@grpc/grpc-js')` and `require('@grpc/proto-loader')` get.
//
// dockerode requires both when it loads (its lib/session.js), for the BuildKit sessions of its
// buildImage (`version: '2'`), which container-snapshot never calls. Bundled (with protobufjs and
// their .proto files), they made each entry bundle 874 KiB larger and cost every run ~4.8 MB of
// peak RSS and ~0.08 s of start-up (a CLI backup that fails at once: 73.3 → 68.5 MB, 0.58 →
// 0.48 s, measured here). Any use of either throws.
'use strict';

module.exports = new Proxy(
  {},
  {
    get(_target, key) {
      // What a module loader or an await may ask of any module: nothing here.
      if (typeof key === 'symbol' || key === '__esModule' || key === 'then' || key === 'default') return undefined;
      throw new Error(`BuildKit sessions (gRPC) are not part of container-snapshot: ${String(key)} is not available`);
    },
  },
);
