import { Readable } from 'node:stream';
import Docker from 'dockerode';
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { EngineError } from '../../src/engine/errors.js';

/** An engine whose `load` answers with `lines`, chunked as given (the Engine API's JSON-lines progress stream). */
function engineAnswering(chunks: string[]): Engine {
  // A client that never connects (its modem as dockerode made it), its load answered here.
  const docker = new Docker({ socketPath: '/nonexistent/docker.sock' });
  docker.loadImage = (async () => Readable.from(chunks.map((c) => Buffer.from(c)))) as unknown as Docker['loadImage'];
  return new Engine(docker, 'fake');
}

/*
 * Why src/engine/progress.ts reads progress streams itself rather than through docker-modem's followProgress
 * (5.0.7): it parses inside a 'data' listener, so a malformed line is an uncaught exception, and it
 * drops a last line that has no newline. These pin what a replacement must keep.
 */
describe('engine progress streams (load, import)', () => {
  it('returns what the events say, a line split across chunks and a last line without a newline included', async () => {
    const ids = await engineAnswering([
      '{"stream":"Loaded image: a:1\\n"}\n{"str',
      'eam":"Loaded image ID: sha256:ab\\n"}\n',
      '{"stream":"Loaded image: b:2"}',
    ]).loadImage(Readable.from([]));
    expect(ids).toEqual(['a:1', 'sha256:ab', 'b:2']);
  });

  it('throws an EngineError for an error the engine reports inside the stream', async () => {
    const load = engineAnswering(['{"stream":"x"}\n', '{"errorDetail":{"message":"no space left on device"},"error":"no space left on device"}\n']).loadImage(
      Readable.from([]),
    );
    await expect(load).rejects.toThrow(new EngineError('load image: no space left on device'));
  });

  it('rejects on a line that is not JSON, as a failed call the caller handles (not an uncaught exception)', async () => {
    const load = engineAnswering(['{"stream":"x"}\n', 'not json\n']).loadImage(Readable.from([]));
    await expect(load).rejects.toThrow(SyntaxError);
  });
});
