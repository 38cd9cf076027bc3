import { Agent, type AgentOptions } from 'node:http';
import { connect as tcpConnect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import ssh2 from 'ssh2';

/** Where and as whom to reach an engine over SSH; keys come from the SSH agent at `agent` (SSH_AUTH_SOCK). */
export interface SshTarget {
  host: string;
  port: number;
  username?: string;
  /** The SSH agent's socket path. */
  agent: string;
}

/** The SSH server took none of the agent's keys: said without them (the engine client reports `EACCES` as unreachable). */
function refused({ host, port, username }: SshTarget): Error {
  const error = new Error(`SSH authentication as ${username ?? 'the current user'} on ${host}:${port} failed: the server accepted none of the keys of the SSH agent (SSH_AUTH_SOCK)`);
  return Object.assign(error, { code: 'EACCES' });
}

/** The socket methods Node's http.Agent calls on a kept-alive connection, which an ssh2 channel lacks. */
type ChannelSocket = Duplex & Partial<Pick<Socket, 'setKeepAlive' | 'setNoDelay' | 'setTimeout' | 'ref' | 'unref'>>;

/**
 * An http.Agent that carries every Engine API call of a run over one SSH connection: each HTTP
 * connection is a channel running `docker system dial-stdio` on the remote host (as the docker
 * CLI does), kept alive for the next call. docker-modem 5's own ssh transport opens one SSH
 * connection per call instead. The SSH connection is opened on first use and again after it
 * drops; it keeps the process alive only while a call is in flight, and `close()` ends it.
 * Errors carry ssh2's message (never a key: keys stay in the SSH agent).
 */
export class SshAgent extends Agent {
  /** Agents whose SSH connection may be open: those left are closed once the process has nothing else to do. */
  private static readonly open = new Set<SshAgent>();

  private client?: Promise<ssh2.Client>;
  private tcp?: Socket;
  /** Channels with a call in flight: the SSH connection keeps the process alive while there are any. */
  private busy = 0;

  constructor(
    private readonly target: SshTarget,
    options: AgentOptions = {},
  ) {
    super({ keepAlive: true, ...options });
    if (SshAgent.open.size === 0) process.once('beforeExit', () => [...SshAgent.open].forEach((a) => a.close()));
    SshAgent.open.add(this);
  }

  /** Called by http.Agent for each new HTTP connection: opens a channel on the one SSH connection. */
  override createConnection(_options: unknown, done: (err: Error | null, socket?: Duplex) => void): undefined {
    this.connected().then(
      (client) =>
        client.exec('docker system dial-stdio', (err, channel) => {
          if (err) return done(err);
          done(null, this.asSocket(channel));
        }),
      (err: Error) => done(err),
    );
    return undefined;
  }

  /** Ends the SSH connection and every channel on it. */
  close(): void {
    SshAgent.open.delete(this);
    this.destroy();
    const client = this.client;
    this.client = undefined;
    void client?.then((c) => c.end(), () => undefined);
    this.tcp?.destroy();
  }

  private connected(): Promise<ssh2.Client> {
    this.client ??= new Promise<ssh2.Client>((resolve, reject) => {
      const { host, port, username, agent } = this.target;
      // Without Nagle: small requests on kept-alive channels would wait on the server's delayed ACKs (~40 ms a call).
      const tcp = tcpConnect({ host, port, noDelay: true });
      this.tcp = tcp;
      const client = new ssh2.Client();
      const forget = () => {
        if (this.tcp === tcp) [this.client, this.tcp] = [undefined, undefined];
      };
      client
        .once('ready', () => resolve(client))
        .once('error', (err: Error & { level?: string; code?: string }) => {
          forget();
          reject(err.level === 'client-authentication' ? refused(this.target) : err);
        })
        .once('close', forget);
      client.connect({ sock: tcp, host, port, username, agent });
    });
    return this.client;
  }

  /** The channel, with the socket methods http.Agent calls; `ref`/`unref` say whether a call is in flight on it. */
  private asSocket(channel: ssh2.ClientChannel): ChannelSocket {
    const socket = channel as ChannelSocket;
    const tcp = this.tcp;
    let active = false;
    const mark = (on: boolean) => {
      if (on === active) return;
      active = on;
      this.busy += on ? 1 : -1;
      if (this.busy === 0) tcp?.unref();
      else tcp?.ref();
    };
    mark(true);
    socket.ref = () => (mark(true), socket as Socket);
    socket.unref = () => (mark(false), socket as Socket);
    socket.setKeepAlive = () => socket as Socket;
    socket.setNoDelay = () => socket as Socket;
    socket.setTimeout ??= () => socket as Socket;
    channel.once('close', () => mark(false));
    return socket;
  }
}
