// B2 and B6 of issue 12: the next backup into the same dir: store after a 1 MB change in the
// writable layer and 1 MB in the volume, against the full backup before it (time, new bytes
// stored, paused window). Medians of rounds; asserts nothing.
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { sizeOf } from '../lib/fixture.mjs';
import { measure, rounds } from '../lib/measure.mjs';
import { MB, csBackupCmd, q, sh } from '../lib/process.mjs';
import { pausedSeconds } from './pause.mjs';

/** The largest file of a payload part (host paths; the container holds them under `root`). */
export function largest(part, root) {
  const sizes = part.files.map((f) => ({ host: f, root, size: statSync(f).size }));
  return sizes.reduce((a, b) => (b.size > a.size ? b : a));
}

/** Copies `bytes` into the container at `root` + `rel` (the fixture image has no dd: the file goes in by docker cp). */
export function put(ctx, root, rel, bytes) {
  const stage = mkdtempSync(join(ctx.tmp, 'b2-stage-'));
  mkdirSync(join(stage, dirname(rel)), { recursive: true });
  writeFileSync(join(stage, rel), bytes);
  sh(`tar -C ${q(stage)} -cf - ${q(rel)} | docker cp - ${ctx.container}:${root || '/'}`);
  rmSync(stage, { recursive: true, force: true });
}

/** 1 MB of random bytes over the middle of a payload file in the container (size kept; docker cp writes the whole file). */
export function rewriteMiddle(ctx, { host, root, size }) {
  const bytes = readFileSync(host);
  const at = Math.max(0, Math.floor(size / 2) - MB / 2);
  randomBytes(Math.min(MB, size)).copy(bytes, at);
  put(ctx, root, host.slice(1), bytes);
}

/** One backup into `dir`, timed: { seconds, rssKB, engineKB, bytes (new bytes in dir), paused (s) }. */
async function backupInto(ctx, dir, tag) {
  const before = sizeOf(dir);
  const step = await measure(ctx, csBackupCmd(ctx, dir, tag));
  return { ...step, paused: pausedSeconds(ctx), bytes: sizeOf(dir) - before };
}

/**
 * The kernel's writeback timing and 5 s (ms; file-index.ts racyMarginNs on a default kernel): a
 * file changed less than this before a backup is taken again by the next (the layer's racy
 * entries, the volume's file index). A scheduled backup finds the last one's changes settled.
 */
const SETTLE_MS = 45_000;

/** Waits until `since` (ms, Date.now()) is SETTLE_MS ago. */
async function settled(since) {
  const left = since + SETTLE_MS - Date.now();
  if (left > 0) await new Promise((resolve) => setTimeout(resolve, left));
}

/**
 * Each round: a full backup to a fresh directory, once the round before's changes have settled
 * (SETTLE_MS: as a scheduled backup finds them), then a new 1 MB random file in the layer and
 * 1 MB rewritten in the middle of the volume's largest file, backed up into the same directory
 * ("file"); then 1 MB rewritten inside the layer's largest file and again 1 MB in the volume
 * ("rewrite"). Returns { full, file, rewrite }, each { seconds, bytes, paused, rssKB }.
 * Leaves the fixture changed: the restores check sets taken before it (ctx.counts stays theirs).
 */
export async function runIncremental(ctx) {
  const volFile = largest(ctx.payload.volume, '/data');
  const layerFile = largest(ctx.payload.layer, '');
  let changed = ctx.madeAt ?? 0;
  const r = await rounds(ctx.opts.runs, {
    inc: async (i) => {
      const dir = join(ctx.tmp, `b2-${i}`);
      await settled(changed);
      const full = await backupInto(ctx, dir, 'full');
      put(ctx, '', `usr/bench-new-${i}`, randomBytes(MB));
      rewriteMiddle(ctx, volFile);
      const file = await backupInto(ctx, dir, 'file');
      rewriteMiddle(ctx, layerFile);
      rewriteMiddle(ctx, volFile);
      changed = Date.now();
      const rewrite = await backupInto(ctx, dir, 'rewrite');
      return { full, file, rewrite };
    },
  });
  return { ...r.inc, files: { layer: layerFile, volume: volFile } };
}
