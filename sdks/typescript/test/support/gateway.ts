// Starts the real local gateway binary (auditline-local) for a test, and stops it.

import { spawn, type ChildProcess } from "node:child_process";
import { createHmac } from "node:crypto";
import { existsSync } from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
/** sdks/typescript (tests run from .test-build/test/support). */
export const PACKAGE_DIR = path.resolve(here, "../../..");
export const REPO_DIR = path.resolve(PACKAGE_DIR, "../..");

export const GATEWAY_BINARY = process.env["AUDITLINE_GATEWAY"] ?? path.join(REPO_DIR, "target/debug/auditline-local");

/** Fails loudly (never skips) when the binary is not there. */
export function requireGatewayBinary(): string {
  if (!existsSync(GATEWAY_BINARY)) {
    throw new Error(
      `the gateway binary ${GATEWAY_BINARY} does not exist: build it (cargo build -p auditline-local) or set AUDITLINE_GATEWAY`,
    );
  }
  return GATEWAY_BINARY;
}

/** Gateways still running: killed when the test process exits, however it exits short of SIGKILL. */
const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

/** A loopback port nothing listens on (at the time of asking). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address() as net.AddressInfo;
      server.close(() => resolve(address.port));
    });
  });
}

export interface GatewayOptions {
  /** Keep the trail in this directory (SQLite) instead of in memory. */
  dataDir?: string;
  port?: number;
  env?: Record<string, string>;
}

export class Gateway {
  readonly url: string;
  readonly port: number;
  readonly apiKey: string;
  readonly token: string;
  private readonly child: ChildProcess;
  private readonly output: { text: string };
  private readonly exited: Promise<number | null>;

  private constructor(
    child: ChildProcess,
    port: number,
    apiKey: string,
    token: string,
    output: { text: string },
    exited: Promise<number | null>,
  ) {
    this.child = child;
    this.port = port;
    this.url = `http://127.0.0.1:${port}`;
    this.apiKey = apiKey;
    this.token = token;
    this.output = output;
    this.exited = exited;
  }

  static async start(options: GatewayOptions = {}): Promise<Gateway> {
    const binary = requireGatewayBinary();
    const port = options.port ?? (await freePort());
    const args = ["--port", String(port), "--host", "127.0.0.1"];
    if (options.dataDir) args.push("--data-dir", options.dataDir);
    else args.push("--memory");
    const child = spawn(binary, args, {
      env: { ...process.env, RUST_LOG: "warn", ...options.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    live.add(child);
    child.on("exit", () => live.delete(child));
    const output = { text: "" };
    const keep = (chunk: Buffer) => {
      output.text = (output.text + chunk.toString("utf8")).slice(-65_536);
    };
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    const deadline = Date.now() + 30_000;
    let apiKey: string | undefined;
    let token: string | undefined;
    while (Date.now() < deadline) {
      apiKey ??= /^ {2}api key +(\S+)/m.exec(output.text)?.[1];
      token ??= /^ {2}token +(ey\S+)/m.exec(output.text)?.[1];
      if (child.exitCode !== null) break;
      const mintsNoToken = options.env?.["JWT_SECRET"] !== undefined;
      if (apiKey && (token || mintsNoToken) && (await healthy(port))) {
        return new Gateway(child, port, apiKey, token ?? "", output, exited);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill("SIGKILL");
    throw new Error(`the gateway did not start (${binary} ${args.join(" ")}):\n${output.text}`);
  }

  get pid(): number {
    return this.child.pid!;
  }

  get log(): string {
    return this.output.text;
  }

  /** A clean stop (SIGTERM), as a service manager stops it. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 10_000);
    await this.exited;
    clearTimeout(timer);
  }

  /** A crash (SIGKILL). */
  async kill(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill("SIGKILL");
    await this.exited;
  }
}

async function healthy(port: number): Promise<boolean> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/audit/health`, { signal: AbortSignal.timeout(1000) });
    await response.text();
    return response.status === 200;
  } catch {
    return false;
  }
}

/** Every entry of the tenant, read through the gateway directly (no SDK), newest first. */
export async function readAll(gateway: Gateway, query: Record<string, string> = {}): Promise<Array<Record<string, unknown>>> {
  const entries: Array<Record<string, unknown>> = [];
  let nextToken: string | undefined;
  do {
    const params = new URLSearchParams({ limit: "1000", ...query });
    if (nextToken) params.set("next_token", nextToken);
    const response = await fetch(`${gateway.url}/audit/logs?${params}`, { headers: { "x-api-key": gateway.apiKey } });
    const text = await response.text();
    if (response.status !== 200) throw new Error(`GET /audit/logs: ${response.status} ${text}`);
    const page = JSON.parse(text) as { entries: Array<Record<string, unknown>>; next_token: string | null };
    entries.push(...page.entries);
    nextToken = page.next_token ?? undefined;
  } while (nextToken);
  return entries;
}

/** How often each entity id of a run occurs in the trail. */
export async function countByEntity(gateway: Gateway, prefix: string): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const entry of await readAll(gateway)) {
    const id = entry["entity_id"] as string;
    if (id.startsWith(prefix)) counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

export async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** An HS256 JWT for tenant `local`, for a gateway started with JWT_SECRET. */
export function mintToken(secret: string, claims: { sub: string; scope: string; expiresIn?: number }): string {
  const now = Math.floor(Date.now() / 1000);
  const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const header = encode({ alg: "HS256", typ: "JWT" });
  const payload = encode({
    sub: claims.sub,
    scope: claims.scope,
    tenant_id: "local",
    iat: now,
    exp: now + (claims.expiresIn ?? 3600),
  });
  const signature = createHmac("sha256", secret).update(`${header}.${payload}`).digest("base64url");
  return `${header}.${payload}.${signature}`;
}
