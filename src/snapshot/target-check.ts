import { isIPv6 } from 'node:net';
import type { PortMapping } from '../core/port-map.js';
import type { RestoreOptions, StartPolicy } from '../core/options.js';
import { ACTION_WORDS, type Vocabulary } from '../core/words.js';
import type { Engine, EngineFeatures } from '../engine/engine.js';
import type { ContainerRecord, SnapshotSet } from './manifest.js';
import type { ContainerSpec } from './spec.js';

/** One published host port of a container's configuration (`HostConfig.PortBindings`). */
export interface HostBinding {
  container: string;
  /** The container's port and protocol, as the engine keys it: `80/tcp`. */
  containerPort: string;
  /** The host address; '' for every address. */
  ip: string;
  port: number;
  protocol: string;
}

/** A host port the target engine's running containers publish. */
export interface TakenPort {
  container: string;
  ip: string;
  port: number;
  protocol: string;
}

type Bindings = Record<string, Array<{ HostIp?: string; HostPort?: string }> | null>;

function bindingsOf(spec: ContainerSpec): Bindings {
  return (spec.hostConfig.PortBindings as Bindings | null | undefined) ?? {};
}

/**
 * The fixed host ports a container publishes; ports the engine picks (empty or 0) can never be
 * taken, and a container on the host's network publishes none (the engine ignores its bindings).
 */
export function hostBindings(container: string, spec: ContainerSpec): HostBinding[] {
  if (spec.hostConfig.NetworkMode === 'host') return [];
  return Object.entries(bindingsOf(spec)).flatMap(([containerPort, list]) =>
    (list ?? [])
      .map((b) => ({ container, containerPort, ip: normalIp(b.HostIp), port: Number(b.HostPort ?? 0), protocol: containerPort.split('/')[1] ?? 'tcp' }))
      .filter((b) => b.port > 0),
  );
}

function normalIp(ip: string | undefined): string {
  return !ip || ip === '0.0.0.0' || ip === '::' ? '' : ip;
}

function matches(m: PortMapping, port: number, protocol: string): boolean {
  return m.from === port && (!m.protocol || m.protocol === protocol);
}

/** The spec with each host port `map` names published on its new port (Engine API `HostConfig.PortBindings`). */
export function mapPorts(spec: ContainerSpec, map: PortMapping[]): ContainerSpec {
  if (map.length === 0 || !spec.hostConfig.PortBindings) return spec;
  const mapped = Object.fromEntries(
    Object.entries(bindingsOf(spec)).map(([containerPort, list]) => {
      const protocol = containerPort.split('/')[1] ?? 'tcp';
      return [
        containerPort,
        list?.map((b) => {
          const m = map.find((e) => matches(e, Number(b.HostPort ?? 0), protocol));
          return m ? { ...b, HostPort: String(m.to) } : b;
        }) ?? list,
      ];
    }),
  );
  return { ...spec, hostConfig: { ...spec.hostConfig, PortBindings: mapped } };
}

/** `port-map` entries that no binding of the containers publishes (a mistyped port must not pass silently). */
export function unusedMappings(specs: Array<{ container: string; spec: ContainerSpec }>, map: PortMapping[]): PortMapping[] {
  const all = specs.flatMap((s) => hostBindings(s.container, s.spec));
  return map.filter((m) => !all.some((b) => matches(m, b.port, b.protocol)));
}

function overlaps(a: string, b: string): boolean {
  return a === '' || b === '' || a === b;
}

/**
 * Each binding that a running container of the target engine already holds (same port and
 * protocol, overlapping host address), or that two restored containers both want, one sentence each.
 */
export function portClashes(wanted: HostBinding[], taken: TakenPort[], portMapName: string): string[] {
  const found: string[] = [];
  const where = (b: HostBinding) => `${b.ip ? `${b.ip}:` : ''}${b.port}/${b.protocol}`;
  for (const [i, b] of wanted.entries()) {
    const holder = taken.find((t) => t.port === b.port && t.protocol === b.protocol && overlaps(t.ip, b.ip));
    const twin = wanted.slice(0, i).find((o) => o.port === b.port && o.protocol === b.protocol && overlaps(o.ip, b.ip));
    if (holder)
      found.push(
        `${b.container} publishes host port ${where(b)} (for ${b.containerPort}), which container '${holder.container}' holds on this engine (${portMapName} ${b.port}=NEWPORT publishes it elsewhere)`,
      );
    else if (twin) found.push(`${b.container} and ${twin.container} both publish host port ${where(b)}`);
  }
  return found;
}

/** A fixed address a restored container asks for on a network (its IPAMConfig), by the restored container's name. */
export interface WantedAddress {
  container: string;
  network: string;
  /** Without a prefix length: 10.0.7.10, fd00::10. */
  address: string;
}

/**
 * Each fixed address that a running container of the target engine holds on the same network
 * (`held`: address → holder's name, by network), or that two restored containers both ask for,
 * one sentence each (the engine fails the second start with "Address already in use", after the
 * restore changed things). `words`: the interface's names of replace and start.
 */
export function addressClashes(wanted: WantedAddress[], held: Map<string, Map<string, string>>, words: Vocabulary): string[] {
  const found: string[] = [];
  for (const [i, w] of wanted.entries()) {
    const holder = held.get(w.network)?.get(w.address);
    const twin = wanted.slice(0, i).find((o) => o.network === w.network && o.address === w.address);
    // Replace sets aside only a container of the restored name: offered where the holder is one.
    const over = holder === w.container ? `, restore over it with ${words.enable('replace')}` : '';
    if (holder)
      found.push(
        `${w.container} asks for address ${w.address} on network ${w.network}, which container '${holder}' holds there (stop '${holder}' first${over}, or create ${w.container} without starting it: ${words.name('start')} never)`,
      );
    else if (twin) found.push(`${w.container} and ${twin.container} both ask for address ${w.address} on network ${w.network}`);
  }
  return found;
}

/** An address without its prefix length, an IPv6 one in its canonical text (lower case, zeros compressed: `FD00:0::10` → `fd00::10`), as the engine's network inspect gives it. */
export function canonicalAddress(address: string): string {
  const bare = address.replace(/\/\d+$/, '');
  return isIPv6(bare) ? new URL(`http://[${bare}]/`).hostname.slice(1, -1) : bare;
}

/** The fixed addresses the restored containers ask for (IPAMConfig IPv4Address, IPv6Address), under their restored names. */
function wantedAddresses(starting: ContainerRecord[], rename: ReadonlyMap<string, string>): WantedAddress[] {
  return starting.flatMap((c) =>
    c.spec.networks.flatMap((n) =>
      ['IPv4Address', 'IPv6Address']
        .map((k) => n.ipamConfig?.[k])
        .filter((a): a is string => typeof a === 'string' && a !== '')
        .map((a) => ({ container: rename.get(c.name) ?? c.name, network: n.name, address: canonicalAddress(a) })),
    ),
  );
}

/** Address → name of the running container holding it, on each of `networks` that exists on the engine (its endpoints: running containers only), leaving out `aside`. */
async function heldAddresses(engine: Engine, networks: string[], aside: ReadonlySet<string>): Promise<Map<string, Map<string, string>>> {
  const held = new Map<string, Map<string, string>>();
  for (const name of new Set(networks)) {
    const net = await engine.inspectNetwork(name);
    const byAddress = new Map<string, string>();
    for (const ep of Object.values((net?.Containers ?? {}) as Record<string, { Name?: string; IPv4Address?: string; IPv6Address?: string }>)) {
      if (!ep.Name || aside.has(ep.Name)) continue;
      for (const a of [ep.IPv4Address, ep.IPv6Address]) if (a) byAddress.set(canonicalAddress(a), ep.Name);
    }
    held.set(name, byAddress);
  }
  return held;
}

/** Whether a restore with this start policy starts the container (its recorded state under `auto`). */
export function willStart(c: Pick<ContainerRecord, 'state'>, start: StartPolicy): boolean {
  if (start === 'always') return true;
  if (start === 'never') return false;
  return ['running', 'paused', 'restarting'].includes(c.state);
}

/** What a restore asks of the engine: the runtime, log driver and volume drivers of each container, and the drivers of networks it creates. */
export interface Needs {
  containers: Array<{ name: string; spec: ContainerSpec; volumeDrivers: string[] }>;
  /** Networks missing on the engine that the restore creates: name, driver and the subnets recorded for them. */
  networks: Array<{ name: string; driver: string; subnets?: string[] }>;
}

/** An IPv4 CIDR as [first address, last address] (32-bit numbers); undefined for IPv6 or anything else. */
function ipv4Range(cidr: string): [number, number] | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(cidr);
  if (!m) return undefined;
  const bits = Number(m[5]);
  const addr = m.slice(1, 5).reduce((n, o) => n * 256 + Number(o), 0);
  const size = 2 ** (32 - bits);
  const first = addr - (addr % size);
  return [first, first + size - 1];
}

/**
 * Networks the restore would create with a subnet (IPv4, as recorded) that overlaps one the engine
 * already has: it would refuse to create them ("Pool overlaps"). One phrase each.
 */
export function subnetClashes(networks: Needs['networks'], existing: Array<{ network: string; subnet: string }>): string[] {
  const found: string[] = [];
  for (const n of networks) {
    for (const subnet of n.subnets ?? []) {
      const a = ipv4Range(subnet);
      const overlapped =
        a &&
        existing.find((e) => {
          const b = ipv4Range(e.subnet);
          return b !== undefined && a[0] <= b[1] && b[0] <= a[1];
        });
      if (overlapped)
        found.push(
          `network ${n.name} would be created with subnet ${subnet}, which overlaps network ${overlapped.network} (${overlapped.subnet}) on this engine`,
        );
    }
  }
  return found;
}

// Always there, though `GET /info` does not list them among the log plugins (Engine 20.10–26.1).
const BUILTIN_LOG_DRIVERS = ['none', ''];

/**
 * Everything a restore needs that the engine does not offer, one phrase each: a runtime
 * (`HostConfig.Runtime`, checked against `Runtimes`), a log driver (`HostConfig.LogConfig.Type`
 * against `Plugins.Log`), a volume driver (`Plugins.Volume`), a network driver (`Plugins.Network`).
 */
export function missingFeatures(needs: Needs, features: EngineFeatures): string[] {
  const found = new Map<string, string[]>();
  const add = (what: string, who: string) => found.set(what, [...(found.get(what) ?? []), who]);
  for (const c of needs.containers) {
    const runtime = c.spec.hostConfig.Runtime as string | undefined;
    if (runtime && !features.runtimes.includes(runtime)) add(`runtime '${runtime}'`, c.name);
    const log = (c.spec.hostConfig.LogConfig as { Type?: string } | undefined)?.Type ?? '';
    if (!BUILTIN_LOG_DRIVERS.includes(log) && !features.logDrivers.includes(log)) add(`log driver '${log}'`, c.name);
    const volumeDriver = c.spec.hostConfig.VolumeDriver as string | undefined;
    for (const d of new Set([...c.volumeDrivers, ...(volumeDriver ? [volumeDriver] : [])]))
      if (!features.volumeDrivers.includes(d)) add(`volume driver '${d}'`, c.name);
  }
  for (const n of needs.networks) if (!features.networkDrivers.includes(n.driver)) add(`network driver '${n.driver}'`, `network ${n.name}`);
  return [...found].map(([what, who]) => `${what} (${[...new Set(who)].join(', ')})`);
}

/** The engine a restore goes to cannot take the set as it is; nothing was changed. */
export class TargetError extends Error {
  override name = 'TargetError';
}

function mappingText(m: PortMapping): string {
  return `${m.from}${m.protocol ? `/${m.protocol}` : ''}=${m.to}`;
}

/** What the restore asks of the engine that it may lack: drivers of volumes and networks it creates, each container's runtime and log driver. */
async function needsOf(engine: Engine, chosen: ContainerRecord[], opts: RestoreOptions): Promise<Needs> {
  const networks = new Map<string, Needs['networks'][number]>();
  for (const n of chosen.flatMap((c) => c.spec.networks)) {
    if (!n.definition || networks.has(n.name) || (await engine.inspectNetwork(n.name))) continue;
    const subnets = (n.definition.ipam.Config ?? []).map((c) => c.Subnet).filter((s): s is string => typeof s === 'string');
    networks.set(n.name, { name: n.name, driver: n.definition.driver, subnets });
  }
  const containers: Needs['containers'] = [];
  for (const c of chosen) {
    const volumeDrivers: string[] = [];
    for (const v of opts.includeVolumes ? c.volumes.filter((m) => m.type === 'volume' && !m.anonymous && m.driver) : []) {
      if (!(await engine.inspectVolume(opts.rename.get(v.name) ?? v.name))) volumeDrivers.push(v.driver!);
    }
    containers.push({ name: c.name, spec: c.spec, volumeDrivers });
  }
  return { containers, networks: [...networks.values()] };
}

/**
 * Checked before any change, for the whole set (the engine may be another than the one that took
 * it): every `port-map` entry is used; the engine offers each runtime, log, volume and network
 * driver the restore needs; no network it creates overlaps the subnet of one there; no published
 * host port or fixed address (IPAMConfig) of a container that will start is held by a running
 * container there (those `replace` sets aside excepted); and `refusals` (engine-compat.ts describeGap: configuration the engine
 * would drop that changes what a container sees). Throws one TargetError naming all.
 */
export async function checkTarget(engine: Engine, set: SnapshotSet, chosen: ContainerRecord[], opts: RestoreOptions, refusals: string[] = []): Promise<void> {
  const w = opts.words ?? ACTION_WORDS;
  const map = opts.portMap ?? [];
  const unused = unusedMappings(
    chosen.map((c) => ({ container: c.name, spec: c.spec })),
    map,
  );
  if (unused.length > 0) {
    const published = [...new Set(chosen.flatMap((c) => hostBindings(c.name, c.spec)).map((b) => `${b.port}/${b.protocol}`))];
    throw new TargetError(
      `Invalid ${w.name('port-map')} ${unused.map(mappingText).join(', ')}: no container restored from snapshot ${set.tag} publishes that host port. Expected one of: ${published.join(', ') || '(none)'}.`,
    );
  }
  const needs = await needsOf(engine, chosen, opts);
  const lacking = missingFeatures(needs, await engine.features());
  const overlaps = subnetClashes(needs.networks, await engine.networkSubnets());
  const targets = new Set(chosen.map((c) => opts.rename.get(c.name) ?? c.name));
  const taken = (await engine.publishedPorts()).filter((t) => !(opts.replace && targets.has(t.container)));
  const starting = chosen.filter((c) => willStart(c, opts.start));
  const wanted = starting.flatMap((c) => hostBindings(c.name, mapPorts(c.spec, map)));
  const addresses = wantedAddresses(starting, opts.rename);
  const aside = opts.replace ? targets : new Set<string>();
  const held =
    addresses.length > 0
      ? await heldAddresses(
          engine,
          addresses.map((a) => a.network),
          aside,
        )
      : new Map<string, Map<string, string>>();
  const clashes = [...overlaps, ...portClashes(wanted, taken, w.name('port-map')), ...addressClashes(addresses, held, w)];
  if (lacking.length === 0 && clashes.length === 0 && refusals.length === 0) return;
  const info = await engine.info();
  const onto = `${info.name ? `${info.name}, ` : ''}Engine ${info.version} at ${engine.describe()}`;
  const why = [...(lacking.length > 0 ? [`the engine lacks ${lacking.join(', ')}`] : []), ...clashes, ...refusals];
  throw new TargetError(`Snapshot ${set.tag} cannot be restored onto ${onto}; nothing was changed: ${why.join('; ')}.`);
}
