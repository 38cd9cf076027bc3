import type { Logger } from '../../src/core/log.js';

/** A Logger that keeps its lines (`warning: …`, `error: …` prefixed) instead of printing them. */
export function recordingLog(): Logger & { lines: string[] } {
  return {
    lines: [],
    info(m) {
      this.lines.push(m);
    },
    warning(m) {
      this.lines.push(`warning: ${m}`);
    },
    error(m) {
      this.lines.push(`error: ${m}`);
    },
    group: (_t, fn) => fn(),
  };
}
