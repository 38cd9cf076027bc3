import { Transform, type TransformCallback } from 'node:stream';
import { formatBytes } from './format.js';

/** How often a long transfer says how far it is: not before it has run this long, then at this interval. */
export const PROGRESS_EVERY_MS = 5000;

/** Whole seconds for people: `45 s`, `3 min 20 s`, `2 h 5 min`. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** One progress line: bytes so far (of the total, when known), the rate over the last interval, and the time left at that rate. */
export function formatProgress(p: { what: string; bytes: number; total?: number; rate: number }): string {
  const of = p.total ? ` of ${formatBytes(p.total)} (${Math.floor((100 * p.bytes) / p.total)} %)` : '';
  const rate = p.rate > 0 ? `, ${formatBytes(Math.round(p.rate))}/s` : ', no progress since the last line';
  const left = p.total && p.rate > 0 ? `, about ${formatDuration((p.total - p.bytes) / p.rate)} left` : '';
  return `${p.what}: ${formatBytes(p.bytes)}${of}${rate}${left}`;
}

/**
 * Counts the bytes of one transfer and reports a line (formatProgress) when `tick` finds one due:
 * the first after `everyMs`, then every `everyMs`. A transfer shorter than that says nothing.
 * `clock` is in milliseconds (monotonic).
 */
export class Progress {
  private bytes = 0;
  private readonly started: number;
  private last: { at: number; bytes: number };

  constructor(
    private readonly what: string,
    private readonly total: number | undefined,
    private readonly report: (line: string) => void,
    private readonly clock: () => number = () => performance.now(),
    private readonly everyMs = PROGRESS_EVERY_MS,
  ) {
    this.started = clock();
    this.last = { at: this.started, bytes: 0 };
  }

  add(n: number): void {
    this.bytes += n;
  }

  tick(): void {
    const now = this.clock();
    if (now - this.last.at < this.everyMs) return;
    const rate = ((this.bytes - this.last.bytes) * 1000) / (now - this.last.at);
    this.last = { at: now, bytes: this.bytes };
    this.report(formatProgress({ what: this.what, bytes: this.bytes, total: this.total, rate }));
  }
}

/** Reports a transfer's progress as it runs: what is piped through here, looked at every second. */
export type Meter = (what: string, total?: number) => Transform;

/** A Meter reporting through `report` (a log line each time, in the action and on a terminal alike). */
export function meterWith(report: (line: string) => void, everyMs = PROGRESS_EVERY_MS): Meter {
  return (what, total) => {
    const progress = new Progress(what, total, report, undefined, everyMs);
    const timer = setInterval(() => progress.tick(), Math.min(1000, everyMs)).unref();
    const stream = new Transform({
      transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback) {
        progress.add(chunk.length);
        done(null, chunk);
      },
    });
    stream.once('close', () => clearInterval(timer));
    return stream;
  };
}

/** A Meter that passes bytes through and says nothing. */
export const silentMeter: Meter = () => new Transform({ transform: (chunk, _enc, done) => done(null, chunk) });
