/**
 * How a container is held still for its snapshot and put back: its pre- and post-command run
 * around the hold, the pause or stop (journalled first, so an interrupted run is undone), and the
 * unpause or start after. What is decided (pause, stop, which hooks) comes from hold.ts.
 */
import type { BackupOptions } from '../core/options.js';
import { errorMessage } from '../core/log.js';
import { ACTION_WORDS } from '../core/words.js';
import type { ContainerInspect } from '../engine/containers.js';
import { NotFoundError } from '../engine/errors.js';
import type { ContainerWatch } from '../engine/events.js';
import type { MemberGate } from './groups.js';
import { type BackupContext, BackupError, phase } from './backup-context.js';
import { ENGINE_STOP_TIMEOUT_S, STOP_MARGIN_MS, type Hold, type Hooks } from './hold.js';
import { DESTROY_WAIT_MS, WATCHED_ACTIONS, movedByEvents, movedWhileHeld, type StateFacts } from './still-check.js';

/** Adds `note` to what `notes` (container ID → its outcome's note) holds for `id`: another reason said earlier is kept. */
export function addNote(notes: Map<string, string>, id: string, note: string): void {
  notes.set(id, [notes.get(id), note].filter(Boolean).join('; '));
}

/** Holds containers still and puts them back, for one backup run: its engine, log, journal and signal, and the options that time the hooks and stops. */
export class Holder {
  constructor(
    private readonly ctx: Pick<BackupContext, 'engine' | 'log' | 'journal' | 'signal'>,
    private readonly opts: Pick<BackupOptions, 'stopTimeout' | 'hookTimeout' | 'words'>,
    /** Why a container was not held as asked, by container ID: a hold that finds it restarting says so here. */
    private readonly notes: Map<string, string>,
  ) {}

  /**
   * Runs `fn` between the pre-command and the post-command; the post-command also runs after a failed
   * pre-command (it undoes it). In a group, each waits for its turn (dependency order, reversed after).
   */
  async withHooks<T>(id: string, name: string, hooks: Hooks, gate: MemberGate | undefined, fn: () => Promise<T>): Promise<T> {
    try {
      await gate?.beforePre();
      if (hooks.pre) await this.hook(id, name, 'pre-command', hooks.pre);
      gate?.afterPre();
      return await fn();
    } catch (err) {
      gate?.fail(err);
      throw err;
    } finally {
      await gate?.beforePost();
      if (hooks.post) await this.hook(id, name, 'post-command', hooks.post).catch((err: unknown) => this.ctx.log.warning(`${name}: ${errorMessage(err)}`));
      gate?.afterPost();
    }
  }

  /**
   * Runs `take` with the container held still as asked: paused, or stopped, each journalled
   * before the change so that an interruption puts it back, and puts it back after. A hold that
   * fails leaves the container as it was (its journal entry cleared) or fails the container; one
   * that fails because the container is not running any more (a crash loop) takes it as it is.
   * Once stopping, a cancelled run waits for the stop to finish, then starts it again.
   * In a group, it is held once every member's pre-command has run, taken once every member is
   * held, and put back once every member is taken. `take` is told how the container is held
   * ('none': as it was, which for a running container means its processes go on). Returns how long
   * it was held, and how.
   */
  async held<T>(
    info: ContainerInspect,
    name: string,
    hold: Hold,
    mounts: number,
    gate: MemberGate | undefined,
    take: (held: Hold) => Promise<T>,
  ): Promise<{ value: T; heldMs: number; held: Hold }> {
    const { engine, log, signal } = this.ctx;
    await gate?.beforeHold();
    // The container's events from before the hold (or the first inspect of one taken as it is) to
    // after the read: they show what the two inspects cannot (unpaused and paused again; started and removed).
    const watching = hold !== 'none' || isStill(info.State);
    let watch = watching ? engine.watchContainer(info.Id, WATCHED_ACTIONS) : undefined;
    try {
      // The state it is held from, just before the hold: a start between the plan and the hold is not one during the read.
      const from = hold === 'none' ? info.State : await this.stateNow(info, watch);
      const held = await this.holdStill(info, from.StartedAt, name, hold);
      // Taken as it is after a refused hold: what happened before its read (its group's other members
      // held meanwhile) is no move during the read, as for one planned so (checked from its first inspect).
      if (held === 'none' && hold !== 'none') watch?.close();
      const since = performance.now();
      let heldMs: number;
      let value: T;
      let taken = false;
      try {
        await gate?.afterHold();
        if (held === 'none' && hold !== 'none') watch = engine.watchContainer(info.Id, WATCHED_ACTIONS);
        signal?.throwIfAborted();
        // Taken as it is while still (exited, created, restarting, paused; or found so by a hold that
        // failed): nothing holds it, so it must be still now as the plan saw it (`info`), and stay so while read.
        const planned = held === 'none' && hold === 'none' && isStill(info.State);
        if (held === 'none') await watch?.ready;
        const still = planned || (held === 'none' && hold !== 'none') ? await engine.inspectContainer(info.Id, signal) : undefined;
        if (still) {
          const moved = (planned ? startedDuring(info.State, still.State) : undefined) ?? (isStill(still.State) ? undefined : 'it was started');
          if (moved) throw tornError(moved, info);
        }
        // A read that fails (its container removed under it, say) is checked as one that ends: a move is its cause.
        let failed: { err: unknown } | undefined;
        try {
          value = await take(held);
        } catch (err) {
          if (signal?.aborted) throw err;
          failed = { err };
        }
        // Still as it was found or left (one inspect, while still held), and nothing moved it meanwhile (its events).
        // Removed meanwhile: nothing of it is left to mix with what was read, unless its events say it ran.
        let gone = false;
        const now =
          still || held !== 'none'
            ? await engine.inspectContainer(info.Id, signal).catch((err: unknown) => {
                gone = err instanceof NotFoundError;
                // After a failed read, what the inspect cannot tell is left to the events.
                if (gone || failed) return undefined;
                throw err;
              })
            : undefined;
        // Found removed: its events up to its removal are all in once the removal's own is.
        if (gone && watch?.intact) await watch.seen('destroy', DESTROY_WAIT_MS);
        const moved =
          (now && still ? (startedDuring(still.State, now.State) ?? (isStill(now.State) ? undefined : 'it was started')) : undefined) ??
          (now && held !== 'none' ? movedWhileHeld(held, from, now.State) : undefined) ??
          (watch?.intact ? movedByEvents(held, watch.actions) : undefined);
        if (moved) {
          if (failed) log.info(`${name}: its read failed too (${errorMessage(failed.err)})`);
          throw tornError(moved, info);
        }
        if (failed) throw failed.err;
        await gate?.afterTake();
        taken = true;
      } finally {
        await this.putBack(info.Id, held);
        gate?.released();
        heldMs = Math.round(performance.now() - since);
        const what = (when: string) => (taken ? ` (writable layer and ${mounts} mount(s) taken ${when})` : '');
        if (held === 'pause') log.info(`${name}: paused for ${heldMs} ms${what('at one point in time')}`);
        if (held === 'stop') log.info(`${name}: started again after ${heldMs} ms stopped${what('while stopped')}`);
      }
      return { value: value!, heldMs, held };
    } finally {
      // Closed once put back (its events are read by then), whatever happened: an open stream keeps the process alive.
      watch?.close();
    }
  }

  /**
   * The container's state just before its hold, once its watch streams (or cannot): the plan's
   * (`info`) when it cannot be read now (the hold then fails as it would have).
   */
  private async stateNow(info: ContainerInspect, watch: ContainerWatch | undefined): Promise<StateFacts> {
    await watch?.ready;
    const now = await this.ctx.engine.inspectContainer(info.Id).catch(() => undefined);
    return now?.State ?? info.State;
  }

  /**
   * Pauses or stops the container (the state changes take no abort signal: each runs to its end,
   * then is put back); `startedAt`: its StartedAt just before, journalled for a stop.
   */
  private async holdStill(info: ContainerInspect, startedAt: string, name: string, hold: Hold): Promise<Hold> {
    const { engine, log, journal } = this.ctx;
    const id = info.Id;
    try {
      if (hold === 'pause') {
        journal?.paused(id);
        await engine.pause(id);
      }
      if (hold === 'stop') {
        const timeoutS = this.opts.stopTimeout ?? (info.Config as { StopTimeout?: number }).StopTimeout ?? ENGINE_STOP_TIMEOUT_S;
        journal?.stopped({ id, startedAt, until: Date.now() + timeoutS * 1000 + STOP_MARGIN_MS });
        log.info(`${name}: stopping (up to ${timeoutS} s before the engine kills it)`);
        if (!(await engine.stop(id, this.opts.stopTimeout))) {
          // Stopped by another client (or exited) since the plan saw it running: not this run's to start again.
          return this.leftAsFound(
            id,
            'stop',
            `${name}: was not running any more when this backup stopped it (stopped by another client, or exited): taken as it is, and left stopped`,
            'not running at its stop (stopped by another client, or exited): taken as it is, left stopped',
          );
        }
        log.info(`${name}: stopped for its snapshot`);
      }
      return hold;
    } catch (err) {
      if (hold === 'pause' && /already paused/i.test(errorMessage(err))) {
        // Paused by another client since the plan saw it running (the engine's 409): not this run's to unpause.
        return this.leftAsFound(
          id,
          'pause',
          `${name}: was paused by another client before this backup paused it: taken as it is, and left paused`,
          'paused by another client before its hold: taken as it is, left paused',
        );
      }
      if (await this.asItWas(info, hold)) {
        const verb = hold === 'pause' ? 'paused' : 'stopped';
        log.info(`${name}: could not be ${verb} (${errorMessage(err)}); it is restarting or not running any more, so it is taken as it is`);
        addNote(this.notes, id, `restarting: not ${verb}, taken as it is, between two runs`);
        return 'none';
      }
      throw new BackupError(`${hold}: ${errorMessage(err)}`, { cause: err });
    }
  }

  /**
   * A container found already paused or stopped by its hold (another client's doing): its journal
   * entry for `hold` cleared (the put-back would undo what this run did not do), `line` logged,
   * `note` kept for its outcome. Returns 'none': it is taken as it is.
   */
  private leftAsFound(id: string, hold: 'pause' | 'stop', line: string, note: string): Hold {
    if (hold === 'pause') this.ctx.journal?.unpaused(id);
    else this.ctx.journal?.restarted(id);
    this.ctx.log.info(line);
    addNote(this.notes, id, note);
    return 'none';
  }

  /**
   * After a failed pause or stop, makes sure the container is as it was: its journal entry is
   * cleared when it verifiably is (not paused; still running; gone), else it is put back. True
   * when it is now between two runs of a crash loop (restarting, or exited after a pause), to be
   * taken as it is.
   */
  private async asItWas(info: ContainerInspect, hold: Hold): Promise<boolean> {
    const { engine, journal } = this.ctx;
    const id = info.Id;
    const now = await engine.inspectContainer(id).catch((err: unknown) => {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    });
    if (hold === 'pause') {
      if (now?.State.Paused) await this.putBack(id, 'pause');
      else journal?.unpaused(id);
      return Boolean(now && !now.State.Paused && (now.State.Restarting || !now.State.Running));
    }
    if (now && !now.State.Running) await this.putBack(id, 'stop');
    else journal?.restarted(id);
    return Boolean(now?.State.Restarting);
  }

  /**
   * Unpauses or starts the container again, then clears its journal entry. One another client
   * unpaused or started meanwhile is left as it is (an unpause refused, then an inspect that finds
   * it not paused; a start the engine answers 304).
   */
  private async putBack(id: string, held: Hold): Promise<void> {
    const { engine, journal } = this.ctx;
    if (held === 'pause') {
      await phase('unpause', () =>
        engine.unpause(id).catch(async (err: unknown) => {
          // Unpaused by another client meanwhile (Engine 20.10 answers 500, later ones 409): nothing is left to put back.
          const now = await engine.inspectContainer(id).catch(() => undefined);
          if (!now || now.State.Paused) throw err;
        }),
      );
      journal?.unpaused(id);
    }
    if (held === 'stop') {
      await phase('start again', () => engine.start(id));
      journal?.restarted(id);
    }
  }

  /** Runs a hook inside the container; fails with the container, the phase and the exit code. */
  private async hook(id: string, name: string, phase: 'pre-command' | 'post-command', command: string): Promise<void> {
    const { engine, log } = this.ctx;
    const timeoutMs = this.opts.hookTimeout * 1000;
    log.info(`${name}: ${phase}: ${command}`);
    const started = performance.now();
    // A post-command undoes what the pre-command did: it runs even in a cancelled run.
    const signal = phase === 'pre-command' ? this.ctx.signal : undefined;
    const result = await engine.exec(id, command, { timeoutMs, signal, onLine: (line) => log.info(`${name} ${phase}> ${line}`) });
    const ms = Math.round(performance.now() - started);
    if (result.timedOut)
      throw new BackupError(
        `${phase} did not finish within ${(this.opts.words ?? ACTION_WORDS).name('hook-timeout')} ${this.opts.hookTimeout} s (it may still run in the container): ${command}`,
      );
    if (result.exitCode !== 0) throw new BackupError(`${phase} exited with ${result.exitCode ?? 'an unknown status'} after ${ms} ms: ${command}`);
    log.info(`${name}: ${phase} done in ${ms} ms`);
  }
}

/** Whether a container is still with nothing holding it: not running, restarting (between two runs), or paused. */
export function isStill(state: StateFacts): boolean {
  return !state.Running || !!state.Restarting || !!state.Paused;
}

/**
 * Why a container still at `before` (isStill) may have changed by `now`: it was started (another
 * StartedAt: a start, a restart of its policy) or unpaused and runs; undefined when it stayed still.
 */
export function startedDuring(before: StateFacts, now: StateFacts): string | undefined {
  if (now.StartedAt !== before.StartedAt) return 'it was started';
  if (before.Paused && !now.Paused && now.Running) return 'it was unpaused';
  return undefined;
}

/** The error of a container that moved while taken as it is (`moved`: startedDuring's reason), with advice for a restart policy when it has one. */
function tornError(moved: string, info: ContainerInspect): BackupError {
  const policy = (info.HostConfig as { RestartPolicy?: { Name?: string } } | undefined)?.RestartPolicy?.Name;
  const advice =
    policy && policy !== 'no' && moved === 'it was started'
      ? ` (its restart policy, ${policy}, runs it again after each exit: backed up while it runs, it is paused for the read)`
      : '';
  return new BackupError(
    `${moved} during its backup, so its writable layer and volumes would mix two points in time: nothing of it is stored; back it up again${advice}`,
  );
}
