/**
 * Images a restore would leave without a tag and without a use. A restore tags its image
 * `container-snapshot/<name>:<set tag>` (container-restore.ts); when that reference named another
 * image (a set tag reused across restores), the tag moves off it. An old container a rollback made
 * again from its committed layer (ASIDE_IMAGE_REPOSITORY) runs from an image left untagged. Once
 * the restore that replaces such a container or moves such a tag commits, the image is removed
 * when nothing uses it; a rollback puts a moved tag back (container-restore.ts `unload`).
 */
import { errorMessage, type Logger } from '../core/log.js';
import type { ContainerInspect } from '../engine/containers.js';
import type { Engine } from '../engine/engine.js';
import { ASIDE_IMAGE_REPOSITORY } from './restore-volumes.js';

/** The first 12 hex digits of an image ID, as `docker images` shows it. */
function shortId(id: string): string {
  return id.replace(/^sha256:/, '').slice(0, 12);
}

/**
 * The ID of the image `ref` names now, when it is not `id`: the one tagging `id` as `ref` moves the
 * tag off. Undefined when `ref` names nothing or `id` already, or when the engine could not say
 * (the image is then only left where it is).
 */
export async function displacedImage(engine: Engine, ref: string, id: string): Promise<string | undefined> {
  const now = await engine.imageId(ref).catch(() => undefined);
  return now && now !== id ? now : undefined;
}

/**
 * Removes image `id` when it has no tag left and no container (in any state) is made from it or
 * from an image built on it, never forced: the engine's refusal (409) or its absence (404) leaves
 * it too (Engine.removeImageIfUnused). Says one line when it removed it, nothing when it left it; a
 * failure is a warning, never thrown. `why` says, for that line, where its tag went.
 */
export async function removeIfDangling(engine: Engine, id: string, why: string, log: Logger): Promise<void> {
  try {
    const info = await engine.inspectImage(id).catch(() => undefined);
    if (!info || (info.RepoTags ?? []).some((t) => t !== '<none>:<none>')) return;
    if ((await engine.imageUsers(id)).length > 0) return;
    if (await engine.removeImageIfUnused(id)) log.info(`Removed image ${shortId(id)}: ${why}, and nothing used it`);
  } catch (err) {
    log.warning(`Image ${shortId(id)} (${why}) was left: ${errorMessage(err)}`);
  }
}

/**
 * What one restore run may leave behind, noted as it goes (`beforeTag`, `setAside`) and removed
 * when each container's restore commits (`committed`), through removeIfDangling. An image the set
 * restores a container from (`restored`) is never removed.
 */
export class LeftImages {
  /** By local reference: the image it named before this run moved it, until that restore commits or is put back. */
  private readonly displaced = new Map<string, string>();
  /** By target: the image of the old container set aside, when an earlier restore's rollback made it. */
  private readonly asideImages = new Map<string, { id: string; asideName: string }>();

  constructor(
    private readonly engine: Engine,
    private readonly log: Logger,
    private readonly restored: (id: string) => boolean,
  ) {}

  /** Before image `id` is tagged `ref`: notes and returns the image `ref` names now (displacedImage). */
  async beforeTag(ref: string, id: string): Promise<string | undefined> {
    const previous = await displacedImage(this.engine, ref, id);
    if (previous) this.displaced.set(ref, previous);
    return previous;
  }

  /** The tag `ref` was put back (or never moved): nothing to remove for it. */
  forgetTag(ref: string): void {
    this.displaced.delete(ref);
  }

  /** The old container `old` of `target` is set aside as `asideName`: its image is noted when a rollback made it. */
  setAside(target: string, old: ContainerInspect, asideName: string): void {
    if (old.Config.Image.startsWith(`${ASIDE_IMAGE_REPOSITORY}/`)) this.asideImages.set(target, { id: old.Image, asideName });
  }

  /** The restore of `target` was put back: its old container is back. */
  putBack(target: string): void {
    this.asideImages.delete(target);
  }

  /**
   * The restore of `target`, its image tagged `ref`, committed (its old container removed): the
   * image `ref` moved off and the image a rollback made its old container from are removed when
   * nothing uses them; one another uncommitted restore of this run may still put a tag back on is kept.
   */
  async committed(target: string, ref: string | undefined): Promise<void> {
    const previous = ref === undefined ? undefined : this.displaced.get(ref);
    if (ref !== undefined) this.displaced.delete(ref);
    if (previous && !this.restored(previous) && ![...this.displaced.values()].includes(previous))
      await removeIfDangling(this.engine, previous, `tag ${ref} moved to the restored image`, this.log);
    const aside = this.asideImages.get(target);
    this.asideImages.delete(target);
    if (aside && !this.restored(aside.id))
      await removeIfDangling(this.engine, aside.id, `the replaced container ${aside.asideName} was made from it by an earlier restore's rollback`, this.log);
  }
}
