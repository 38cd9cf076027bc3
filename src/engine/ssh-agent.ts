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
  const error = new Error(
    `SSH authentication as ${username ?? 'the current user'} on ${host}:${port} failed: the server accepted none of the keys of the SSH agent (SSH_AUTH_SOCK)`,
  );
  return Object.assign(error, { code: 'EACCES' });
}

/** The socket methods Node's http.Agent calls on a kept-alive connection, which an ssh2 channel lacks. */
type ChannelSocket = Duplex & Partial<Pick<Socket, 'setKeepAlive' | 'setNoDelay' | 'setTimeout' | 'ref' | 'unref'>>;

/**
 * Channels one SSH connection carries at most: OpenSSH's sshd allows 10 sessions a connection
 * (`MaxSessions`), and refuses more.
 */
export const CHANNELS_PER_CONNECTION = 8;

/** One SSH connection: its channels (open, and with a call in flight). */
interface Connection {
  client: Promise<ssh2.Client>;
  tcp: Socket;
  channels: number;
  busy: number;
}

/**
 * An http.Agent that carries a run's Engine API calls over one SSH connection: each HTTP
 * connection is a channel running `docker system dial-stdio` on the remote host (as the docker
 * CLI does), kept alive for the next call. docker-modem 5's own ssh transport opens one SSH
 * connection per call instead. More than `CHANNELS_PER_CONNECTION` calls at once open another
 * SSH connection. A connection is opened on first use and again after it drops; it keeps the
 * process alive only while a call is in flight on it, and `close()` ends them all. Errors carry
 * ssh2's message, or one line for refused keys (never a key: keys stay in the SSH agent).
 */
export class SshAgent extends Agent {
  /** Agents whose SSH connections may be open: those left are closed once the process has nothing else to do. */
  private static readonly open = new Set<SshAgent>();

  private readonly connections = new Set<Connection>();

  constructor(
    private readonly target: SshTarget,
    options: AgentOptions = {},
  ) {
    super({ keepAlive: true, ...options });
    if (SshAgent.open.size === 0) process.once('beforeExit', () => [...SshAgent.open].forEach((a) => a.close()));
    SshAgent.open.add(this);
  }

  /** Called by http.Agent for each new HTTP connection: opens a channel on an SSH connection with room for it. */
  override createConnection(_options: unknown, done: (err: Error | null, socket?: Duplex) => void): undefined {
    let conn: Connection;
    try {
      conn = this.withRoom();
    } catch (err) {
      // No client could be made (in dist/, ssh2 is read on first use: a bundle missing or broken): this call fails, it does not wait.
      done(err as Error);
      return undefined;
    }
    conn.channels++;
    const fail = (err: Error) => {
      conn.channels--;
      done(err);
    };
    conn.client.then(
      (client) =>
        client.exec('docker system dial-stdio', (err, channel) => {
          if (err) return fail(err);
          done(null, this.asSocket(conn, channel));
        }),
      fail,
    );
    return undefined;
  }

  /** Ends every SSH connection and the channels on them. */
  close(): void {
    SshAgent.open.delete(this);
    this.destroy();
    for (const conn of this.connections) {
      void conn.client.then(
        (c) => c.end(),
        () => undefined,
      );
      conn.tcp.destroy();
    }
    this.connections.clear();
  }

  private withRoom(): Connection {
    for (const conn of this.connections) if (conn.channels < CHANNELS_PER_CONNECTION) return conn;
    const { host, port, username, agent } = this.target;
    // Made first: when it throws, no socket is left open.
    const client = new ssh2.Client();
    // Without Nagle: small requests on kept-alive channels would wait on the server's delayed ACKs (~40 ms a call).
    const tcp = tcpConnect({ host, port, noDelay: true });
    const conn: Connection = {
      tcp,
      channels: 0,
      busy: 0,
      client: new Promise<ssh2.Client>((resolve, reject) => {
        client
          .once('ready', () => resolve(client))
          .once('error', (err: Error & { level?: string }) => {
            this.connections.delete(conn);
            reject(err.level === 'client-authentication' ? refused(this.target) : err);
          })
          .once('close', () => this.connections.delete(conn));
        client.connect({ sock: tcp, host, port, username, agent });
      }),
    };
    this.connections.add(conn);
    return conn;
  }

  /** The channel, with the socket methods http.Agent calls; `ref`/`unref` say whether a call is in flight on it. */
  private asSocket(conn: Connection, channel: ssh2.ClientChannel): ChannelSocket {
    const socket = channel as ChannelSocket;
    let active = false;
    const mark = (on: boolean) => {
      if (on === active) return;
      active = on;
      conn.busy += on ? 1 : -1;
      if (conn.busy === 0) conn.tcp.unref();
      else conn.tcp.ref();
    };
    mark(true);
    socket.ref = () => (mark(true), socket as Socket);
    socket.unref = () => (mark(false), socket as Socket);
    socket.setKeepAlive = () => socket as Socket;
    socket.setNoDelay = () => socket as Socket;
    socket.setTimeout ??= () => socket as Socket;
    channel.once('close', () => {
      mark(false);
      conn.channels--;
    });
    return socket;
  }
}
