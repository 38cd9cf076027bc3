import type { ContainerInspect, CreateContainerOptions, EndpointSettings, NetworkInspect } from '../engine/engine.js';

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
  definition?: NetworkDefinition;
}

/** What it takes to create the container again: the engine's create options, minus engine-chosen values. */
export interface ContainerSpec {
  config: Record<string, unknown>;
  hostConfig: Record<string, unknown>;
  networks: NetworkAttachment[];
}

const CONFIG_FIELDS = [
  'Hostname', 'Domainname', 'User', 'AttachStdin', 'AttachStdout', 'AttachStderr', 'ExposedPorts', 'Tty',
  'OpenStdin', 'StdinOnce', 'Env', 'Cmd', 'Healthcheck', 'ArgsEscaped', 'Volumes', 'WorkingDir', 'Entrypoint',
  'NetworkDisabled', 'OnBuild', 'Labels', 'StopSignal', 'StopTimeout', 'Shell',
] as const;

// Values the engine fills in at create time; passing them back would pin this engine's defaults.
// Empty MaskedPaths/ReadonlyPaths are kept: they are how `--security-opt systempaths=unconfined` shows.
const HOST_CONFIG_DEFAULTED = ['MaskedPaths', 'ReadonlyPaths'] as const;

const BUILTIN_NETWORKS = new Set(['bridge', 'host', 'none', 'default']);

// With another container's network, the engine refuses these (they belong to that container).
const CONFIG_OF_SHARED_NETWORK = ['Hostname', 'Domainname', 'ExposedPorts'] as const;
const HOST_CONFIG_OF_SHARED_NETWORK = ['PortBindings', 'PublishAllPorts', 'Dns', 'DnsOptions', 'DnsSearch', 'ExtraHosts'] as const;

function pick(source: object, fields: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const field of fields) {
    const value = (source as Record<string, unknown>)[field];
    if (value !== undefined && value !== null) out[field] = value;
  }
  return out;
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
  for (const l of (hostConfig.Links as string[] | null) ?? []) refs.push(l.split(':')[0]);
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
  const config = pick(info.Config, CONFIG_FIELDS);
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
  const attachments = Object.entries(info.NetworkSettings?.Networks ?? {})
    .filter(([netName]) => netName !== 'host' && netName !== 'none')
    .map(([netName, ep]): NetworkAttachment => {
      const endpoint = ep as EndpointSettings & { IPAMConfig?: Record<string, unknown> | null };
      const aliases = (endpoint.Aliases ?? []).filter((a: string) => a !== shortId && a !== info.Id && a !== name);
      const attachment: NetworkAttachment = { name: netName, aliases };
      if (endpoint.IPAMConfig && Object.keys(endpoint.IPAMConfig).length > 0) attachment.ipamConfig = endpoint.IPAMConfig;
      const epLinks = normalizeLinks(endpoint.Links);
      if (epLinks) attachment.links = epLinks;
      const net = networks.get(netName);
      if (net) attachment.definition = networkDefinition(net);
      return attachment;
    });
  return { config, hostConfig, networks: attachments };
}

function endpointConfig(attachment: NetworkAttachment): EndpointSettings {
  const ep: Record<string, unknown> = {};
  if (attachment.aliases.length > 0) ep.Aliases = attachment.aliases;
  if (attachment.ipamConfig) ep.IPAMConfig = attachment.ipamConfig;
  if (attachment.links) ep.Links = attachment.links;
  return ep as EndpointSettings;
}

/** The network the container is created on: the one its network mode names ('default' is the bridge). */
function primaryNetwork(spec: ContainerSpec): NetworkAttachment | undefined {
  const mode = String(spec.hostConfig.NetworkMode ?? 'default');
  if (mode === 'host' || mode === 'none' || SHARED.test(mode)) return undefined;
  const wanted = mode === 'default' ? 'bridge' : mode;
  return spec.networks.find((n) => n.name === wanted) ?? spec.networks.find((n) => n.name !== 'bridge');
}

/**
 * Create options for the container; its other networks are connected before start
 * (engines before API 1.44 take one network at create).
 */
export function createOptions(
  spec: ContainerSpec,
  name: string,
  image: string,
): { create: CreateContainerOptions; connect: Array<{ network: string; endpoint: EndpointSettings }> } {
  const first = primaryNetwork(spec);
  const rest = first ? spec.networks.filter((n) => n !== first) : [];
  const create: CreateContainerOptions = {
    ...(spec.config as CreateContainerOptions),
    name,
    Image: image,
    HostConfig: spec.hostConfig as CreateContainerOptions['HostConfig'],
  };
  if (first) create.NetworkingConfig = { EndpointsConfig: { [first.name]: endpointConfig(first) } };
  return { create, connect: rest.map((a) => ({ network: a.name, endpoint: endpointConfig(a) })) };
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
