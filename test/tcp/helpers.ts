import type {
  AnomalySink,
  DecodedPacket,
  Dir,
  EndReason,
  FlowCounters,
  FlowHandler,
  FlowInfo,
  Timestamp,
} from '../../src/types.js';
import { TcpFlowTable, type TcpOptions } from '../../src/tcp/index.js';

export const FIN = 0x01;
export const SYN = 0x02;
export const RST = 0x04;
export const PSH = 0x08;
export const ACK = 0x10;

export type Ev =
  | { t: 'data'; dir: Dir; bytes: Buffer }
  | { t: 'gap'; dir: Dir; len: number }
  | { t: 'end'; dir: Dir; reason: EndReason }
  | { t: 'close'; reason: EndReason; counters: FlowCounters; ts: Timestamp };

/** A FlowHandler that records everything (copying data, as the contract requires). */
export class Recorder implements FlowHandler {
  events: Ev[] = [];
  constructor(readonly info: FlowInfo) {}
  onData(dir: Dir, data: Buffer): void {
    this.events.push({ t: 'data', dir, bytes: Buffer.from(data) });
  }
  onGap(dir: Dir, length: number): void {
    this.events.push({ t: 'gap', dir, len: length });
  }
  onEnd(dir: Dir, reason: EndReason): void {
    this.events.push({ t: 'end', dir, reason });
  }
  onClose(reason: EndReason, counters: FlowCounters, ts: Timestamp): void {
    this.events.push({ t: 'close', reason, counters: { ...counters, last: { ...counters.last } }, ts: { ...ts } });
  }
  /** Stream of one direction; gaps appear as '?' repeated (one per missing byte). */
  stream(dir: Dir): string {
    let s = '';
    for (const e of this.events) {
      if (e.t === 'data' && e.dir === dir) s += e.bytes.toString('latin1');
      else if (e.t === 'gap' && e.dir === dir) s += '?'.repeat(e.len);
    }
    return s;
  }
  bytes(dir: Dir): Buffer {
    return Buffer.concat(this.events.flatMap((e) => (e.t === 'data' && e.dir === dir ? [e.bytes] : [])));
  }
  gaps(dir: Dir): number[] {
    return this.events.flatMap((e) => (e.t === 'gap' && e.dir === dir ? [e.len] : []));
  }
  ends(): Array<[Dir, EndReason]> {
    return this.events.flatMap((e) => (e.t === 'end' ? [[e.dir, e.reason] as [Dir, EndReason]] : []));
  }
  closes(): Array<Extract<Ev, { t: 'close' }>> {
    return this.events.filter((e): e is Extract<Ev, { t: 'close' }> => e.t === 'close');
  }
}

export class Anomalies implements AnomalySink {
  codes: string[] = [];
  details: Array<string | undefined> = [];
  anomaly(code: string, detail?: string): void {
    this.codes.push(code);
    this.details.push(detail);
  }
  count(code: string): number {
    return this.codes.filter((c) => c === code).length;
  }
}

export function setup(opts?: Partial<TcpOptions>) {
  const flows: Recorder[] = [];
  const anomalies = new Anomalies();
  const table = new TcpFlowTable(
    (info) => {
      const r = new Recorder(info);
      flows.push(r);
      return r;
    },
    anomalies,
    opts,
  );
  return { table, flows, anomalies };
}

export function ip4(s: string): Buffer {
  return Buffer.from(s.split('.').map(Number));
}

export interface Endpoints {
  a: Buffer;
  aPort: number;
  b: Buffer;
  bPort: number;
}

export const CLIENT = ip4('10.0.0.1');
export const SERVER = ip4('10.0.0.2');
export const EP: Endpoints = { a: CLIENT, aPort: 40000, b: SERVER, bPort: 443 };

export interface SegOpts {
  ack?: number;
  payloadLen?: number;
  ep?: Endpoints;
}

/** A decoded TCP segment from endpoint a (fromA) or b of `ep`. */
export function seg(fromA: boolean, seq: number, data: string | Buffer, flags = ACK, o: SegOpts = {}): DecodedPacket {
  const ep = o.ep ?? EP;
  const payload = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
  return {
    ipVersion: ep.a.length === 16 ? 6 : 4,
    srcAddr: fromA ? ep.a : ep.b,
    dstAddr: fromA ? ep.b : ep.a,
    protocol: 6,
    srcPort: fromA ? ep.aPort : ep.bPort,
    dstPort: fromA ? ep.bPort : ep.aPort,
    seq: seq >>> 0,
    ack: (o.ack ?? 0) >>> 0,
    flags,
    window: 65535,
    payload,
    payloadLen: o.payloadLen ?? payload.length,
    tunnels: [],
    vlans: [],
  };
}

export function ts(sec: number, nsec = 0): Timestamp {
  return { sec, nsec };
}

/** Client SYN at isnC, server SYN-ACK at isnS, client ACK. */
export function handshake(table: TcpFlowTable, isnC: number, isnS: number, t = 1, ep: Endpoints = EP): void {
  table.processSegment(seg(true, isnC, '', SYN, { ep }), ts(t));
  table.processSegment(seg(false, isnS, '', SYN | ACK, { ack: isnC + 1, ep }), ts(t));
  table.processSegment(seg(true, isnC + 1, '', ACK, { ack: isnS + 1, ep }), ts(t));
}
