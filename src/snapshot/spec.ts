import type { ContainerInspect, CreateContainerOptions, EndpointSettings } from '../engine/containers.js';
import type { NetworkInspect } from '../engine/volumes-networks.js';

export interface NetworkDefinition {
  driver: string;
  options: Record<string, string>;
  labels: Record<string, string>;
  internal: boolean;
  attachable: boolean;
  enableIPv6: boolean;
  ipam: { Driver?: string; Config?: Array<Record<string, unknown>>; Options?: Record<string, string> };
}

export interface NetworkAttachment {
  name: string;
  aliases: string[];
  ipamConfig?: Record<string, unknown>;
  links?: string[];
  /** A MAC address configured for this endpoint (API ≥ 1.44 keeps it here; older APIs in Config.MacAddress). */
  macAddress?: string;
  /** Every other endpoint setting the engine showed and did not assign itself (DriverOpts, and fields of newer engines). */
  settings?: Record<string, unknown>;
  definition?: NetworkDefinition;
}

/** What it takes to create the container again: the engine's create options, minus engine-chosen values. */
export interface ContainerSpec {
  config: Record<string, unknown>;
  hostConfig: Record<string, unknown>;
  networks: NetworkAttachment[];
}

/**
 * Config is taken whole but for these: the image is the snapshot's own at restore. Everything else,
 * including fields of engines newer than this code, is passed back as it was.
 */
export const CONFIG_NOT_TAKEN = ['Image'] as const;

/**
 * Endpoint settings the engine assigns (Engine API 1.41–1.45 `EndpointSettings`), or that are taken
 * into their own attachment fields. The rest is passed back as it was.
 */
export const ENDPOINT_NOT_TAKEN = [
  'NetworkID',
  'EndpointID',
  'Gateway',
  'IPAddress',
  'IPPrefixLen',
  'IPv6Gateway',
  'GlobalIPv6Address',
  'GlobalIPv6PrefixLen',
  'DNSNames',
  'Aliases',
  'IPAMConfig',
  'Links',
  'MacAddress',
] as const;

// Values the engine fills in at create time; passing them back would pin this engine's defaults.
// Empty MaskedPaths/ReadonlyPaths are kept: they are how `--security-opt systempaths=unconfined` shows.
const HOST_CONFIG_DEFAULTED = ['MaskedPaths', 'ReadonlyPaths'] as const;

const BUILTIN_NETWORKS = new Set(['bridge', 'host', 'none', 'default']);

// With another container's network, the engine refuses these (they belong to that container).
const CONFIG_OF_SHARED_NETWORK = ['Hostname', 'Domainname', 'ExposedPorts'] as const;
const HOST_CONFIG_OF_SHARED_NETWORK = ['PortBindings', 'PublishAllPorts', 'Dns', 'DnsOptions', 'DnsSearch', 'ExtraHosts'] as const;

function omit(source: object, fields: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(source)) {
    if (value !== undefined && value !== null && !fields.includes(field)) out[field] = value;
  }
  return out;
}

/** The MAC a bridge-like driver derives from an IPv4 address (libnetwork `GenerateMACFromIP`): 02:42 and the four octets. */
export function macFromIp(ip: string | undefined): string | undefined {
  const octets = ip?.split('.').map(Number);
  if (!octets || octets.length !== 4 || octets.some((o) => !(o >= 0 && o <= 255))) return undefined;
  return ['02', '42', ...octets.map((o) => o.toString(16).padStart(2, '0'))].join(':');
}

/**
 * The endpoint's MAC when it was configured rather than assigned. API ≤ 1.43 names a configured MAC in
 * Config.MacAddress; API ≥ 1.44 only shows the endpoint's MAC, which counts as configured unless it is
 * the one the engine derives from the endpoint's IP (on any network but the primary, whatever the API).
 */
function configuredMac(configMac: unknown, endpoint: { MacAddress?: string; IPAddress?: string }, primary: boolean): string | undefined {
  if (primary && typeof configMac === 'string' && configMac !== '') return configMac;
  // Engine 26 (API 1.45) still shows the primary's MAC in Config.MacAddress: another network's
  // endpoint may hold a configured MAC of its own.
  const mac = endpoint.MacAddress;
  if (!mac || mac.toLowerCase() === macFromIp(endpoint.IPAddress)) return undefined;
  return mac;
}

/** Inspect shows links as "/target:/self/alias"; create takes "target:alias". */
export function normalizeLinks(links: string[] | null | undefined): string[] | undefined {
  if (!links || links.length === 0) return undefined;
  return links.map((link) => {
    const [target, self] = link.split(':');
    const alias = self?.split('/').pop() ?? '';
    return `${target.replace(/^\//, '')}:${alias}`;
  });
}

export function networkDefinition(net: NetworkInspect): NetworkDefinition {
  return {
    driver: net.Driver,
    options: net.Options ?? {},
    labels: net.Labels ?? {},
    internal: Boolean(net.Internal),
    attachable: Boolean(net.Attachable),
    enableIPv6: Boolean(net.EnableIPv6),
    ipam: (net.IPAM as NetworkDefinition['ipam']) ?? {},
  };
}

export function userNetworkNames(info: ContainerInspect): string[] {
  return Object.keys(info.NetworkSettings?.Networks ?? {}).filter((n) => !BUILTIN_NETWORKS.has(n));
}

const SHARED = /^container:(.+)$/;

/** Modes and references that name other containers, which a restore must find by name. */
export function containerReferences(hostConfig: Record<string, unknown>): string[] {
  const refs: string[] = [];
  for (const field of ['NetworkMode', 'PidMode', 'IpcMode']) {
    const m = SHARED.exec(String(hostConfig[field] ?? ''));
    if (m) refs.push(m[1]);
  }
  for (const v of (hostConfig.VolumesFrom as string[] | null) ?? []) refs.push(v.split(':')[0]);
  // A legacy link as the engine writes it: `/target:/holder/alias`.
  for (const l of (hostConfig.Links as string[] | null) ?? []) refs.push(l.split(':')[0].replace(/^\//, ''));
  return refs;
}

/** Replaces container IDs in `container:` modes and VolumesFrom with names (`names` maps ID → name). */
export function withNamedReferences(hostConfig: Record<string, unknown>, names: (idOrName: string) => string): Record<string, unknown> {
  const out = { ...hostConfig };
  for (const field of ['NetworkMode', 'PidMode', 'IpcMode']) {
    const m = SHARED.exec(String(out[field] ?? ''));
    if (m) out[field] = `container:${names(m[1])}`;
  }
  if (Array.isArray(out.VolumesFrom)) {
    out.VolumesFrom = (out.VolumesFrom as string[]).map((v) => {
      const [ref, ...mode] = v.split(':');
      return [names(ref), ...mode].join(':');
    });
  }
  return out;
}

/** The spec with restore-time renames applied to volume sources and container references. */
export function renameReferences(spec: ContainerSpec, rename: Map<string, string>): ContainerSpec {
  if (rename.size === 0) return spec;
  const to = (name: string) => rename.get(name) ?? name;
  const hostConfig = withNamedReferences(spec.hostConfig, to);
  if (Array.isArray(hostConfig.Binds)) {
    hostConfig.Binds = (hostConfig.Binds as string[]).map((b) => {
      const [source, ...rest] = b.split(':');
      return source.startsWith('/') ? b : [to(source), ...rest].join(':');
    });
  }
  if (Array.isArray(hostConfig.Mounts)) {
    hostConfig.Mounts = (hostConfig.Mounts as Array<{ Type?: string; Source?: string }>).map((m) =>
      m.Type === 'volume' && m.Source ? { ...m, Source: to(m.Source) } : m,
    );
  }
  if (Array.isArray(hostConfig.Links)) {
    hostConfig.Links = (hostConfig.Links as string[]).map((l) => {
      const [target, alias] = l.split(':');
      return `${to(target)}:${alias}`;
    });
  }
  return { ...spec, hostConfig };
}

export function captureSpec(info: ContainerInspect, networks: Map<string, NetworkInspect>, names: (idOrName: string) => string = (n) => n): ContainerSpec {
  const config = omit(info.Config, CONFIG_NOT_TAKEN);
  const shortId = info.Id.slice(0, 12);
  if (config.Hostname === shortId || info.HostConfig?.NetworkMode === 'host') delete config.Hostname;
  let hostConfig: Record<string, unknown> = { ...(info.HostConfig as Record<string, unknown>) };
  delete hostConfig.ContainerIDFile;
  for (const field of HOST_CONFIG_DEFAULTED) {
    if (Array.isArray(hostConfig[field]) && (hostConfig[field] as unknown[]).length > 0) delete hostConfig[field];
  }
  const links = normalizeLinks(info.HostConfig?.Links as string[] | undefined);
  if (links) hostConfig.Links = links;
  else delete hostConfig.Links;
  hostConfig = withNamedReferences(hostConfig, names);
  if (SHARED.test(String(hostConfig.NetworkMode ?? ''))) {
    for (const field of CONFIG_OF_SHARED_NETWORK) delete config[field];
    for (const field of HOST_CONFIG_OF_SHARED_NETWORK) delete hostConfig[field];
  }
  const name = info.Name.replace(/^\//, '');
  const mode = String(info.HostConfig?.NetworkMode ?? 'default');
  const primaryName = mode === 'default' ? 'bridge' : mode;
  const attachments = Object.entries(info.NetworkSettings?.Networks ?? {})
    .filter(([netName]) => netName !== 'host' && netName !== 'none')
    .map(([netName, ep]): NetworkAttachment => {
      const endpoint = ep as EndpointSettings & { IPAMConfig?: Record<string, unknown> | null };
      const aliases = (endpoint.Aliases ?? []).filter((a: string) => a !== shortId && a !== info.Id && a !== name);
      const attachment: NetworkAttachment = { name: netName, aliases };
      if (endpoint.IPAMConfig && Object.keys(endpoint.IPAMConfig).length > 0) attachment.ipamConfig = endpoint.IPAMConfig;
      const epLinks = normalizeLinks(endpoint.Links);
      if (epLinks) attachment.links = epLinks;
      const mac = configuredMac((info.Config as { MacAddress?: string }).MacAddress, endpoint, netName === primaryName);
      if (mac) attachment.macAddress = mac;
      const settings = omit(endpoint, ENDPOINT_NOT_TAKEN);
      if (Object.keys(settings).length > 0) attachment.settings = settings;
      const net = networks.get(netName);
      if (net) attachment.definition = networkDefinition(net);
      return attachment;
    });
  return { config, hostConfig, networks: attachments };
}

function endpointConfig(attachment: NetworkAttachment): EndpointSettings {
  const ep: Record<string, unknown> = { ...attachment.settings };
  if (attachment.aliases.length > 0) ep.Aliases = attachment.aliases;
  if (attachment.macAddress) ep.MacAddress = attachment.macAddress;
  if (attachment.ipamConfig) ep.IPAMConfig = attachment.ipamConfig;
  if (attachment.links) ep.Links = attachment.links;
  return ep as EndpointSettings;
}

/** The network the container is created on: the one its network mode names ('default' is the bridge); undefined for host, none or another container's network. */
export function primaryNetwork(spec: ContainerSpec): NetworkAttachment | undefined {
  const mode = String(spec.hostConfig.NetworkMode ?? 'default');
  if (mode === 'host' || mode === 'none' || SHARED.test(mode)) return undefined;
  const wanted = mode === 'default' ? 'bridge' : mode;
  return spec.networks.find((n) => n.name === wanted) ?? spec.networks.find((n) => n.name !== 'bridge');
}

/** Whether an Engine API version ("1.45") is at least `min` ("1.44"). */
export function apiAtLeast(apiVersion: string, min: string): boolean {
  const [a, b] = apiVersion.split('.').map(Number);
  const [x, y] = min.split('.').map(Number);
  return a > x || (a === x && b >= y);
}

/**
 * Create options for the container. API ≥ 1.44 takes every network at create; before it, the
 * container is created on one and `connect` lists the others, to connect before start. (Engine 26.1
 * drops a MAC given at connect when the container starts, so a newer engine must get them at create.)
 */
export function createOptions(
  spec: ContainerSpec,
  name: string,
  image: string,
  apiVersion = '1.41',
): { create: CreateContainerOptions; connect: Array<{ network: string; endpoint: EndpointSettings }> } {
  const first = primaryNetwork(spec);
  const rest = first ? spec.networks.filter((n) => n !== first) : [];
  const create: CreateContainerOptions = {
    ...(spec.config as CreateContainerOptions),
    name,
    Image: image,
    HostConfig: spec.hostConfig as CreateContainerOptions['HostConfig'],
  };
  const atCreate = first && apiAtLeast(apiVersion, '1.44') ? [first, ...rest] : first ? [first] : [];
  if (first) create.NetworkingConfig = { EndpointsConfig: Object.fromEntries(atCreate.map((a) => [a.name, endpointConfig(a)])) };
  // Engines before API 1.44 ignore an endpoint's MAC at create and take it from Config only.
  if (first?.macAddress && !create.MacAddress) create.MacAddress = first.macAddress;
  const later = rest.filter((a) => !atCreate.includes(a));
  return { create, connect: later.map((a) => ({ network: a.name, endpoint: endpointConfig(a) })) };
}

export function createNetworkOptions(name: string, def: NetworkDefinition): Record<string, unknown> {
  return {
    Name: name,
    Driver: def.driver,
    Options: def.options,
    Labels: def.labels,
    Internal: def.internal,
    Attachable: def.attachable,
    EnableIPv6: def.enableIPv6,
    IPAM: def.ipam,
    CheckDuplicate: true,
  };
}
