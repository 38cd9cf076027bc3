import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** Forward, drop the connection, answer an HTTP status, or forward and stall after so many bytes of the body (once per proxy). */
export type Fault = 'pass' | 'reset' | number | { stallAfter: number };

export interface FaultyProxy {
  host: string;
  /** Requests answered by a fault instead of the registry. */
  faults: () => number;
  /** Resolves when a request has stalled (its body no longer read, mid-upload). */
  stalled: Promise<void>;
  /** Ends the stall: the rest of the body goes on (`pass`), or the connection is dropped (`reset`). */
  release(how: 'pass' | 'reset'): void;
  close(): Promise<void>;
}

/**
 * A reverse proxy in front of a real registry that, for each request, forwards it or
 * answers with a fault chosen by `decide` (an HTTP status, or a dropped connection).
 */
export async function startFaultyProxy(target: string, decide: (req: http.IncomingMessage, n: number) => Fault): Promise<FaultyProxy> {
  let n = 0;
  let faults = 0;
  let armed = true;
  let onStall = () => undefined as void;
  let onRelease: (how: 'pass' | 'reset') => void = () => undefined;
  const stalled = new Promise<void>((resolve) => (onStall = resolve));
  const released = new Promise<'pass' | 'reset'>((resolve) => (onRelease = resolve));
  const server = http.createServer((req, res) => {
    const fault = decide(req, n++);
    if (typeof fault === 'object') {
      forward(req, res, target, armed ? fault.stallAfter : Infinity, (upstream) => {
        armed = false;
        req.pause();
        onStall();
        void released.then((how) => {
          if (how === 'reset') {
            upstream.destroy();
            req.socket.destroy();
          } else req.resume();
        });
      });
      return;
    }
    if (fault !== 'pass') {
      faults++;
      req.resume();
      if (fault === 'reset') req.socket.destroy();
      else res.writeHead(fault, { 'content-type': 'application/json' }).end('{"errors":[{"code":"UNAVAILABLE","message":"injected fault"}]}');
      return;
    }
    forward(req, res, target, Infinity, () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    faults: () => faults,
    stalled,
    release: (how) => onRelease(how),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Forwards one request to the registry; `stall` is called once, when `stallAfter` bytes of its body have gone through. */
function forward(req: http.IncomingMessage, res: http.ServerResponse, target: string, stallAfter: number, stall: (upstream: http.ClientRequest) => void): void {
  const [hostname, port] = target.split(':');
  const upstream = http.request({ hostname, port: Number(port), method: req.method, path: req.url, headers: req.headers }, (up) => {
    res.writeHead(up.statusCode ?? 502, up.headers);
    up.pipe(res);
  });
  upstream.on('error', () => res.destroy());
  let bytes = 0;
  let stalling = false;
  req.on('data', (chunk: Buffer) => {
    const before = bytes;
    bytes += chunk.length;
    if (!upstream.write(chunk) && !stalling) {
      req.pause();
      upstream.once('drain', () => stalling || req.resume());
    }
    if (before < stallAfter && bytes >= stallAfter) {
      stalling = true;
      stall(upstream);
    }
  });
  req.on('end', () => upstream.end());
}
