import type Docker from 'dockerode';
import type { Readable } from 'node:stream';
import { call, closedIfAborted, endOnAbort, unlessMissing } from './call.js';
import { ContainerIoCalls } from './container-io.js';
import { readProgress } from './progress.js';
import { ConflictError, NotFoundError } from './errors.js';

/** `GET /images/{name}/json` as dockerode types it. */
export type ImageInspect = Docker.ImageInspectInfo;

/**
 * The calls about images: commit, import, load, save, tag, list, remove. Part of `Engine`
 * (connection.ts tells the chain). Each throws as `call` (call.ts) says, unless its doc says otherwise.
 */
export class ImageCalls extends ContainerIoCalls {
  /**
   * Commits the container's writable layer as `repo:tag` (`POST /commit`), the container paused
   * meanwhile when `pause`; returns the new image ID (sha256:…).
   */
  async commit(id: string, opts: { pause: boolean; repo: string; tag: string }): Promise<string> {
    const res = (await call(`commit container ${id}`, () => this.docker.getContainer(id).commit({ pause: opts.pause, repo: opts.repo, tag: opts.tag }))) as {
      Id: string;
    };
    return res.Id;
  }

  /** `GET /images/{name}/json`; NotFoundError when there is no such image. */
  inspectImage(ref: string, signal?: AbortSignal): Promise<ImageInspect> {
    return call(`inspect image ${ref}`, () => this.docker.getImage(ref).inspect(), signal);
  }

  /**
   * The diff IDs (sha256:…) of the layers of image `ref` (a reference or an ID), bottom first
   * (`GET /images/{name}/json` RootFS.Layers); undefined when the engine has no such image.
   */
  async imageDiffIds(ref: string): Promise<string[] | undefined> {
    const info = await unlessMissing(this.inspectImage(ref));
    return info === undefined ? undefined : (info.RootFS?.Layers ?? []);
  }

  /**
   * Whether the engine keeps its images in containerd's store (`docker info` DriverStatus has
   * `driver-type` `io.containerd.snapshotter.v1`: Engine 24+ with the containerd image store on),
   * whose `POST /images/load` imports every blob an archive lists rather than reusing held layers.
   */
  async containerdImageStore(): Promise<boolean> {
    const i = (await call('read the engine information', () => this.docker.info())) as { DriverStatus?: Array<[string, string]> | null };
    return (i.DriverStatus ?? []).some(([k, v]) => k === 'driver-type' && v === 'io.containerd.snapshotter.v1');
  }

  /** Whether the engine has the image `ref` (a reference or an ID). */
  async imageExists(ref: string): Promise<boolean> {
    return (await unlessMissing(this.inspectImage(ref))) !== undefined;
  }

  /**
   * `docker import` (`POST /images/create?fromSrc=-`): an image whose single layer is `tar`, tagged
   * `repo:tag`. A failure the engine reports inside its progress stream is thrown as EngineError (progress.ts).
   */
  async importImage(tar: Readable, repo: string, tag: string): Promise<void> {
    const stream = await call(`import image ${repo}:${tag}`, () => this.docker.importImage(tar as never, { repo, tag }) as Promise<Readable>);
    await readProgress(stream, `import image ${repo}:${tag}`);
  }

  /**
   * `docker save` (`GET /images/{name}/get`): a tar stream of the image (legacy or OCI layout, both
   * with manifest.json). An aborted `signal` destroys the stream with its reason.
   */
  async saveImage(ref: string, signal?: AbortSignal): Promise<Readable> {
    return endOnAbort(await call(`save image ${ref}`, () => closedIfAborted(this.docker.getImage(ref).get() as Promise<Readable>, signal), signal), signal);
  }

  /**
   * `docker load` (`POST /images/load`, quiet); returns the loaded image IDs and references the
   * engine reports ("Loaded image: …", "Loaded image ID: …"). A failure the engine reports inside
   * its progress stream is thrown as EngineError (progress.ts).
   */
  async loadImage(tar: Readable): Promise<string[]> {
    const stream = await call('load image', () => this.docker.loadImage(tar, { quiet: true }));
    const events = await readProgress(stream, 'load image');
    return events
      .map((e) => String(e.stream ?? ''))
      .map((s) => /Loaded image(?: ID)?: (\S+)/.exec(s)?.[1])
      .filter((s): s is string => Boolean(s));
  }

  /** `POST /images/{name}/tag`: tags the image `id` as `repo:tag` (moving the tag if another image had it). */
  async tagImage(id: string, repo: string, tag: string): Promise<void> {
    await call(`tag image ${id} as ${repo}:${tag}`, () => this.docker.getImage(id).tag({ repo, tag }));
  }

  /** Tags (repository:tag) of the local images whose repository matches `pattern` (the engine's reference filter). */
  async imageTags(pattern: string): Promise<string[]> {
    const images = await call(`list images ${pattern}`, () => this.docker.listImages({ filters: { reference: [pattern] } }));
    return images.flatMap((i) => i.RepoTags ?? []).filter((t) => t !== '<none>:<none>');
  }

  /** The ID (sha256:…) of the image `ref` names (`GET /images/{name}/json`); undefined when the engine has none. */
  async imageId(ref: string): Promise<string | undefined> {
    return (await unlessMissing(this.inspectImage(ref)))?.Id;
  }

  /**
   * The containers, in any state, made from image `id` or from an image built on it
   * (`GET /containers/json?all=1` filtered by `ancestor`): their IDs.
   */
  async imageUsers(id: string): Promise<string[]> {
    const found = await call(`list the containers of image ${id}`, () => this.docker.listContainers({ all: true, filters: { ancestor: [id] } }));
    return found.map((c) => c.Id);
  }

  /**
   * `DELETE /images/{id}` never forced, parents without another use pruned (`noprune` false):
   * removes the image `id` when the engine agrees; true when it did. False, leaving everything as
   * it was, when the engine refuses (409: a container uses it, it has tags in several
   * repositories, an image is built on it) or has no such image (404). Beware: an ID whose tags
   * are all in one repository loses them and goes (moby daemon/images/image_delete.go); check its
   * tags first. Other errors are thrown as `call` says.
   */
  async removeImageIfUnused(id: string): Promise<boolean> {
    try {
      await call(`remove image ${id}`, () => this.docker.getImage(id).remove({ force: false, noprune: false }));
      return true;
    } catch (err) {
      if (err instanceof NotFoundError || err instanceof ConflictError) return false;
      throw err;
    }
  }

  /**
   * `DELETE /images/{name}`: removes the image or tag `ref`; nothing when it is gone. ConflictError
   * when a container uses it (or an ID still has several tags) and `force` is not set.
   */
  async removeImage(ref: string, opts: { force?: boolean } = {}): Promise<void> {
    await unlessMissing(call(`remove image ${ref}`, () => this.docker.getImage(ref).remove({ force: opts.force ?? false })));
  }
}
