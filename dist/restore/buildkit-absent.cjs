// dist/<entry>/buildkit-absent.cjs (scripts/build.mjs writes this file beside each entry bundle):
// what the entry bundles' `require('@grpc/grpc-js')`, `require('@grpc/proto-loader')` and
// `require('protobufjs')` get.
//
// dockerode requires the first two when it loads (its lib/session.js), for the BuildKit sessions
// of its buildImage (`version: '2'`), and protobufjs for its followProgress (BuildKit's status
// messages); container-snapshot calls neither. Bundled (with their .proto files), they made the
// CLI's bundle 3,346 KiB instead of 2,120 and cost every run ~5.9 MB of peak RSS and ~0.15 s of
// start-up (a CLI backup that fails at once: 73.2 → 67.3 MB, measured here). Any use throws.
'use strict';

module.exports = new Proxy(
  {},
  {
    get(_target, key) {
      // What a module loader or an await may ask of any module: nothing here.
      if (typeof key === 'symbol' || key === '__esModule' || key === 'then' || key === 'default') return undefined;
      throw new Error(`BuildKit support (gRPC, protobuf) is not part of container-snapshot: ${String(key)} is not available`);
    },
  },
);
