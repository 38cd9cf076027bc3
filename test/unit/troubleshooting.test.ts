import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Every line of every source file under src/. */
function sourceLines(dir = 'src'): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceLines(join(dir, e.name)) : e.name.endsWith('.ts') ? readFileSync(join(dir, e.name), 'utf8').split('\n') : [],
  );
}

/** The bullets of a README's Troubleshooting section. */
function troubleshooting(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const start = text.indexOf('\n## Troubleshooting\n');
  expect(start, file).toBeGreaterThan(0);
  const end = text.indexOf('\n## ', start + 1);
  return text
    .slice(start, end < 0 ? undefined : end)
    .split(/\n- /)
    .slice(1);
}

/** Quotes in code spans that are messages, not commands, inputs or names. */
function quotedMessages(bullet: string): string[] {
  return [...bullet.matchAll(/`([^`]+)`/g)]
    .map((m) => m[1])
    .filter((q) => /\s/.test(q) && /^[A-Za-z…]/.test(q) && !/^(docker |node |permissions:|rename:|replace:)/.test(q));
}

// Messages quoted from other programs (GitHub's API), not printed by our code.
const FOREIGN = new Set(['Resource not accessible by integration']);

// Stand-ins in a quote for what a message fills in: a location, a tag, a name, an HTTP status, an errno code, an ellipsis.
const PLACEHOLDER = /\b[a-z]+:(?:NAME|PATH|…)|…|\b(?:X|DEST|NAME|HOST)\b|(?<=')[a-z](?=')|\b\d{3}\b|\bE[A-Z]{3,}\b/g;

/** A regular expression for a source line that prints the quote: its literal parts in order. */
function printedBy(quote: string): RegExp {
  const parts = quote.split(PLACEHOLDER).filter((p) => p.trim().length > 0);
  return new RegExp(parts.map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*'));
}

describe('Troubleshooting quotes only messages the tools print', () => {
  const lines = sourceLines();
  it.each(['README.md', 'restore/README.md'])('%s', (file) => {
    const quotes = troubleshooting(file)
      .flatMap(quotedMessages)
      .filter((q) => !FOREIGN.has(q));
    expect(quotes.length).toBeGreaterThanOrEqual(4);
    for (const quote of quotes)
      expect(
        lines.some((l) => printedBy(quote).test(l)),
        quote,
      ).toBe(true);
  });

  it('turns a quote into its literal parts in order', () => {
    expect(printedBy("container 'x' exists").source).toBe("container '.*' exists");
    expect(
      printedBy('Snapshot X (…) not written to DEST: set document: …').test(
        '`Snapshot ${set.tag} (${names}) not written to ${dest.label}: set document: ${own}`',
      ),
    ).toBe(true);
    expect(printedBy('Snapshot X was lost').test('`Snapshot ${tag} already exists`')).toBe(false);
  });
});
