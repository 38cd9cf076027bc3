/** A slab the copies are carved from: `used` bytes carved so far, `live` copies not yet released. */
interface Slab {
  buf: Buffer;
  used: number;
  live: number;
}

/**
 * Copies of buffers held for a while (a volume chunk kept while the destinations are asked whether
 * they hold it: chunked.ts), carved one after the other out of slabs of `slabBytes` bytes that are
 * reused once every copy in them is released: no allocation, page faults or garbage per copy. A
 * fresh buffer per copy (Buffer.from) of the 524 chunks (209 MiB) a warm backup of the benchmark's
 * volume checks took ~160 ms and most of the run's young-generation GC (~200 ms) in one profile.
 * At most `keep` free slabs are kept for reuse; more are made as needed and dropped when freed. A
 * copy pins its whole slab until released: the caller bounds what is held with heldAfter.
 */
export class CopySlabs {
  private current?: Slab;
  private readonly free: Slab[] = [];
  /** Slabs holding a copy not yet released. */
  private pinned = 0;

  /** `slabBytes`: bytes of a slab (the longest copy); `keep`: free slabs kept for reuse. */
  constructor(
    private readonly slabBytes: number,
    private readonly keep: number,
  ) {}

  /**
   * Bytes of the slabs that copies not yet released hold (a slab held by one short copy counts
   * whole), after a copy of `n` bytes were taken now: what bounds the memory held, not the bytes copied.
   */
  heldAfter(n: number): number {
    const slab = this.current;
    const fits = slab !== undefined && slab.live > 0 && slab.used + n <= this.slabBytes;
    return (this.pinned + (fits ? 0 : 1)) * this.slabBytes;
  }

  /**
   * A copy of `bytes` and the call that gives its room back (once the copy is no longer read;
   * further calls do nothing). Throws RangeError when `bytes` is longer than a slab.
   */
  copy(bytes: Buffer): { copy: Buffer; release: () => void } {
    if (bytes.length > this.slabBytes) throw new RangeError(`a copy of ${bytes.length} bytes does not fit a slab of ${this.slabBytes}`);
    let slab = this.current;
    if (!slab || slab.used + bytes.length > this.slabBytes) {
      if (slab) this.retire(slab);
      slab = this.free.pop() ?? { buf: Buffer.allocUnsafeSlow(this.slabBytes), used: 0, live: 0 };
      this.current = slab;
    }
    const copy = slab.buf.subarray(slab.used, slab.used + bytes.length);
    bytes.copy(copy);
    slab.used += bytes.length;
    if (slab.live++ === 0) this.pinned++;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      if (--slab.live > 0) return;
      this.pinned--;
      if (slab === this.current) slab.used = 0;
      else this.recycle(slab);
    };
    return { copy, release };
  }

  /** The current slab no longer carves: freed now when nothing in it is live, else once its last copy is released. */
  private retire(slab: Slab): void {
    this.current = undefined;
    if (slab.live === 0) this.recycle(slab);
  }

  private recycle(slab: Slab): void {
    slab.used = 0;
    if (this.free.length < this.keep) this.free.push(slab);
  }
}
