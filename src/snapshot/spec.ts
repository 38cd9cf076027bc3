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
const HOST_CONFIG_DROPPED = ['MaskedPaths', 'ReadonlyPaths', 'ContainerIDFile'] as const;

const DEFAULT_NETWORKS = new Set(['bridge', 'host', 'none', 'default']);

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
  return Object.keys(info.NetworkSettings?.Networks ?? {}).filter((n) => !DEFAULT_NETWORKS.has(n));
}

export function captureSpec(info: ContainerInspect, networks: Map<string, NetworkInspect>): ContainerSpec {
  const config = pick(info.Config, CONFIG_FIELDS);
  const shortId = info.Id.slice(0, 12);
  if (config.Hostname === shortId || info.HostConfig?.NetworkMode === 'host') delete config.Hostname;
  const hostConfig: Record<string, unknown> = { ...(info.HostConfig as Record<string, unknown>) };
  for (const field of HOST_CONFIG_DROPPED) delete hostConfig[field];
  const links = normalizeLinks(info.HostConfig?.Links as string[] | undefined);
  if (links) hostConfig.Links = links;
  else delete hostConfig.Links;
  const name = info.Name.replace(/^\//, '');
  const attachments = Object.entries(info.NetworkSettings?.Networks ?? {})
    .filter(([netName]) => !DEFAULT_NETWORKS.has(netName))
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

/**
 * Create options for the container; networks beyond the first are connected
 * before start (engines before API 1.44 take one network at create).
 */
export function createOptions(
  spec: ContainerSpec,
  name: string,
  image: string,
): { create: CreateContainerOptions; connect: Array<{ network: string; endpoint: EndpointSettings }> } {
  const [first, ...rest] = spec.networks;
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
