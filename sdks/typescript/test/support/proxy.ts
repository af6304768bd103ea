// Proxies that stand between the SDK and the gateway in the drills.

import * as http from "node:http";
import * as net from "node:net";

export interface FaultOptions {
  /** Share of requests answered 503 without reaching the gateway. */
  unavailable: number;
  /** Share of requests forwarded, answered by the gateway, and then cut (nothing or part sent back). */
  cut: number;
  /** Share of requests forwarded, answered by the gateway, and answered late (after `lateMs`). */
  late: number;
  lateMs: number;
  /** Answer every forwarded request never (hold the socket) while true. */
  hold?: boolean;
  /** While true, every POST is refused as the authorizer refuses a credential: 403 {"message":"Forbidden"}. */
  forbidden?: boolean;
}

/**
 * An HTTP proxy that fails requests: 503s (with Retry-After 0 or 1) before the gateway sees them,
 * and cut or late answers after the gateway has done the work.
 */
export class FaultProxy {
  readonly counts = { requests: 0, unavailable: 0, cut: 0, late: 0, forwarded: 0, held: 0, posts: 0, forbidden: 0 };
  private readonly server: http.Server;
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  private readonly upstream: URL;
  faults: FaultOptions;
  private readonly sockets = new Set<net.Socket>();
  port = 0;

  constructor(upstream: string, faults: FaultOptions) {
    this.upstream = new URL(upstream);
    this.faults = faults;
    this.server = http.createServer((req, res) => this.handle(req, res));
    this.server.on("connection", (socket) => {
      this.sockets.add(socket);
      socket.on("close", () => this.sockets.delete(socket));
    });
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(port = 0): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(port, "127.0.0.1", resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.agent.destroy();
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      this.counts.requests++;
      if (req.method === "POST") this.counts.posts++;
      const body = Buffer.concat(chunks);
      const roll = Math.random();
      const f = this.faults;
      if (f.forbidden && req.method === "POST") {
        this.counts.forbidden++;
        const text = '{"message":"Forbidden"}';
        res.writeHead(403, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
        res.end(text);
        return;
      }
      if (!f.hold && roll < f.unavailable) {
        this.counts.unavailable++;
        const text = JSON.stringify({
          error: { code: "unavailable", message: "injected by the test proxy", request_id: "proxy" },
        });
        res.writeHead(503, {
          "content-type": "application/json",
          "retry-after": Math.random() < 0.9 ? "0" : "1",
          "content-length": Buffer.byteLength(text),
        });
        res.end(text);
        return;
      }
      this.forward(req, body, (status, headers, answer) => {
        this.counts.forwarded++;
        if (f.hold) {
          this.counts.held++;
          return; // never answered: the client times out or dies
        }
        const r = roll - f.unavailable;
        if (r >= 0 && r < f.cut) {
          this.counts.cut++;
          if (Math.random() < 0.5) {
            req.socket.destroy();
          } else {
            res.writeHead(status, { ...headers, "content-length": answer.length });
            res.write(answer.subarray(0, Math.floor(answer.length / 2)));
            setTimeout(() => req.socket.destroy(), 5);
          }
          return;
        }
        if (r >= f.cut && r < f.cut + f.late) {
          this.counts.late++;
          setTimeout(() => {
            if (!res.destroyed) {
              res.writeHead(status, { ...headers, "content-length": answer.length });
              res.end(answer);
            }
          }, f.lateMs);
          return;
        }
        res.writeHead(status, { ...headers, "content-length": answer.length });
        res.end(answer);
      }, () => {
        res.writeHead(502);
        res.end();
      });
    });
  }

  private forward(
    req: http.IncomingMessage,
    body: Buffer,
    done: (status: number, headers: http.OutgoingHttpHeaders, body: Buffer) => void,
    failed: () => void,
  ): void {
    const headers = { ...req.headers, host: this.upstream.host };
    delete headers["connection"];
    const upstream = http.request(
      {
        host: this.upstream.hostname,
        port: this.upstream.port,
        method: req.method,
        path: req.url,
        headers,
        agent: this.agent,
      },
      (response) => {
        const parts: Buffer[] = [];
        response.on("data", (c: Buffer) => parts.push(c));
        response.on("end", () => {
          const out: http.OutgoingHttpHeaders = {};
          for (const [name, value] of Object.entries(response.headers)) {
            if (name !== "content-length" && name !== "connection" && name !== "transfer-encoding") out[name] = value;
          }
          done(response.statusCode ?? 502, out, Buffer.concat(parts));
        });
      },
    );
    upstream.on("error", failed);
    upstream.end(body);
  }
}

/** A TCP proxy whose connections can be cut at will, and which can refuse connections for a while. */
export class TcpProxy {
  private readonly server: net.Server;
  private readonly pairs = new Set<net.Socket>();
  /** Client connections that opened a WebSocket (their first bytes are `GET /ws`). */
  private readonly webSockets = new Set<net.Socket>();
  private refusingUntil = 0;
  port = 0;
  drops = 0;

  constructor(private readonly upstreamPort: number) {
    this.server = net.createServer((client) => {
      if (Date.now() < this.refusingUntil) {
        client.destroy();
        return;
      }
      const upstream = net.connect(this.upstreamPort, "127.0.0.1");
      this.pairs.add(client);
      this.pairs.add(upstream);
      const end = () => {
        client.destroy();
        upstream.destroy();
        this.pairs.delete(client);
        this.pairs.delete(upstream);
      };
      client.on("error", end);
      upstream.on("error", end);
      client.on("close", end);
      upstream.on("close", end);
      client.once("data", (first: Buffer) => {
        if (first.toString("latin1", 0, 7) === "GET /ws") {
          this.webSockets.add(client);
          client.on("close", () => this.webSockets.delete(client));
        }
      });
      client.pipe(upstream);
      upstream.pipe(client);
    });
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this;
  }

  /** WebSocket connections open through the proxy. */
  get openWebSockets(): number {
    return this.webSockets.size;
  }

  /** Cuts every open connection (a network failure), and refuses new ones for `refuseMs`. */
  dropAll(refuseMs = 0): void {
    this.drops++;
    this.refusingUntil = Date.now() + refuseMs;
    for (const socket of [...this.pairs]) socket.destroy();
    this.pairs.clear();
    this.webSockets.clear();
  }

  async close(): Promise<void> {
    this.dropAll();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
