import type { BackupResult } from './snapshot/backup.js';
import type { EngineInfo } from './engine/engine.js';
import type { RestoreResult } from './snapshot/restore-types.js';
import type { SetSummary } from './snapshot/manifest.js';
import type { PruneResult } from './snapshot/prune.js';
import type { VerifyReport } from './snapshot/verify.js';
import { formatBytes } from './util/format.js';
import { TOOL } from './version.js';
import type { summary } from '@actions/core';

export { formatBytes };

/** One line for every container that failed, or undefined when none did. */
export function failureLine(containers: Array<{ name: string; error?: string; failed: boolean }>, verb: string): string | undefined {
  const failed = containers.filter((c) => c.failed);
  if (failed.length === 0) return undefined;
  return `${failed.length} container(s) ${verb}: ${failed.map((c) => `${c.name} (${c.error})`).join('; ')}`;
}

/** One line naming an engine: host name, short daemon ID, version, API and address (whatever of these is known). */
export function engineLine(e: Partial<EngineInfo> & { address?: string }): string {
  const who = [e.name, e.id ? `ID ${e.id.slice(0, 14)}` : undefined].filter(Boolean).join(', ');
  return `${who ? `${who}, ` : ''}Engine ${e.version ?? '?'} (API ${e.apiVersion ?? '?'})${e.address ? ` at ${e.address}` : ''}`;
}

/** The job summary being written (core.summary): each *Summary function adds its section and returns it. */
export type Summary = typeof summary;

/** Text shown as is in an HTML table cell: one line (a blank line would end the table's HTML block). */
function text(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/\n/g, ' ');
}

/** A table's header row, as core.summary.addTable takes it. */
function header(names: string[]): Array<{ data: string; header: true }> {
  return names.map((n) => ({ data: text(n), header: true }));
}

/** The summary's last line: which version of the tool wrote it. */
function byline(): string {
  return `\n<sub>${TOOL.name} ${TOOL.version}</sub>\n`;
}

/** Adds the job summary of a backup to `summary`: one row per container, where the set went, its artifact. */
export function backupSummary(summary: Summary, result: BackupResult & { engine?: Partial<EngineInfo> & { address?: string } }, dryRun: boolean): Summary {
  const rows = result.containers.map((c) => [
    ...[
      c.name,
      c.state,
      c.status === 'failed' ? `❌ ${c.error ?? ''}` : c.status === 'planned' ? 'planned' : '✅',
      c.volumes.join(', ') || '—',
      formatBytes(c.bytes),
      (c.status !== 'ok' ? '—' : c.stoppedMs > 0 ? `${c.stoppedMs} ms stopped` : c.pausedMs > 0 ? `${c.pausedMs} ms paused` : 'not paused') +
        (c.note ? ` (${c.note})` : ''),
    ].map(text),
    c.destinations.map((d) => text(d.ref)).join('<br>') || '—',
  ]);
  const title = `### Container snapshot ${result.tag}${dryRun ? ' (dry run)' : ''}${result.engine ? `\n\nEngine: ${engineLine(result.engine)}` : ''}`;
  const places = result.destinations.map((d) => (d.written ? `✅ ${d.destination}` : `❌ ${d.destination}: ${d.error ?? ''}`));
  const where = places.length > 0 ? `\nSet written to:\n${places.map((p) => `- ${p}`).join('\n')}\n` : '';
  const links = result.artifacts.map((a) => `Artifact: [${a.name}](${a.url}) (ID ${a.id})\n`).join('');
  return summary
    .addRaw(`${title}\n\n`)
    .addTable([header(['Container', 'State', 'Result', 'Volumes', 'Stored', 'Quiesced', 'Stored at']), ...rows])
    .addRaw(`${groupLines(result.groups ?? [])}${where}${links ? `\n${links}` : ''}${byline()}`);
}

/** One line per consistency group: its members, and how long from the first hold to the last release (or why it was not taken). */
export function groupLines(groups: NonNullable<BackupResult['groups']>): string {
  if (groups.length === 0) return '';
  const line = (g: (typeof groups)[number]) =>
    `- ${g.status === 'ok' ? '✅' : '❌'} ${g.name} (${g.containers.join(', ')}): ${g.status === 'ok' ? `held together for ${g.windowMs} ms` : text(g.error ?? 'not taken')}`;
  return `\nConsistency groups (first hold to last release):\n${groups.map(line).join('\n')}\n`;
}

/** Adds the job summary of a restore to `summary`: the engines, then one row per container. */
export function restoreSummary(summary: Summary, result: RestoreResult & { engine?: Partial<EngineInfo> & { address?: string } }): Summary {
  const rows = result.containers.map((c) => [c.from, c.name, c.status === 'ok' ? `✅ ${c.state}` : `❌ ${c.error ?? ''}`].map(text));
  const onto = result.engine ? `Restored onto: ${engineLine(result.engine)}\n` : '';
  const from = result.sourceEngine ? `Taken on: ${engineLine(result.sourceEngine)}\n` : '';
  const engines = onto || from ? `${[onto, from].filter(Boolean).join('\n')}\n` : '';
  return summary
    .addRaw(`### Restored snapshot ${result.tag}\n\n${engines}`)
    .addTable([header(['From', 'Container', 'Result']), ...rows])
    .addRaw(byline());
}

export function setsTable(sets: SetSummary[]): string {
  const rows = sets.map((s) =>
    s.damaged
      ? [s.tag, s.created || '?', '?', `DAMAGED: ${s.damaged}`, '?', '?']
      : [s.tag, s.created, String(s.containers.length), s.containers.join(', '), formatBytes(s.bytes), s.encrypted ? 'age' : 'no'],
  );
  const head = ['TAG', 'CREATED', 'N', 'CONTAINERS', 'SIZE', 'ENCRYPTED'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  return [head, ...rows]
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** What a prune kept (and by which rule), removed and freed, as plain lines for a terminal or a log. */
export function pruneReport(r: PruneResult): string {
  const verb = r.dryRun ? 'would remove' : 'removed';
  const rows = [
    ...r.kept.map((k) => ['keep', k.tag, k.created, k.reasons.join(', ')]),
    ...r.removed.map((s) => [verb, s.tag, s.created, '']),
    ...r.damaged.map((d) => ['damaged, kept', d.tag, '', d.reason]),
  ];
  const widths = [0, 1, 2].map((i) => Math.max(...rows.map((row) => row[i].length)));
  const lines = rows.map((row) =>
    row
      .map((c, i) => (i < 3 ? c.padEnd(widths[i]) : c))
      .join('  ')
      .trimEnd(),
  );
  const freed = r.swept
    ? r.swept.skipped
      ? `No blob swept: ${r.swept.skipped}.`
      : `${r.dryRun ? 'Would free' : 'Freed'} ${formatBytes(r.swept.bytes)} (${r.swept.blobs} unreferenced blob(s)).`
    : (r.note ?? '');
  const head = `${r.destination}: keep ${r.policy}${r.dryRun ? ' (dry run)' : ''}: ${r.kept.length} kept, ${r.removed.length} ${verb}${r.damaged.length ? `, ${r.damaged.length} damaged` : ''}`;
  return [head, ...lines.map((l) => `  ${l}`), ...(freed ? [freed] : [])].join('\n');
}

/** A verification as plain lines: one per set, then one per container, indented. */
export function verifyLines(report: VerifyReport): string[] {
  return report.sets.flatMap((s) => {
    if (s.error) return [`${s.tag}: DAMAGED: ${s.error}`];
    const bad = s.containers.filter((c) => c.status === 'failed').length;
    const blobs = s.containers.reduce((n, c) => n + c.blobs, 0);
    const head = `${s.tag}: ${bad ? `DAMAGED (${bad} of ${s.containers.length} container(s))` : `ok, ${s.containers.length} container(s)`}, ${blobs} blob(s) verified`;
    return [head, ...s.containers.map((c) => `  ${c.name}: ${c.status === 'ok' ? `ok, ${c.blobs} blob(s)` : `DAMAGED: ${c.error ?? ''}`}`)];
  });
}

/** One line for everything a verification found damaged, or undefined when nothing was. */
export function verifyFailureLine(report: VerifyReport): string | undefined {
  const items = report.sets.flatMap((s) =>
    s.error
      ? [`snapshot ${s.tag} (${s.error})`]
      : s.containers.filter((c) => c.status === 'failed').map((c) => `snapshot ${s.tag} container ${c.name} (${c.error})`),
  );
  return items.length ? `${items.length} damaged: ${items.join('; ')}` : undefined;
}

/** Adds the job summary of a verification to `summary`: one row per container of each set, one for a set that could not be read. */
export function verifySummary(summary: Summary, report: VerifyReport): Summary {
  const rows = report.sets.flatMap((s) =>
    (s.error
      ? [[s.tag, '—', '—', `❌ ${s.error}`]]
      : s.containers.map((c) => [s.tag, c.name, String(c.blobs), c.status === 'ok' ? '✅' : `❌ ${c.error ?? ''}`])
    ).map((row) => row.map(text)),
  );
  const title = report.sets.length === 1 ? `### Verified snapshot ${report.sets[0].tag}` : `### Verified ${report.sets.length} snapshot sets`;
  return summary
    .addRaw(`${title}\n\n`)
    .addTable([header(['Snapshot', 'Container', 'Blobs', 'Result']), ...rows])
    .addRaw(byline());
}
