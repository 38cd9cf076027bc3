/**
 * Compares two `docker inspect` results over all of Config, HostConfig and NetworkSettings.Networks,
 * field by field, so a field nobody listed shows up as a difference instead of being lost unseen.
 */
export interface Difference {
  path: string;
  before: unknown;
  after: unknown;
}

/** A field that differs by design: a path pattern (`*` is one path segment) and why. */
export interface ByDesign {
  path: string;
  why: string;
}

type Inspect = { Id: string; Config: object; HostConfig: object; NetworkSettings: { Networks?: object } };

/**
 * The compared part of an inspect, with the container's own ID (which the engine makes its hostname
 * when none is given, and an alias and DNS name on each network) named as such or left out.
 */
export function comparedPart(info: Inspect): Record<string, unknown> {
  const own = new Set([info.Id, info.Id.slice(0, 12)]);
  const hostname = (info.Config as { Hostname?: string }).Hostname;
  const config = own.has(hostname ?? '') ? { ...info.Config, Hostname: '(its own ID)' } : info.Config;
  const networks = Object.fromEntries(
    Object.entries(info.NetworkSettings.Networks ?? {}).map(([name, ep]) => {
      const { Aliases: aliases, DNSNames: dnsNames } = ep as { Aliases?: string[] | null; DNSNames?: string[] | null };
      const others = (names: string[] | null | undefined) => (names ? names.filter((a) => !own.has(a)).sort() : names);
      // DNSNames: API ≥ 1.44, computed by the engine from the name, aliases and ID.
      return [name, { ...ep, Aliases: others(aliases), ...(dnsNames !== undefined ? { DNSNames: others(dnsNames) } : {}) }];
    }),
  );
  return { Config: config, HostConfig: info.HostConfig, Networks: networks };
}

function leaves(value: unknown, path: string, out: Map<string, unknown>): void {
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && Object.keys(value).length > 0) {
    for (const [k, v] of Object.entries(value)) leaves(v, path ? `${path}.${k}` : k, out);
  } else {
    out.set(path, value);
  }
}

function matches(pattern: string, path: string): boolean {
  const p = pattern.split('.');
  const s = path.split('.');
  return p.length <= s.length && p.every((seg, i) => seg === '*' || seg === s[i]);
}

/** Every leaf that differs and is not listed in `byDesign` (a pattern also covers what is below it). */
export function inspectDiff(before: Inspect, after: Inspect, byDesign: readonly ByDesign[]): Difference[] {
  const a = new Map<string, unknown>();
  const b = new Map<string, unknown>();
  leaves(comparedPart(before), '', a);
  leaves(comparedPart(after), '', b);
  const out: Difference[] = [];
  for (const path of new Set([...a.keys(), ...b.keys()])) {
    if (JSON.stringify(a.get(path)) === JSON.stringify(b.get(path))) continue;
    if (byDesign.some((d) => matches(d.path, path))) continue;
    out.push({ path, before: a.get(path), after: b.get(path) });
  }
  return out.sort((x, y) => x.path.localeCompare(y.path));
}
