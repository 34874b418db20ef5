/** Shared test helpers: recorded sessions (test/tls/data/*.json) and a recording harness. */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AnomalySink, EcsFields, EndReason, EventSink, FlowCounters, FlowInfo, Timestamp } from '../../src/types.js';
import { Dir } from '../../src/types.js';
import { SecretsStore } from '../../src/tls/crypto/keylog.js';
import { loadRsaKeyFile, type RsaServerKey } from '../../src/tls/crypto/rsa.js';
import { SessionCache, TlsFlowHandler, type AppStream, type TlsContext, type TlsInfo, type TlsOptions } from '../../src/tls/session.js';

export const DATA = join(dirname(fileURLToPath(import.meta.url)), 'data');

export interface Chunk {
  dir: Dir;
  data: Buffer;
}

export interface RecordedSession {
  description: string;
  chunks: Chunk[];
  keylog: string;
  request: string;
  response: string;
}

export function loadSession(name: string): RecordedSession {
  const j = JSON.parse(readFileSync(join(DATA, name + '.json'), 'utf8')) as {
    description: string;
    chunks: { dir: number; hex: string }[];
    keylog: string;
    request: string;
    response: string;
  };
  return {
    description: j.description,
    chunks: j.chunks.map((c) => ({ dir: c.dir === 1 ? Dir.ToClient : Dir.ToServer, data: Buffer.from(c.hex, 'hex') })),
    keylog: j.keylog,
    request: j.request,
    response: j.response,
  };
}

/** The whole byte stream of one direction. */
export function streamOf(s: RecordedSession, dir: Dir): Buffer {
  return Buffer.concat(s.chunks.filter((c) => c.dir === dir).map((c) => c.data));
}

export function rsaKeys(): RsaServerKey[] {
  return loadRsaKeyFile(join(DATA, 'server.key'));
}

export class Anomalies implements AnomalySink {
  readonly codes: string[] = [];
  readonly details: (string | undefined)[] = [];
  anomaly(code: string, detail?: string): void {
    this.codes.push(code);
    this.details.push(detail);
  }
  count(code: string): number {
    return this.codes.filter((c) => c === code).length;
  }
}

export interface Emitted {
  dataset: string;
  fields: EcsFields;
  ts: Timestamp;
  decrypted: boolean;
}

/** Collects what a TlsFlowHandler hands to its analyzer and to the event sink. */
export class Harness {
  readonly anomalies = new Anomalies();
  readonly events: Emitted[] = [];
  readonly data: [Buffer[], Buffer[]] = [[], []];
  readonly gaps: [number[], number[]] = [[], []];
  readonly ends: Dir[] = [];
  appsCreated = 0;
  appInfo: TlsInfo | undefined;
  closedApps = 0;
  readonly handler: TlsFlowHandler;
  readonly ctx: TlsContext;

  constructor(opts: { keylog?: string; rsa?: RsaServerKey[]; cache?: SessionCache; options?: Partial<TlsOptions>; secrets?: SecretsStore } = {}) {
    const secrets = opts.secrets ?? new SecretsStore();
    if (opts.keylog) secrets.addText(opts.keylog);
    this.ctx = { secrets, rsaKeys: opts.rsa ?? [], sessionCache: opts.cache ?? new SessionCache(), anomalies: this.anomalies, options: opts.options };
    const sink: EventSink = { emit: (dataset, fields, ts, decrypted) => this.events.push({ dataset, fields, ts, decrypted }) };
    this.handler = new TlsFlowHandler(FLOW, this.ctx, sink, (info) => {
      this.appsCreated++;
      this.appInfo = { ...info };
      const app: AppStream = {
        onData: (dir, data) => this.data[dir].push(Buffer.from(data)),
        onGap: (dir, length) => this.gaps[dir].push(length),
        onEnd: (dir) => this.ends.push(dir),
        onClose: () => this.closedApps++,
      };
      return app;
    });
  }

  text(dir: Dir): string {
    return Buffer.concat(this.data[dir]).toString('latin1');
  }

  feed(chunks: Chunk[], split?: (c: Chunk) => Buffer[]): this {
    let i = 0;
    for (const c of chunks) {
      const parts = split ? split(c) : [c.data];
      for (const p of parts) this.handler.onData(c.dir, p, { sec: 1000 + i++, nsec: 0 });
    }
    return this;
  }

  close(reason: EndReason = 'fin'): Emitted {
    this.handler.onEnd(Dir.ToServer, reason, { sec: 2000, nsec: 0 });
    this.handler.onEnd(Dir.ToClient, reason, { sec: 2000, nsec: 0 });
    this.handler.onClose(reason, COUNTERS, { sec: 2001, nsec: 0 });
    return this.events[this.events.length - 1];
  }
}

export const FLOW: FlowInfo = {
  id: 1,
  clientIp: '127.0.0.1',
  clientPort: 40000,
  serverIp: '127.0.0.1',
  serverPort: 443,
  ipVersion: 4,
  start: { sec: 1000, nsec: 0 },
  rolesFromHandshake: true,
  communityId: '1:test',
};

export const COUNTERS: FlowCounters = { clientBytes: 111, serverBytes: 222, clientPackets: 3, serverPackets: 4, gapBytes: 0, last: { sec: 2000, nsec: 0 } };

/** Splits a byte string into records (header + fragment) for tests that work record-wise. */
export function splitRecords(stream: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  while (off + 5 <= stream.length) {
    const len = stream.readUInt16BE(off + 3);
    out.push(stream.subarray(off, off + 5 + len));
    off += 5 + len;
  }
  return out;
}

/** Byte offset of record `index` in a direction's stream, and its total length. */
export function recordRange(stream: Buffer, index: number): [number, number] {
  let off = 0;
  for (let i = 0; off + 5 <= stream.length; i++) {
    const total = 5 + stream.readUInt16BE(off + 3);
    if (i === index) return [off, off + total];
    off += total;
  }
  throw new Error('no such record');
}

/**
 * Feeds the recorded chunks in their original order, but replaces the stream bytes
 * [holeStart, holeEnd) of direction `dir` by an onGap call (as TCP reassembly reports loss).
 */
export function feedWithHole(h: Harness, chunks: Chunk[], dir: Dir, holeStart: number, holeEnd: number): void {
  let off = 0;
  let t = 0;
  const ts = () => ({ sec: 1000 + t++, nsec: 0 });
  for (const c of chunks) {
    if (c.dir !== dir) {
      h.handler.onData(c.dir, c.data, ts());
      continue;
    }
    const start = off;
    const end = off + c.data.length;
    off = end;
    const a = Math.max(start, holeStart);
    const b = Math.min(end, holeEnd);
    if (a >= b) {
      h.handler.onData(c.dir, c.data, ts());
      continue;
    }
    if (a > start) h.handler.onData(c.dir, c.data.subarray(0, a - start), ts());
    h.handler.onGap(c.dir, b - a, ts());
    if (end > b) h.handler.onData(c.dir, c.data.subarray(b - start), ts());
  }
}
