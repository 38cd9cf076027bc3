import Docker from 'dockerode';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Engine B of `scripts/testbed.sh engine-b`: its tcp address and the client certificates it requires. */
export const ENGINE_B = {
  host: process.env.ENGINE_B_HOST ?? 'tcp://127.0.0.1:23760',
  certPath: process.env.ENGINE_B_CERT_PATH ?? join(process.env.ENGINE_B_STATE ?? '/var/lib/csx-engine-b', 'client'),
};

/** The environment a command needs to reach engine B (with its address given as docker-host). */
export const engineBEnv = { DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: ENGINE_B.certPath };

/** A client of engine B over tcp with TLS, as the tests' own hands on it. */
export function engineBClient(): Docker {
  const url = new URL(ENGINE_B.host.replace(/^tcp:/, 'https:'));
  const file = (n: string) => readFileSync(join(ENGINE_B.certPath, n));
  return new Docker({ host: url.hostname, port: Number(url.port), protocol: 'https', ca: file('ca.pem'), cert: file('cert.pem'), key: file('key.pem') });
}

/** Engine B, answering: tests that need it fail (never skip) with how to start it. */
export async function requireEngineB(): Promise<Docker> {
  try {
    const b = engineBClient();
    await b.ping();
    return b;
  } catch (err) {
    throw new Error(
      `Engine B is not reachable at ${ENGINE_B.host} (TLS, certificates in ${ENGINE_B.certPath}): start it with 'scripts/testbed.sh engine-b' (${(err as Error).message})`,
      { cause: err },
    );
  }
}
