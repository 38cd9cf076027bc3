import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type Fault = 'pass' | 'reset' | number;

export interface FaultyProxy {
  host: string;
  /** Requests answered by a fault instead of the registry. */
  faults: () => number;
  close(): Promise<void>;
}

/**
 * A reverse proxy in front of a real registry that, for each request, forwards it or
 * answers with a fault chosen by `decide` (an HTTP status, or a dropped connection).
 */
export async function startFaultyProxy(target: string, decide: (req: http.IncomingMessage, n: number) => Fault): Promise<FaultyProxy> {
  let n = 0;
  let faults = 0;
  const server = http.createServer((req, res) => {
    const fault = decide(req, n++);
    if (fault !== 'pass') {
      faults++;
      req.resume();
      if (fault === 'reset') req.socket.destroy();
      else res.writeHead(fault, { 'content-type': 'application/json' }).end('{"errors":[{"code":"UNAVAILABLE","message":"injected fault"}]}');
      return;
    }
    const [hostname, port] = target.split(':');
    const upstream = http.request({ hostname, port: Number(port), method: req.method, path: req.url, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    faults: () => faults,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
