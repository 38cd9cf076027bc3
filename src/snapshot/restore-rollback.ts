/**
 * Putting back what an uncommitted restore changed (its record is transaction.ts), and removing the
 * helper containers and aside volumes a run left behind.
 */
import { errorMessage, type Logger } from '../core/log.js';
import type { Engine } from '../engine/engine.js';
import { ConflictError, NotFoundError } from '../engine/errors.js';
import { Filler, RUN_LABEL } from './fill.js';
import { emptyFilledPath, putBackHostPath, removeAsidePath, usersOf, type FilledHostPath, type ReplacedHostPath } from './host-path-aside.js';
import { createOptions } from './spec.js';
import type { AsideRecord, CreatedNetwork, Leftovers, ReplacedVolume, TargetPending } from './transaction.js';

async function exists(engine: Engine, id: string): Promise<boolean> {
  return (await engine.inspectContainer(id).catch((err: unknown) => (err instanceof NotFoundError ? undefined : Promise.reject(err)))) !== undefined;
}

/**
 * Puts back what the uncommitted restores of `targets` changed, phase by phase across all of them
 * (two targets may share a volume, which cannot be put back while an old container holds it): the
 * new containers are removed, then replaced volumes get their old content back and created ones are
 * removed, then the old containers are back under their names and in their states (in the order of
 * `targets`, the restore's: a container others refer to first). Each step done
 * is removed from its target's record and `save` is called, so a rollback interrupted in turn runs
 * again from where it stopped. `gone`: the run label of the restore being put back when it is no
 * longer alive (a recovery): what it asked the engine for may be done after this rollback looked
 * (a new container not yet recorded by ID, a helper of that run); found in the way of a volume or
 * network to remove, or still there at the end, it is removed too. Returns what could not be put
 * back.
 */
export async function rollBackTargets(
  engine: Engine,
  run: string,
  helperImage: string | undefined,
  targets: TargetPending[],
  log: Logger,
  save: () => void,
  gone?: string,
): Promise<string[]> {
  const problems: string[] = [];
  // Targets whose new container was not found (none recorded by ID): a run killed outright may have
  // left its create with the engine, which finishes it after this rollback looked (seen in tests
  // under load: the recovery then found the restore's volume "in use" by it).
  // Their `creating` stays set (saved) until the last look, so a rollback interrupted meanwhile looks again.
  const unseen = new Set<TargetPending>();
  // The old containers (set aside, or put back): never taken for a new one, whatever their image.
  const kept = new Set(targets.flatMap((t) => (t.aside ? [t.aside.id] : [])));
  /**
   * What of the rolled-back run appeared since this rollback looked (its new containers, and the
   * helpers of the run `gone` names), removed; true when there was any. Called when a volume or
   * network the restore made is found in use, and once at the end.
   */
  const late = async (): Promise<boolean> => {
    let found = false;
    if (gone) found = (await removeRunHelpers(engine, (r) => r === gone)) > 0;
    for (const e of unseen) if (await removeNewContainer(engine, e, kept)) found = true;
    return found;
  };
  /** `fn`, again once after `late()` removed something when it failed on a volume in use (409). */
  const unlessLate = async (fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (err) {
      if (!(err instanceof ConflictError) || !(await late())) throw err;
      await fn();
    }
  };
  const attempt = async (what: string, fn: () => Promise<void>, done: () => void) => {
    try {
      await fn();
      done();
      save();
    } catch (err) {
      problems.push(`${what}: ${errorMessage(err)}`);
    }
  };
  // The containers of the restores being put back, old and new: the only ones a host path put back may be mounted by.
  const ours = new Set(targets.flatMap((t) => [...(t.aside ? [t.aside.id] : []), ...(t.created ? [t.created] : [])]));
  const ordered = [...targets].reverse();
  for (const e of ordered.filter((t) => t.creating)) {
    await attempt(
      `remove the new container ${e.target}`,
      async () => {
        if (!(await removeNewContainer(engine, e, kept)) && !e.created) unseen.add(e);
      },
      () => (e.creating = unseen.has(e)),
    );
  }
  // Once the new containers are gone: a network still in use is someone else's now.
  for (const e of ordered) {
    for (const n of [...(e.createdNetworks ?? [])]) {
      await attempt(
        `remove network ${n.name}`,
        () => removeCreatedNetwork(engine, n, log, late),
        () => e.createdNetworks?.splice(e.createdNetworks.indexOf(n), 1),
      );
    }
  }
  for (const e of targets) {
    const image = e.aside?.removed?.image ?? e.image ?? helperImage;
    for (const v of [...e.replaced].reverse()) {
      const done = () => {
        e.replaced.splice(e.replaced.indexOf(v), 1);
        save();
      };
      await attempt(
        `put back volume ${v.name}`,
        () => putBackVolume(engine, run, image, v, log, done, unlessLate),
        () => undefined,
      );
    }
    for (const p of [...(e.replacedPaths ?? [])].reverse()) {
      const done = () => {
        e.replacedPaths?.splice(e.replacedPaths.indexOf(p), 1);
        save();
      };
      await attempt(
        `put back host path ${p.path}`,
        () => putBackPath(engine, p, ours, late, done),
        () => undefined,
      );
    }
    for (const p of [...(e.filledPaths ?? [])].reverse()) {
      const done = () => {
        e.filledPaths?.splice(e.filledPaths.indexOf(p), 1);
        save();
      };
      await attempt(
        `${p.existed ? 'empty' : 'remove'} host path ${p.path} again`,
        () => undoFill(engine, p, ours, late, done),
        () => undefined,
      );
    }
    for (const name of [...e.createdVolumes]) {
      await attempt(
        `remove volume ${name}`,
        () => unlessLate(() => engine.removeVolume(name).catch(ignoreMissing)),
        () => e.createdVolumes.splice(e.createdVolumes.indexOf(name), 1),
      );
    }
  }
  // Old containers in restore order: those others take volumes or namespaces from come first.
  for (const e of targets) {
    const a = e.aside;
    // Once the old container holds its name again, no create of the restore can take it: nothing late to look for.
    const forget = () => {
      e.aside = undefined;
      e.creating = false;
      unseen.delete(e);
      save();
    };
    if (a)
      await attempt(
        `put back container ${e.target}`,
        async () => {
          // A new container made late under its name would keep the old one from getting it back.
          if (unseen.has(e)) await removeNewContainer(engine, e, kept);
          await putBackContainer(engine, run, e.target, a, log, save, forget);
          kept.add(a.id);
        },
        forget,
      );
  }
  if (unseen.size > 0 || gone)
    await attempt(
      'remove what the restore made late',
      () => late().then(() => undefined),
      () => {
        for (const e of unseen) e.creating = false;
      },
    );
  return problems;
}

/**
 * Removes the new container of `e` (with its anonymous volumes) when it is there; true when it
 * was. Only the restore's own: its recorded ID, or (none recorded yet) its target name and image;
 * a container made under that name since (by hand) is left alone, and so is any in `kept` (the old
 * containers, which may have been made from the same image: a snapshot restored twice).
 */
async function removeNewContainer(engine: Engine, e: TargetPending, kept: Set<string>): Promise<boolean> {
  const now = await engine.findContainer(e.target);
  const ours = e.created ? now?.Id === e.created : now?.Config.Image === e.image;
  if (!now || !ours || now.Id === e.aside?.id || kept.has(now.Id)) return false;
  await engine.removeContainer(now.Id, { force: true, volumes: true }).catch(ignoreMissing);
  return true;
}

/**
 * Removes a network the restore created, unless a container is on it (one the restore did not
 * create: its own are removed first) or it is another network of that name made since.
 */
async function removeCreatedNetwork(engine: Engine, n: CreatedNetwork, log: Logger, late: () => Promise<boolean>): Promise<void> {
  const now = await engine.inspectNetwork(n.name);
  if (!now || (n.id && now.Id !== n.id)) return;
  let users = await engine.networkUsers(now.Id);
  if (users.length > 0 && (await late())) users = await engine.networkUsers(now.Id);
  if (users.length === 0) {
    try {
      await engine.removeNetwork(now.Id);
      return;
    } catch (err) {
      if (err instanceof NotFoundError) return;
      if (!(err instanceof ConflictError)) throw err;
    }
  }
  const names = users.map((u) => u.name).join(', ') || 'a container';
  log.warning(`network ${n.name} kept: the restore created it, but ${names} joined it since`);
}

/** Puts back one volume; `done` is called once it holds its old content, before the copy aside is removed. */
async function putBackVolume(
  engine: Engine,
  run: string,
  image: string | undefined,
  v: ReplacedVolume,
  log: Logger,
  done: () => void,
  unlessLate: (fn: () => Promise<void>) => Promise<void>,
): Promise<void> {
  if (!v.kept || v.emptied === false) {
    done();
    if (v.aside) await engine.removeVolume(v.aside).catch(ignoreMissing);
    return;
  }
  if (v.aside && !(await engine.inspectVolume(v.aside))) {
    // Nothing can bring it back: said once, not on every later run.
    done();
    throw new Error(`its old content (volume ${v.aside}) is gone`);
  }
  if (await engine.inspectVolume(v.name)) await unlessLate(() => engine.removeVolume(v.name).catch(ignoreMissing));
  await engine.createVolume({ name: v.name, driver: v.driver, driverOpts: v.driverOpts, labels: v.labels });
  if (v.aside) {
    if (!image) throw new Error('no local image to copy its old content with');
    await new Filler(engine, image, run, log).copyVolume(v.aside, v.name);
  }
  done();
  if (v.aside) await engine.removeVolume(v.aside).catch(ignoreMissing);
}

/**
 * The containers outside the restores being put back (`ours`) that mount the host path `path` or
 * a path inside it now (usersOf), asked again once when a late create of the restore may still
 * land (`late`).
 */
async function othersMounting(engine: Engine, path: string, ours: Set<string>, late: () => Promise<boolean>): Promise<string[]> {
  const users = async () => usersOf(path, await engine.hostPathMounts(RUN_LABEL)).filter((u) => !ours.has(u.id));
  let others = await users();
  if (others.length > 0 && (await late())) others = await users();
  return others.map((u) => u.name);
}

/**
 * Puts back one host path (putBackHostPath) unless a container other than `ours` mounts it now (a
 * container of the same run that committed, say): what is there is theirs then, and is left as it
 * is, the old content where it was kept, said once. `done` is called once the record is finished.
 */
async function putBackPath(engine: Engine, p: ReplacedHostPath, ours: Set<string>, late: () => Promise<boolean>, done: () => void): Promise<void> {
  const others = await othersMounting(engine, p.path, ours, late);
  if (others.length > 0) {
    done();
    throw new Error(`${others.join(', ')} mount it now: left as it is; its old content is kept at ${p.aside}`);
  }
  await putBackHostPath(p);
  done();
}

/**
 * Undoes the fill of a host path that was missing or empty (emptyFilledPath), unless a container
 * outside the restores being put back mounts it now (it keeps what it sees: left, said).
 */
async function undoFill(engine: Engine, p: FilledHostPath, ours: Set<string>, late: () => Promise<boolean>, done: () => void): Promise<void> {
  const others = await othersMounting(engine, p.path, ours, late);
  if (others.length > 0) {
    done();
    throw new Error(`${others.join(', ')} mount it: left with the restored content`);
  }
  // One of the restores' own containers running with it: another rollback of this journal put it back and started it.
  const running = usersOf(
    p.path,
    (await engine.hostPathMounts(RUN_LABEL)).filter((m) => m.running),
  );
  if (running.length > 0) {
    done();
    throw new Error(`${running.map((u) => u.name).join(', ')} runs with it now: left as it is`);
  }
  await emptyFilledPath(p);
  done();
}

/** Puts back one old container; `gone` is called when it was removed by hand (nothing to put back). */
async function putBackContainer(engine: Engine, run: string, target: string, a: AsideRecord, log: Logger, save: () => void, gone: () => void): Promise<void> {
  if (!(await exists(engine, a.id))) {
    if (!a.removed) {
      // Removed by hand meanwhile: nothing can bring it back, said once.
      gone();
      throw new Error(`container ${a.id} is gone`);
    }
    a.id = await recreate(engine, run, target, a.removed);
    save();
  } else if ((await engine.inspectContainer(a.id)).Name !== `/${target}`) {
    await engine.renameContainer(a.id, target);
  }
  if (a.wasRunning) await engine.start(a.id);
  if (a.wasPaused && !(await engine.inspectContainer(a.id)).State.Paused) await engine.pause(a.id);
  if (a.removed) {
    await engine.removeImage(a.removed.image, { force: true });
    // Still in use when the container was interrupted before its removal: they are its own then.
    for (const v of a.removed.anonymous) await engine.removeVolume(v.volume).catch(ignoreGoing);
  }
  log.warning(`${target}: the previous container is back${a.wasRunning ? ' and running' : ''}`);
}

function ignoreMissing(err: unknown): void {
  if (!(err instanceof NotFoundError)) throw err;
}

/** Missing, or in use / being removed by someone else: left to whoever has it. */
function ignoreGoing(err: unknown): void {
  if (!(err instanceof NotFoundError || err instanceof ConflictError)) throw err;
}

/** Creates a removed old container again from its committed layer and configuration; its anonymous volumes get their old content back. */
async function recreate(engine: Engine, run: string, name: string, removed: NonNullable<AsideRecord['removed']>): Promise<string> {
  // One a rollback interrupted in turn made and did not record: made again, its old volumes are still there.
  const half = await engine.findContainer(name);
  if (half && half.Config.Image === removed.image) await engine.removeContainer(half.Id, { force: true, volumes: true });
  const { create, connect } = createOptions(removed.spec, name, removed.image, (await engine.info()).apiVersion);
  const id = await engine.createContainer(create);
  for (const n of connect) await engine.connectNetwork(n.network, id, n.endpoint);
  const mounts = ((await engine.inspectContainer(id)).Mounts ?? []) as Array<{ Type?: string; Name?: string; Destination: string }>;
  const filler = new Filler(engine, removed.image, run);
  for (const old of removed.anonymous) {
    const now = mounts.find((m) => m.Type === 'volume' && m.Destination === old.destination && m.Name);
    if (now?.Name && (await engine.inspectVolume(old.volume))) await filler.copyVolume(old.volume, now.Name);
  }
  return id;
}

/**
 * Removes what committed restores left (`Leftovers`): the old containers (with their anonymous
 * volumes), then the images and volumes, then the host paths' old content kept aside. One already
 * gone counts as done, and so does one the engine says is in use (409): a container or image being
 * removed by someone else, or a volume someone mounts, which is left in place with a warning naming
 * it. One that failed to be removed otherwise stays out of the result, with a warning, for the next
 * run to remove. Returns what is done. Never throws.
 */
export async function removeLeftovers(engine: Engine, l: Leftovers, log: Logger): Promise<Leftovers> {
  const done: Leftovers = { containers: [], images: [], volumes: [], paths: [] };
  const each = async (kind: keyof Leftovers, what: string, remove: (x: string) => Promise<void>) => {
    for (const x of l[kind] ?? []) {
      try {
        await remove(x).catch(ignoreMissing);
        done[kind]!.push(x);
      } catch (err) {
        if (err instanceof ConflictError) {
          if (kind === 'volumes') log.warning(`${what} ${x} is in use: left in place (remove it by hand once it is free)`);
          done[kind]!.push(x);
        } else log.warning(`${what} ${x} could not be removed (the next restore tries again): ${errorMessage(err)}`);
      }
    }
  };
  await each('containers', 'The replaced container', (id) => engine.removeContainer(id, { force: true, volumes: true }));
  await each('images', 'The image of the replaced container', (image) => engine.removeImage(image, { force: true }));
  await each('volumes', 'Volume', (v) => engine.removeVolume(v));
  await each('paths', 'The old content of a replaced host path, kept at', removeAsidePath);
  return done;
}

/** Removes the helper containers of the runs `matches` accepts (by their label); returns how many there were. */
export async function removeRunHelpers(engine: Engine, matches: (run: string) => boolean): Promise<number> {
  const helpers = (await engine.containersLabelled(RUN_LABEL)).filter((c) => matches(c.value));
  // Another run may be removing the same leftover at this moment: 404 and 409 both mean it is going.
  for (const c of helpers) await engine.removeContainer(c.id, { force: true, volumes: true }).catch(ignoreGoing);
  return helpers.length;
}

/** Removes the aside volumes of the runs `matches` accepts, but those in `keep` or still in use. */
export async function removeRunVolumes(engine: Engine, matches: (run: string) => boolean, keep: Set<string>): Promise<void> {
  for (const v of await engine.volumesLabelled(RUN_LABEL)) {
    if (!matches(v.value) || keep.has(v.name)) continue;
    await engine.removeVolume(v.name).catch(ignoreGoing);
  }
}
