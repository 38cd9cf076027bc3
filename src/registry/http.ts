import http, { type ClientRequest, type IncomingMessage } from 'node:http';
import https from 'node:https';
import { pipeline, type Readable } from 'node:stream';
import { Verifier } from '../oci/digest.js';
import type { RegistryError } from './errors.js';

/** HTTP plumbing of the registry client: requests with an idle watchdog, bounded reads, error bodies, verified blob reads. */

/** Turns a socket or request error into the RegistryError the caller sees. */
export type Failure = (err: NodeJS.ErrnoException) => RegistryError;

/** A request being sent, and its response once it comes. */
export interface Pending {
  req: ClientRequest;
  response: Promise<IncomingMessage>;
}

export const EMPTY = Buffer.alloc(0);
/** Bytes of an error response kept for its message. */
const ERROR_BODY_LIMIT = 64 * 1024;

export function nextLink(header: string | string[] | undefined, base: URL): URL | undefined {
  const match = /<([^>]+)>\s*;\s*rel="?next"?/.exec([header ?? []].flat().join(', '));
  return match ? new URL(match[1], base) : undefined;
}

export function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

export async function readUpTo(res: IncomingMessage, limit: number): Promise<{ body: Buffer; truncated: boolean }> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    chunks.push(chunk);
    size += chunk.length;
    if (size > limit) return { body: Buffer.concat(chunks).subarray(0, limit), truncated: true };
  }
  return { body: Buffer.concat(chunks), truncated: false };
}

export interface ErrorDetail {
  code?: string;
  text: string;
}

export async function errorDetail(res: IncomingMessage): Promise<ErrorDetail> {
  const { body } = await readUpTo(res, ERROR_BODY_LIMIT).catch(() => ({ body: EMPTY }));
  const text = body.toString('utf8');
  try {
    const parsed = JSON.parse(text) as { errors?: { code?: string; message?: string }[]; details?: string };
    const errors = Array.isArray(parsed.errors) ? parsed.errors : [];
    if (errors.length > 0) {
      return { code: errors[0].code, text: errors.map((e) => [e.code, e.message].filter(Boolean).join(': ')).join('; ') };
    }
    if (typeof parsed.details === 'string') return { text: parsed.details };
  } catch {
    // not JSON: fall back to the text or the status line
  }
  const plain = oneLine(text).slice(0, 200);
  return { text: plain && !plain.startsWith('<') ? plain : (res.statusMessage ?? '') };
}

function waitingOnCaller(req: ClientRequest, res: IncomingMessage | undefined): boolean {
  if (res) return res.readableLength > 0 || res.readableFlowing === null;
  return !req.writableEnded && !req.writableNeedDrain;
}

/** Idle timeout that does not fire while the caller, not the peer, is the one holding things up. */
export function watchIdle(req: ClientRequest, current: () => IncomingMessage | undefined, ms: number, fail: Failure): void {
  if (ms <= 0) return;
  req.once('socket', (socket) => {
    const onIdle = () => {
      const res = current();
      if (waitingOnCaller(req, res)) {
        socket.setTimeout(ms);
        return;
      }
      const err = fail(Object.assign(new Error(`no data for ${ms / 1000}s`), { code: 'ETIMEDOUT' }));
      res?.destroy(err);
      req.destroy(err);
    };
    socket.setTimeout(ms);
    socket.on('timeout', onIdle);
    req.once('close', () => socket.removeListener('timeout', onIdle));
  });
}

export function open(method: string, url: URL, headers: Record<string, string>, timeoutMs: number, fail: Failure): Pending {
  const req = (url.protocol === 'https:' ? https : http).request(url, { method, headers });
  let res: IncomingMessage | undefined;
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    req.once('response', (r) => {
      res = r;
      resolve(r);
    });
    req.on('error', (err) => reject(fail(err)));
  });
  watchIdle(req, () => res, timeoutMs, fail);
  return { req, response };
}

/** The body of `res`, failing at its end with `mismatch(found)` when its sha256 is not `digest` (a blob GET, distribution spec "Pulling blobs"). */
export function verified(res: IncomingMessage, digest: string, fail: Failure, mismatch: (found: string) => Error): Readable {
  const check = new Verifier({ digest }, 'blob', mismatch);
  res.once('error', (err) => check.destroy(fail(err)));
  pipeline(res, check, () => undefined);
  return check;
}

export function manifestMediaType(res: IncomingMessage, body: Buffer): string {
  const header = res.headers['content-type']?.split(';')[0].trim();
  if (header && header !== 'application/json' && header !== 'text/plain') return header;
  try {
    const mediaType = (JSON.parse(body.toString('utf8')) as { mediaType?: unknown }).mediaType;
    if (typeof mediaType === 'string') return mediaType;
  } catch {
    // fall through to the header
  }
  return header ?? 'application/octet-stream';
}
