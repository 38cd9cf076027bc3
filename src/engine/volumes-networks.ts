import type Docker from 'dockerode';
import { call, unlessMissing } from './call.js';
import { ImageCalls } from './images.js';
import type { EndpointSettings } from './containers.js';
import { ownName } from './names.js';

/** `GET /volumes/{name}` as dockerode types it. */
export type VolumeInspect = Docker.VolumeInspectInfo;
/** `GET /networks/{id}` as dockerode types it. */
export type NetworkInspect = Docker.NetworkInspectInfo;

/**
 * The calls about volumes and networks. Part of `Engine` (connection.ts tells the chain). Each
 * throws as `call` (call.ts) says, unless its doc says otherwise.
 */
export class VolumeNetworkCalls extends ImageCalls {
  /** `GET /volumes/{name}`; undefined when there is no such volume. */
  inspectVolume(name: string, signal?: AbortSignal): Promise<VolumeInspect | undefined> {
    return unlessMissing(call(`inspect volume ${name}`, () => this.docker.getVolume(name).inspect(), signal));
  }

  /** `POST /volumes/create`: the volume `name` with its driver (`local` when absent), driver options and labels. */
  async createVolume(opts: { name: string; driver?: string; driverOpts?: Record<string, string>; labels?: Record<string, string> }): Promise<void> {
    await call(`create volume ${opts.name}`, () =>
      this.docker.createVolume({
        Name: opts.name,
        Driver: opts.driver ?? 'local',
        DriverOpts: opts.driverOpts ?? {},
        Labels: opts.labels ?? {},
      }),
    );
  }

  /** `DELETE /volumes/{name}`; NotFoundError when it is gone, ConflictError while a container uses it. */
  async removeVolume(name: string): Promise<void> {
    await call(`remove volume ${name}`, () => this.docker.getVolume(name).remove());
  }

  /** Volumes carrying the label `key` (any value): name and the label's value. */
  async volumesLabelled(key: string): Promise<Array<{ name: string; value: string }>> {
    const res = await call(`list volumes labelled ${key}`, () => this.docker.listVolumes({ filters: { label: [key] } }));
    return (res.Volumes ?? []).map((v) => ({ name: v.Name, value: (v.Labels as Record<string, string> | null)?.[key] ?? '' }));
  }

  /**
   * Containers, in any state, with the host paths each mounts: its bind mounts' sources
   * (`Mounts[].Source` of `GET /containers/json`), and the device of each local volume it mounts
   * that binds a host path (`type=none`, `o=bind`, `device=PATH`: how Compose binds a directory
   * through a volume). Containers that mount none are left out, and so are those labelled
   * `skipLabel` (any value). `running`: the container runs (or is paused) now.
   */
  async hostPathMounts(skipLabel?: string): Promise<Array<{ id: string; name: string; paths: string[]; running: boolean }>> {
    const [list, volumes] = await Promise.all([this.listContainers(), call('list volumes', () => this.docker.listVolumes())]);
    const device = new Map<string, string>();
    for (const v of volumes.Volumes ?? []) {
      const o = (v.Options as Record<string, string> | null) ?? {};
      if (v.Driver === 'local' && o.device && /(^|,)r?bind(,|$)/.test(o.o ?? '')) device.set(v.Name, o.device);
    }
    return list
      .filter((c) => !skipLabel || c.Labels?.[skipLabel] === undefined)
      .map((c) => ({
        id: c.Id,
        name: ownName(c.Names, c.Id),
        running: c.State === 'running' || c.State === 'paused',
        paths: (c.Mounts ?? []).flatMap((m) =>
          m.Type === 'bind' ? [m.Source] : m.Type === 'volume' && m.Name && device.has(m.Name) ? [device.get(m.Name)!] : [],
        ),
      }))
      .filter((c) => c.paths.length > 0);
  }

  /** The network with exactly this name or ID (the engine alone would also match an ID prefix); undefined when there is none. */
  async inspectNetwork(name: string, signal?: AbortSignal): Promise<NetworkInspect | undefined> {
    const net = await unlessMissing(call(`inspect network ${name}`, () => this.docker.getNetwork(name).inspect(), signal));
    return net && (net.Name === name || net.Id === name) ? net : undefined;
  }

  /** Creates a network (`POST /networks/create`); returns its ID. */
  async createNetwork(opts: Docker.NetworkCreateOptions): Promise<string> {
    const net = await call(`create network ${opts.Name}`, () => this.docker.createNetwork(opts));
    return net.id;
  }

  /** Removes a network by name or ID; NotFoundError when it is gone, ConflictError while a running container is on it. */
  async removeNetwork(idOrName: string): Promise<void> {
    await call(`remove network ${idOrName}`, () => this.docker.getNetwork(idOrName).remove());
  }

  /** Containers, in any state, attached to the network `id` (the engine's `network` filter of `GET /containers/json`). */
  async networkUsers(id: string): Promise<Array<{ id: string; name: string }>> {
    const list = await call(`list containers on network ${id}`, () => this.docker.listContainers({ all: true, filters: { network: [id] } }));
    return list.map((c) => ({ id: c.Id, name: ownName(c.Names, c.Id) }));
  }

  /** `POST /networks/{id}/connect`: attaches the container to the network with `endpoint` (aliases, addresses, …). */
  async connectNetwork(network: string, container: string, endpoint: EndpointSettings): Promise<void> {
    await call(`connect container ${container} to network ${network}`, () =>
      this.docker.getNetwork(network).connect({ Container: container, EndpointConfig: endpoint }),
    );
  }

  /** The IPv4 and IPv6 subnets of the engine's networks (IPAM Config), by network name. */
  async networkSubnets(signal?: AbortSignal): Promise<Array<{ network: string; subnet: string }>> {
    const list = await call('list networks', () => this.docker.listNetworks(), signal);
    return list.flatMap((n) =>
      ((n.IPAM?.Config ?? []) as Array<{ Subnet?: string }>).filter((c) => c.Subnet).map((c) => ({ network: n.Name, subnet: c.Subnet! })),
    );
  }
}
