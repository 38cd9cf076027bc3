import { InputError } from './input-error.js';

/** One `port-map` entry: the host port a set's container published, and the host port it gets on this engine. */
export interface PortMapping {
  /** The host port in the set (1–65535). */
  from: number;
  /** Only bindings of this protocol; every protocol when absent. */
  protocol?: 'tcp' | 'udp' | 'sctp';
  /** The host port the restored container publishes instead (1–65535). */
  to: number;
}

export const PORT_MAP_FORMAT = 'HOSTPORT[/tcp|udp|sctp]=NEWHOSTPORT, like 8080=18080 or 53/udp=5353';

const ENTRY = /^(\d{1,5})(?:\/(tcp|udp|sctp))?=(\d{1,5})$/;

/**
 * The `port-map` input (or `--port-map` flag): List items `HOSTPORT[/PROTO]=NEWHOSTPORT`, the
 * `old=new` form `rename` uses. Each host port (and protocol) once. Throws InputError naming `name`.
 */
export function parsePortMap(items: string[], name: string): PortMapping[] {
  const out: PortMapping[] = [];
  for (const item of items) {
    const m = ENTRY.exec(item.replace(/\s+/g, ''));
    const [from, to] = m ? [Number(m[1]), Number(m[3])] : [0, 0];
    if (!m || from < 1 || from > 65535 || to < 1 || to > 65535)
      throw new InputError(`Invalid ${name} '${item}'. Expected ${PORT_MAP_FORMAT} (ports 1 to 65535).`);
    const protocol = m[2] as PortMapping['protocol'];
    const twice = out.find((p) => p.from === from && (!p.protocol || !protocol || p.protocol === protocol));
    if (twice) throw new InputError(`Invalid ${name} '${item}': host port ${from} is mapped twice. Expected each host port once.`);
    out.push({ from, to, ...(protocol ? { protocol } : {}) });
  }
  return out;
}
