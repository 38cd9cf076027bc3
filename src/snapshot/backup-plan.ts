/** The dry run of a backup: what each selected container's backup would do, said in the log; nothing changes. */
import type { BackupOptions } from '../core/options.js';
import type { BackupContext } from './backup-context.js';
import { failure, type ContainerOutcome } from './backup-outcome.js';
import { unitsOf } from './groups.js';
import { holdPlan, stateOf, type HoldPlan } from './hold.js';
import type { Candidate } from './select.js';
import { mountsToTake } from './volumes.js';

/**
 * Says, for each selected container, how the run would take it (holdPlan: the same decision the run
 * follows), with which hooks, its volumes and the destinations; returns each as a planned outcome
 * (bytes: its writable layer's size, 0 when the engine does not say). Reads the engine only.
 */
export async function plan(ctx: BackupContext, opts: BackupOptions, selected: Candidate[]): Promise<ContainerOutcome[]> {
  const out: ContainerOutcome[] = [];
  for (const u of unitsOf(selected, opts.groupBy)) {
    if (u.group !== undefined) ctx.log.info(`[dry-run] group ${u.group}: ${u.members.map((c) => c.name).join(', ')} would be held together`);
  }
  for (const c of selected) {
    const info = await ctx.engine.inspectContainer(c.id);
    const mounts = mountsToTake(info, opts);
    const vols = mounts.map((m) => m.name || m.source || m.destination);
    const size = await ctx.engine.writableLayerSize(c.id);
    const how = holdPlan(info, opts);
    ctx.log.info(
      `[dry-run] ${c.name} (${stateOf(info)}, ${holdWords(how)}, image ${info.Config.Image}, writable layer ${size ?? '?'} bytes): ` +
        `volumes [${vols.join(', ')}] → ${opts.destinations.map((d) => d.raw).join(', ')} as ${opts.tag}${hookWords(how)}`,
    );
    out.push({ ...failure(c.name, c.id, stateOf(info), ''), status: 'planned', error: undefined, volumes: vols, bytes: size ?? 0 });
  }
  return out;
}

/** How the container would be held, and why not as asked. */
function holdWords({ running, hold, note }: HoldPlan): string {
  const words = !running ? 'taken as it is' : hold === 'stop' ? 'would be stopped' : hold === 'pause' ? 'would be paused' : 'taken running';
  return note ? `${words}; ${note}` : words;
}

/** The pre- and post-command that would run, or that those it has would not (not running); empty when it has none. */
function hookWords({ hooks, hooksSkipped }: HoldPlan): string {
  if (hooksSkipped) return '; not running, so its pre- and post-command would not run';
  const run = [hooks.pre ? `pre-command: ${hooks.pre}` : '', hooks.post ? `post-command: ${hooks.post}` : ''].filter(Boolean);
  return run.length > 0 ? `; would run ${run.join('; ')}` : '';
}
