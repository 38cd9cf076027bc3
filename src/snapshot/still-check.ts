/**
 * Whether a container stayed as it was held (or found, when taken as it is) while its writable
 * layer and volumes were read: from its state before and after the read (inspect), and from the
 * engine's events in between (engine/events.ts), which also show a move undone before the last
 * inspect (unpaused and paused again; started, exited and removed).
 */
import type { ContainerInspect } from '../engine/containers.js';
import type { Hold } from './hold.js';

/** The container events watched while it is held or read as it is (Engine API event actions). */
export const WATCHED_ACTIONS = ['pause', 'unpause', 'start', 'restart', 'die', 'stop', 'destroy'] as const;

/**
 * How long a container found removed after its read waits for its `destroy` event (ms): the
 * events before it (a start) may reach the stream after the inspect that found it gone (seen
 * here: ~5 ms on Engine 26.1).
 */
export const DESTROY_WAIT_MS = 2_000;

/** A container's state as inspect gives it (Engine API ContainerState: Running is also true while Restarting). */
export type StateFacts = Pick<ContainerInspect['State'], 'Running' | 'Paused' | 'Restarting' | 'StartedAt'>;

/**
 * Why a container held by this run (`held`: paused or stopped from state `from`) is not as it was
 * left by `now`: started again (another StartedAt, or running after a stop), unpaused, or stopped
 * while paused; undefined when it is still held.
 */
export function movedWhileHeld(held: 'pause' | 'stop', from: StateFacts, now: StateFacts): string | undefined {
  if (now.StartedAt !== from.StartedAt) return 'it was started';
  if (held === 'stop') return now.Running ? 'it was started' : undefined;
  if (now.Paused) return undefined;
  return now.Running ? 'it was unpaused' : 'it was stopped';
}

/**
 * Why a container moved while read, from its events' actions in the engine's order (a watch
 * opened before the hold, or before the first inspect of one taken as it is, and closed after the
 * read): for one taken as it is (`none`), any start, restart or unpause; for one held, any of them
 * after the hold's own event (the first `pause`; the first `die` or `stop`), so that the hold's
 * own events never count. Undefined when none moved it, and when the hold's own event is not
 * among them (a stream subscribed late): the events then tell nothing.
 */
export function movedByEvents(held: Hold, actions: readonly string[]): string | undefined {
  const own = held === 'pause' ? ['pause'] : ['die', 'stop'];
  const from = held === 'none' ? 0 : actions.findIndex((a) => own.includes(a)) + 1;
  if (held !== 'none' && from === 0) return undefined;
  for (const action of actions.slice(from)) {
    if (action === 'unpause') return 'it was unpaused';
    if (action === 'start' || action === 'restart') return 'it was started';
  }
  return undefined;
}
