/**
 * A fault-injecting HTTP proxy in front of an S3 server (s3rver), for the origin failure tests.
 * Faults are deterministic, set by the test: "the next N requests matching X" (optionally after
 * letting M of them through), never random. It forwards requests unchanged, Host header included,
 * so SigV4 signatures made for the proxy's address still verify upstream.
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type Fault =
  /** Holds the request this long before forwarding it (a slow or hung origin). */
  | { kind: 'latency'; ms: number }
  /** Answers this status with an S3-style error body. */
  | { kind: 'status'; status: number }
  /** Forwards the request, sends the full Content-Length but half the body, then drops the connection. */
  | { kind: 'truncate' }
  /** Drops the connection without answering. */
  | { kind: 'reset' };

export interface FaultRule {
  /** Tested against `${method} ${path}`; the path holds the bucket, the key and the query. */
  match: RegExp;
  fault: Fault;
  /** Matching requests still to be let through before the fault applies. */
  skip: number;
  /** Matching requests the fault applies to (Infinity: all). */
  times: number;
  /** Requests faulted so far. */
  hits: number;
}

export interface ProxiedRequest {
  method: string;
  path: string;
  range: string | undefined;
  /** The fault applied to it, if any. */
  fault: Fault['kind'] | undefined;
}

export class FaultProxy {
  /** Every request that reached the proxy, in order of arrival. */
  readonly log: ProxiedRequest[] = [];
  private rules: FaultRule[] = [];
  private readonly sockets = new Set<Socket>();
  private readonly server: http.Server;
  private port = 0;

  private constructor(private readonly upstream: URL) {
    this.server = http.createServer((request, response) => this.handle(request, response));
    this.server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  /** A proxy on a free loopback port in front of `upstream` (e.g. http://127.0.0.1:4568). */
  static async start(upstream: string): Promise<FaultProxy> {
    const proxy = new FaultProxy(new URL(upstream));
    await proxy.up();
    return proxy;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Applies `fault` to the next `times` requests matching `match`, after letting `skip` of them through. */
  inject(match: RegExp, fault: Fault, { times = 1, skip = 0 }: { times?: number; skip?: number } = {}): FaultRule {
    const rule: FaultRule = { match, fault, skip, times, hits: 0 };
    this.rules.push(rule);
    return rule;
  }

  /** Removes every rule. */
  clear(): void {
    this.rules = [];
  }

  /** The origin goes fully down: open connections are dropped and new ones refused. */
  async down(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  /** Listens again, on the same port as before. */
  up(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.port, '127.0.0.1', () => {
        this.server.off('error', reject);
        this.port = (this.server.address() as AddressInfo).port;
        resolve();
      });
    });
  }

  close(): Promise<void> {
    return this.server.listening ? this.down() : Promise.resolve();
  }

  private faultFor(method: string, path: string): Fault | undefined {
    const line = `${method} ${path}`;
    const rule = this.rules.find((r) => r.hits < r.times && r.match.test(line));
    if (!rule) return undefined;
    if (rule.skip > 0) {
      rule.skip--;
      return undefined;
    }
    rule.hits++;
    return rule.fault;
  }

  private handle(request: http.IncomingMessage, response: http.ServerResponse): void {
    const method = request.method ?? 'GET';
    const path = request.url ?? '/';
    const fault = this.faultFor(method, path);
    this.log.push({ method, path, range: request.headers.range, fault: fault?.kind });
    switch (fault?.kind) {
      case 'reset':
        request.socket.destroy();
        return;
      case 'status':
        request.resume();
        response.writeHead(fault.status, { 'content-type': 'application/xml' });
        response.end(
          `<?xml version="1.0" encoding="UTF-8"?><Error><Code>Injected${fault.status}</Code><Message>injected fault</Message></Error>`,
        );
        return;
      case 'latency': {
        const timer = setTimeout(() => this.forward(request, response, false), fault.ms);
        // The client gave up (a timed-out attempt): nothing to forward any more.
        response.on('close', () => clearTimeout(timer));
        return;
      }
      default:
        this.forward(request, response, fault?.kind === 'truncate');
    }
  }

  private forward(request: http.IncomingMessage, response: http.ServerResponse, truncate: boolean): void {
    if (response.destroyed) return;
    const upstream = http.request(
      {
        host: this.upstream.hostname,
        port: this.upstream.port,
        method: request.method,
        path: request.url,
        headers: request.headers,
        agent: false,
      },
      (answer) => {
        if (!truncate) {
          response.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(response);
          return;
        }
        const chunks: Buffer[] = [];
        answer.on('data', (chunk: Buffer) => chunks.push(chunk));
        answer.on('end', () => {
          const body = Buffer.concat(chunks);
          const { 'transfer-encoding': _, ...headers } = answer.headers;
          response.writeHead(answer.statusCode ?? 502, { ...headers, 'content-length': String(body.length) });
          response.write(body.subarray(0, Math.floor(body.length / 2)), () => response.socket?.destroy());
        });
      },
    );
    upstream.on('error', () => response.socket?.destroy());
    request.pipe(upstream);
  }
}
