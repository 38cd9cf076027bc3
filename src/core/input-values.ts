/**
 * The value shapes every input shares (lists, booleans, choices, bounded whole numbers, globs),
 * parsed from the raw text of an action input or CLI flag. Errors are InputError, worded
 * "Invalid NAME 'VALUE'. Expected …" with the name the interface uses.
 */
import { InputError } from './input-error.js';

/** Splits a List (newline) or CSV input into trimmed, non-empty items. */
export function splitList(input: string): string[] {
  return input
    .split(/[\n,]/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** A Bool input: true/True/TRUE or false/False/FALSE, `fallback` when empty. Throws InputError naming `name`. */
export function parseBoolean(name: string, value: string, fallback: boolean): boolean {
  const v = value.trim();
  if (v === '') return fallback;
  if (['true', 'True', 'TRUE'].includes(v)) return true;
  if (['false', 'False', 'FALSE'].includes(v)) return false;
  throw new InputError(`Invalid ${name} '${value}'. Expected true or false.`);
}

/** One of `choices` (exact, case-sensitive), `fallback` when empty. Throws InputError naming `name` and listing the choices. */
export function parseChoice<T extends string>(name: string, value: string, choices: readonly T[], fallback: T): T {
  const v = value.trim();
  if (v === '') return fallback;
  if ((choices as readonly string[]).includes(v)) return v as T;
  throw new InputError(`Invalid ${name} '${value}'. Expected one of: ${choices.join(', ')}.`);
}

/** A glob (`*`, `?`, `[…]`, `[!…]`) as an anchored RegExp; other characters match themselves. */
export function globToRegExp(glob: string): RegExp {
  const body = glob
    .replace(/[.+^${}()|\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${body.replace(/\[!/g, '[^')}$`);
}

/**
 * A whole number from `min` to `max` (written with no more digits than `max` has), or undefined when
 * empty. Throws InputError "Invalid NAME 'RAW'. Expected EXPECTED." otherwise.
 */
export function parseWholeNumber(name: string, raw: string, min: number, max: number, expected: string): number | undefined {
  const value = raw.trim();
  if (value === '') return undefined;
  const n = new RegExp(`^\\d{1,${String(max).length}}$`).test(value) ? Number(value) : NaN;
  if (!(n >= min && n <= max)) throw new InputError(`Invalid ${name} '${raw}'. Expected ${expected}.`);
  return n;
}
