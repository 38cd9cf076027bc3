import { describe, expect, it } from 'vitest';
import { CancelledError, cancellable } from '../../src/core/cancel.js';
import { SET_SCOPE } from '../../src/destinations/types.js';
import { MemoryDestination } from '../support/memory-destination.js';

describe('a cancellable destination', () => {
  it('passes calls through until its signal aborts, then refuses them with the reason', async () => {
    const inner = new MemoryDestination();
    const controller = new AbortController();
    const dest = cancellable(inner, controller.signal);
    expect(dest.label).toBe('memory:');
    expect(await dest.hasBlob(SET_SCOPE, 'sha256:00')).toBe(false);
    controller.abort(new CancelledError('cancelled (Received SIGTERM)'));
    await expect(dest.hasBlob(SET_SCOPE, 'sha256:00')).rejects.toThrow('cancelled (Received SIGTERM)');
    await expect(dest.listSets()).rejects.toBeInstanceOf(CancelledError);
  });

  it('cuts a blob upload in progress, and still discards', async () => {
    let discarded = false;
    const inner = Object.assign(new MemoryDestination(), { discard: async () => void (discarded = true) });
    const controller = new AbortController();
    const dest = cancellable(inner, controller.signal);
    const writer = await dest.writeBlob(SET_SCOPE);
    // In a backup the stream is in a pipeline, which takes its error.
    writer.stream.on('error', () => undefined);
    writer.stream.write(Buffer.from('part'));
    const closed = new Promise<Error | null | undefined>((resolve) => writer.stream.once('close', () => resolve(writer.stream.errored)));
    controller.abort(new CancelledError('cancelled'));
    expect(await closed).toBeInstanceOf(CancelledError);
    await expect(writer.commit('sha256:00', 4)).rejects.toBeInstanceOf(CancelledError);
    expect(inner.writes).toBe(0);
    await dest.discard?.();
    expect(discarded).toBe(true);
  });
});
