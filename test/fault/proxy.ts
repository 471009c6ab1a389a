/**
 * A round-robin TCP load balancer on loopback, in front of one or more Node-RED instances, for the fault suite.
 *
 * Each client connection goes to the next backend in turn. When a backend refuses the connection (its process is
 * dead or restarting), the next one is tried, as a health-checked balancer would; when none accepts, the client's
 * connection is closed (the caller sees a network error and retries, as WeChat and CXone do). Connections already
 * open stay with their backend and break when it dies. Backends can be replaced while it runs (a restarted
 * Node-RED listens on a new port).
 */
import * as net from 'node:net';

export class RoundRobinProxy {
  private server: net.Server | null = null;
  private backends: number[];
  private next = 0;
  private readonly sockets = new Set<net.Socket>();
  /** Connections handed to each backend port. */
  readonly connections = new Map<number, number>();
  /** Connection attempts a backend refused (then the next one was tried). */
  refused = 0;
  port = 0;

  constructor(backends: number[] = []) {
    this.backends = [...backends];
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  setBackends(ports: number[]): void {
    this.backends = [...ports];
    this.next = 0;
  }

  async start(): Promise<string> {
    const server = net.createServer((client) => this.accept(client));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    this.server = server;
    this.port = (server.address() as net.AddressInfo).port;
    return this.url;
  }

  private accept(client: net.Socket): void {
    this.track(client);
    client.pause();
    const order = this.backends.map((_, i) => this.backends[(this.next + i) % this.backends.length]);
    this.next = this.backends.length ? (this.next + 1) % this.backends.length : 0;
    const tryNext = (i: number): void => {
      if (client.destroyed) return;
      if (i >= order.length) {
        client.destroy();
        return;
      }
      const port = order[i];
      const upstream = net.connect({ host: '127.0.0.1', port });
      let connected = false;
      upstream.once('connect', () => {
        connected = true;
        this.connections.set(port, (this.connections.get(port) ?? 0) + 1);
        this.track(upstream);
        upstream.setNoDelay(true);
        client.setNoDelay(true);
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
      });
      upstream.on('error', () => {
        if (!connected) {
          this.refused++;
          tryNext(i + 1);
        } else client.destroy();
      });
      upstream.on('close', () => client.destroy());
      client.on('close', () => upstream.destroy());
    };
    client.on('error', () => undefined);
    tryNext(0);
  }

  private track(s: net.Socket): void {
    this.sockets.add(s);
    s.on('close', () => this.sockets.delete(s));
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    for (const sock of this.sockets) sock.destroy();
    this.sockets.clear();
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}
