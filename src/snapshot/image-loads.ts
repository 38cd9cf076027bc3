/** A restored container's image in the engine: its local reference, and whether this restore loaded it. */
export interface LoadedImage {
  ref: string;
  loaded: boolean;
  /** The ID of the image `ref` named before this restore tagged another image with it. */
  previous?: string;
}

/**
 * The image loads of one restore run (`POST /images/load`), run one at a time in the order they are
 * started, each known by the local reference it tags, so that volumes are filled while an image
 * loads and whatever needs the image waits for `ready`.
 */
export class ImageLoads {
  private readonly loads = new Map<string, Promise<LoadedImage>>();
  private last: Promise<unknown> = Promise.resolve();

  /** Starts `load` once the loads started before it have settled; its outcome is kept for `ready(ref)`. */
  start(ref: string, load: () => Promise<LoadedImage>): Promise<LoadedImage> {
    const started = this.last.then(load, load);
    this.last = started.catch(() => undefined);
    // Its failure reaches whoever waits for it (ready), or the caller: never an unhandled rejection.
    started.catch(() => undefined);
    this.loads.set(ref, started);
    return started;
  }

  /** Settles when the load of `ref` is done, rejecting with its error; resolves at once when none was started. */
  ready(ref: string): Promise<unknown> {
    return this.loads.get(ref) ?? Promise.resolve();
  }
}
