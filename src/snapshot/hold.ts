/** How a container is held still for its snapshot, and which hooks run around it (inputs, over-ridden by labels). */
import type { BackupOptions } from '../core/options.js';
import type { ContainerInspect } from '../engine/containers.js';

/** Labels that give a container its own pre- and post-command (over the inputs). */
export const PRE_LABEL = 'container-snapshot.pre';
export const POST_LABEL = 'container-snapshot.post';

/** A container's pre- and post-command (shell command lines run inside it); absent: none. */
export interface Hooks {
  pre?: string;
  post?: string;
}

/** The pre- and post-command for a container: its labels' (blank: none), else the inputs'. */
export function hooksFor(opts: Pick<BackupOptions, 'preCommand' | 'postCommand'>, labels: Record<string, string>): Hooks {
  const pick = (label: string | undefined, input: string | undefined) => (label !== undefined ? label.trim() || undefined : input);
  return { pre: pick(labels[PRE_LABEL], opts.preCommand), post: pick(labels[POST_LABEL], opts.postCommand) };
}

/** The label container-snapshot.stop (true or false) overrides the stop input for its container. */
export const STOP_LABEL = 'container-snapshot.stop';

/** How a running container is held still for its snapshot. */
export type Hold = 'pause' | 'stop' | 'none';

/** Seconds the engine waits for a stopped container when neither it nor the input says (Engine API `t`). */
export const ENGINE_STOP_TIMEOUT_S = 10;
/** Beyond its stop timeout, how long a stop may take before an undo stops waiting for it. */
export const STOP_MARGIN_MS = 30_000;

/** Whether a container is to be stopped (not paused): its STOP_LABEL, else the stop input. */
export function stopAsked(opts: Pick<BackupOptions, 'stop'>, labels: Record<string, string>): boolean {
  const label = labels[STOP_LABEL]?.trim().toLowerCase();
  if (label === 'true') return true;
  if (label === 'false') return false;
  return opts.stop;
}

/**
 * How a container is held still for its snapshot, and why, when that is not what was asked. Only
 * a running container is paused or stopped. A restarting one (a restart policy between two runs)
 * is taken as it is: its layer and volumes are at rest, and the engine can pause neither. One
 * started with --rm (HostConfig.AutoRemove) is never stopped: the engine would remove it, and its
 * anonymous volumes, as it stops; it is paused instead, or taken running with `pause: false`.
 */
export function holdFor(info: ContainerInspect, opts: Pick<BackupOptions, 'stop' | 'pause'>): { hold: Hold; note?: string; warn?: boolean } {
  if (info.State.Restarting) return { hold: 'none', note: 'restarting: taken as it is, between two runs' };
  if (!info.State.Running || info.State.Paused) return { hold: 'none' };
  const instead: Hold = opts.pause ? 'pause' : 'none';
  if (!stopAsked(opts, info.Config.Labels ?? {})) return { hold: instead };
  if (info.HostConfig.AutoRemove)
    return { hold: instead, note: `auto-remove (--rm): ${instead === 'pause' ? 'paused' : 'taken running'}, not stopped`, warn: true };
  return { hold: 'stop' };
}

/**
 * The one decision of how a container is taken, which the run follows and the dry run reports:
 * whether it is running (State.Running, not Paused, not Restarting: Engine API), how it is held
 * and why not as asked (holdFor), and the hooks run around the hold (hooksFor), which run only
 * when it is running.
 */
export interface HoldPlan {
  running: boolean;
  hold: Hold;
  /** Why it is not held as asked (auto-remove, restarting), when it is not. */
  note?: string;
  /** True when the note is worth a warning (auto-remove: the stop asked for is not done). */
  warn?: boolean;
  /** The pre- and post-command that run around the hold: none when it is not running. */
  hooks: Hooks;
  /** True when it has a pre- or post-command that is not run, because it is not running. */
  hooksSkipped: boolean;
}

/** How `info`'s container is taken with `opts` (and its labels): see HoldPlan. */
export function holdPlan(info: ContainerInspect, opts: Pick<BackupOptions, 'stop' | 'pause' | 'preCommand' | 'postCommand'>): HoldPlan {
  const running = info.State.Running && !info.State.Paused && !info.State.Restarting;
  const hooks = hooksFor(opts, info.Config.Labels ?? {});
  const has = Boolean(hooks.pre || hooks.post);
  return { running, ...holdFor(info, opts), hooks: running ? hooks : {}, hooksSkipped: has && !running };
}

/** The engine state of a container, as outcomes and set records give it: 'paused' when State.Paused, else State.Status (Engine API). */
export function stateOf(info: ContainerInspect): string {
  return info.State.Paused ? 'paused' : info.State.Status;
}
