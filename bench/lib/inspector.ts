/**
 * The V8 heap of the user worker's isolate, read through workerd's inspector (Chrome DevTools
 * protocol): JS heap used/total plus backingStorageSize (ArrayBuffers), and the WebAssembly
 * memories apart (`wasmMemoryBytes`): backingStorageSize does not count them, and the isolate's
 * 128 MB budget counts both.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';

/**
 * A minimal WebSocket client (text frames, RFC 6455), enough for the DevTools protocol: Node 20
 * has no WebSocket global without a flag, and the project does not depend on a WebSocket package.
 */
class MiniSocket {
  private buffer = Buffer.alloc(0);
  private fragments: Buffer[] = [];
  onMessage: (text: string) => void = () => {};

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.parse();
    });
    socket.on('error', () => {});
  }

  static open(url: string): Promise<MiniSocket> {
    const u = new URL(url);
    return new Promise((resolve, reject) => {
      const request = http.request({
        host: u.hostname,
        port: u.port,
        path: u.pathname + u.search,
        headers: {
          Connection: 'Upgrade',
          Upgrade: 'websocket',
          'Sec-WebSocket-Version': '13',
          'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
        },
      });
      request.on('upgrade', (_response, socket, head) => {
        const ws = new MiniSocket(socket);
        if (head.length) {
          ws.buffer = Buffer.from(head);
          ws.parse();
        }
        resolve(ws);
      });
      request.on('response', (response) => reject(new Error(`websocket upgrade refused: HTTP ${response.statusCode}`)));
      request.on('error', reject);
      request.end();
    });
  }

  send(text: string): void {
    const payload = Buffer.from(text);
    const mask = randomBytes(4);
    const n = payload.length;
    const header =
      n < 126
        ? Buffer.from([0x81, 0x80 | n])
        : n < 65536
          ? Buffer.from([0x81, 0x80 | 126, n >> 8, n & 255])
          : Buffer.concat([
              Buffer.from([0x81, 0x80 | 127]),
              (() => {
                const b = Buffer.alloc(8);
                b.writeBigUInt64BE(BigInt(n));
                return b;
              })(),
            ]);
    for (let i = 0; i < n; i++) payload[i] ^= mask[i & 3];
    this.socket.write(Buffer.concat([header, mask, payload]));
  }

  private parse(): void {
    while (this.buffer.length >= 2) {
      const fin = (this.buffer[0] & 0x80) !== 0;
      const opcode = this.buffer[0] & 0x0f;
      let length = this.buffer[1] & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (this.buffer.length < 4) return;
        length = this.buffer.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (this.buffer.length < 10) return;
        length = Number(this.buffer.readBigUInt64BE(2));
        offset = 10;
      }
      if (this.buffer.length < offset + length) return;
      const payload = this.buffer.subarray(offset, offset + length);
      this.buffer = this.buffer.subarray(offset + length);
      if (opcode === 0x8) {
        this.close();
        return;
      }
      if (opcode === 0x1 || opcode === 0x0) {
        this.fragments.push(Buffer.from(payload));
        if (fin) {
          const text = Buffer.concat(this.fragments).toString('utf8');
          this.fragments = [];
          this.onMessage(text);
        }
      }
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

export interface HeapUsage {
  usedSize: number;
  totalSize: number;
  backingStorageSize: number;
  embedderHeapUsedSize: number;
}

export class IsolateInspector {
  private id = 0;
  private readonly pending = new Map<number, (msg: any) => void>();

  /** Execution contexts announced after Runtime.enable (workerd has no default one for evaluate). */
  private readonly contexts: number[] = [];

  private constructor(private readonly ws: MiniSocket) {
    ws.onMessage = (data) => {
      const msg = JSON.parse(data);
      if (msg.method === 'Runtime.executionContextCreated') this.contexts.push(msg.params.context.id);
      const resolve = this.pending.get(msg.id);
      if (resolve) {
        this.pending.delete(msg.id);
        resolve(msg);
      }
    };
  }

  static async connect(port: number, target = 'core:user:'): Promise<IsolateInspector> {
    const list = (await (await fetch(`http://127.0.0.1:${port}/json`)).json()) as { id: string; webSocketDebuggerUrl: string }[];
    const entry = list.find((t) => t.id === target);
    if (!entry) throw new Error(`no inspector target ${target} (have ${list.map((t) => t.id).join(', ')})`);
    return new IsolateInspector(await MiniSocket.open(entry.webSocketDebuggerUrl));
  }

  call(method: string, params: object = {}): Promise<any> {
    const id = ++this.id;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`inspector ${method} timed out`)), 60_000);
      this.pending.set(id, (msg) => {
        clearTimeout(timer);
        if (msg.error) reject(new Error(`inspector ${method}: ${msg.error.message}`));
        else resolve(msg.result);
      });
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }

  /**
   * Heap usage as V8 reports it, after a full garbage collection when `gc` (what stays resident).
   * workerd's inspector does not answer HeapProfiler.collectGarbage, but taking a heap snapshot
   * collects garbage first; the snapshot's chunks arrive as events and are dropped.
   */
  async heap(gc = true): Promise<HeapUsage> {
    if (gc) await this.call('HeapProfiler.takeHeapSnapshot', { reportProgress: false });
    return (await this.call('Runtime.getHeapUsage')) as HeapUsage;
  }

  /**
   * The byte length of every live WebAssembly.Memory in the isolate (onnxruntime-web's heap), found
   * with Runtime.queryObjects on WebAssembly.Memory.prototype. Read directly because V8's
   * backingStorageSize does not follow a wasm memory as it grows (a 178 MB graph loaded, and
   * used + ArrayBuffers stayed at 23 MiB), and the memory is what the 128 MB limit counts most.
   */
  async wasmMemoryBytes(): Promise<number[]> {
    if (!this.contexts.length) await this.call('Runtime.enable');
    const contextId = this.contexts[this.contexts.length - 1];
    const proto = await this.call('Runtime.evaluate', { expression: 'WebAssembly.Memory.prototype', ...(contextId ? { contextId } : {}) });
    const protoId = proto?.result?.objectId as string | undefined;
    if (!protoId) throw new Error(`no WebAssembly.Memory.prototype: ${JSON.stringify(proto).slice(0, 200)}`);
    const found = await this.call('Runtime.queryObjects', { prototypeObjectId: protoId });
    const arrayId = found?.objects?.objectId as string | undefined;
    if (!arrayId) return [];
    const lengths = await this.call('Runtime.callFunctionOn', {
      objectId: arrayId,
      functionDeclaration: 'function () { return this.map((m) => m.buffer.byteLength); }',
      returnByValue: true,
    });
    await this.call('Runtime.releaseObject', { objectId: arrayId }).catch(() => {});
    await this.call('Runtime.releaseObject', { objectId: protoId }).catch(() => {});
    return (lengths?.result?.value ?? []) as number[];
  }

  close(): void {
    this.ws.close();
  }
}

/** The isolate heap of a worker launched with an inspector (after a full GC unless `gc` is false); null when it cannot be read. */
export async function heapOf(w: { inspectorPort: number | null }, gc = true): Promise<HeapUsage | null> {
  if (!w.inspectorPort) return null;
  const inspector = await IsolateInspector.connect(w.inspectorPort).catch(() => null);
  if (!inspector) return null;
  try {
    return await inspector.heap(gc);
  } catch {
    return null;
  } finally {
    inspector.close();
  }
}
