import { EngineError } from './errors.js';

/**
 * Reads an engine JSON-lines progress stream (`POST /images/load`, `POST /images/create?fromSrc=-`)
 * whole and returns its events (one parsed JSON object a line). Failures arrive inside a 200
 * response, as an event with `error`/`errorDetail`: throws EngineError "`what`: <error>". A line
 * that is not JSON rejects with its SyntaxError; a stream that fails rejects with its error.
 *
 * Not docker-modem's followProgress (5.0.7), which differs on all three points pinned by
 * test/unit/engine-progress.test.ts: it passes an event with `error` on as a success
 * (`onFinished(null, output)`), it parses inside a 'data' listener, so one malformed line of an
 * HTTP response is an uncaught exception that kills the process mid-restore, and it drops a last
 * line without a newline.
 */
export async function readProgress(stream: NodeJS.ReadableStream, what: string): Promise<Array<Record<string, unknown>>> {
  const events: Array<Record<string, unknown>> = [];
  let buffer = '';
  for await (const chunk of stream as AsyncIterable<Buffer | string>) {
    buffer += chunk.toString();
    let nl: number;
    while ((nl = buffer.indexOf('\n')) !== -1) {
      const line = buffer.slice(0, nl).trim();
      buffer = buffer.slice(nl + 1);
      if (line) events.push(JSON.parse(line) as Record<string, unknown>);
    }
  }
  if (buffer.trim()) events.push(JSON.parse(buffer) as Record<string, unknown>);
  const failed = events.find((e) => e.error || e.errorDetail);
  if (failed) {
    const detail = failed.errorDetail as { message?: string } | undefined;
    throw new EngineError(`${what}: ${String(failed.error ?? detail?.message)}`);
  }
  return events;
}
