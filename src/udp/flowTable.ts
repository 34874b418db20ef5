/**
 * The UDP flow table: datagrams grouped into direction-independent flows (the 5-tuple with the
 * endpoints in a canonical order), beside the TCP flow table and with the same kind of limits.
 *
 * - Roles: UDP has no handshake, so the client is the sender of the first datagram seen, unless
 *   that datagram comes *from* a server port (`serverPorts`, e.g. 443 for QUIC) to a port that
 *   is not one: then the capture started mid-flow and the roles are swapped.
 * - Idle timeout: a flow without datagrams for `idleTimeoutSec` of capture time is closed with
 *   'timeout' (checked whenever capture time crosses a whole second, and on expire()).
 * - Table full (`maxFlows`): the least recently active flow is closed with 'evicted' and counted
 *   (`udp_flow_evicted`).
 * - A handler may ask for its flow to close at a capture second (`setCloser`: a QUIC connection
 *   that ended, after its draining period), checked with the idle timeouts; `canClose` may defer it.
 * - A handler that throws is counted (`handler_error`) and gets nothing more but its onClose.
 * - Payload views passed to onDatagram are valid only during the call.
 */
import { communityId } from '../events/communityId.js';
import { ipToString } from '../decode/ip.js';
import type { AnomalySink, DecodedPacket, EndReason, FlowCounters, FlowInfo, Timestamp } from '../types.js';
import { Dir } from '../types.js';

export interface UdpOptions {
  /** UDP flows tracked at once; when full the least recently active flow is evicted. */
  maxFlows: number;
  /** Capture-time seconds without datagrams after which a flow is closed. */
  idleTimeoutSec: number;
  /** Ports treated as server ports when the first datagram seen comes from one. */
  serverPorts: readonly number[];
  /** What runs the timeouts: every datagram, or only expire() (`run`; as TcpOptions.clock). */
  clock: 'packets' | 'ticks';
}

export const DEFAULT_UDP_OPTIONS: Readonly<UdpOptions> = Object.freeze({
  maxFlows: 100_000,
  idleTimeoutSec: 120,
  serverPorts: Object.freeze([443, 8443]),
  clock: 'packets',
});

export interface UdpStats {
  datagrams: number;
  flowsCreated: number;
  flowsActive: number;
  flowsEvicted: number;
  flowsTimedOut: number;
  handlerErrors: number;
}

/** A UDP flow's consumer; onClose is called exactly once. */
export interface UdpFlowHandler {
  onDatagram(dir: Dir, payload: Buffer, ts: Timestamp, wireLen: number): void;
  onClose(reason: EndReason, counters: FlowCounters, ts: Timestamp): void;
  /** Given once, at the flow's creation: `close(sec)` closes the flow (reason 'fin') at capture second `sec`. */
  setCloser?(close: (sec: number) => void): void;
  /** Asked at that second: false defers the close (to the next second, or the idle timeout). */
  canClose?(): boolean;
}

/** The handler of a new flow, or undefined to track the flow (counts, timeouts) without one. */
export type UdpFlowHandlerFactory = (flow: FlowInfo, first: Buffer) => UdpFlowHandler | undefined;

interface Flow {
  key: string;
  /** The canonical endpoints (copies): a/pa first. */
  a: Buffer;
  b: Buffer;
  pa: number;
  pb: number;
  info: FlowInfo;
  /** Canonical first endpoint is the client (true) or the server. */
  clientIsA: boolean;
  handler: UdpFlowHandler | undefined;
  counters: FlowCounters;
  lastSec: number;
  /** Capture second its handler asked the flow to close at (setCloser); 0: none. */
  closeAt: number;
  prev: Flow | null;
  next: Flow | null;
}

function num(v: number | undefined, d: number, min: number): number {
  return typeof v === 'number' && Number.isFinite(v) && v >= min ? v : d;
}

export class UdpFlowTable {
  readonly stats: UdpStats = { datagrams: 0, flowsCreated: 0, flowsActive: 0, flowsEvicted: 0, flowsTimedOut: 0, handlerErrors: 0 };
  private readonly flows = new Map<string, Flow>();
  /** Least recently active first. */
  private head: Flow | null = null;
  private tail: Flow | null = null;
  private readonly opts: UdpOptions;
  private nextId = 1;
  private nextExpireAt = 0;
  /** opts.clock === 'packets'. */
  private readonly byPackets: boolean;
  /** Flows with a close time (Flow.closeAt). */
  private readonly closing = new Set<Flow>();
  /** The flow of the previous datagram (null after it closed). */
  private last: Flow | null = null;

  constructor(
    private readonly factory: UdpFlowHandlerFactory,
    private readonly anomalies: AnomalySink,
    opts: Partial<UdpOptions> = {},
  ) {
    this.opts = {
      maxFlows: Math.floor(num(opts.maxFlows, DEFAULT_UDP_OPTIONS.maxFlows, 1)),
      idleTimeoutSec: num(opts.idleTimeoutSec, DEFAULT_UDP_OPTIONS.idleTimeoutSec, 0),
      serverPorts: Array.isArray(opts.serverPorts) ? opts.serverPorts : DEFAULT_UDP_OPTIONS.serverPorts,
      clock: opts.clock === 'ticks' ? 'ticks' : 'packets',
    };
    this.byPackets = this.opts.clock === 'packets';
  }

  get activeFlows(): number {
    return this.stats.flowsActive;
  }

  /** One decoded UDP datagram (decodePacket outcome 'udp'). */
  process(p: DecodedPacket, ts: Timestamp, sensor?: string): void {
    this.stats.datagrams++;
    if (this.byPackets && ts.sec >= this.nextExpireAt) this.expire(ts);
    let f = this.last;
    // clock 'ticks': a flow whose timeout is due goes through the lookup below (ownTimeout)
    if (f !== null && !this.byPackets && (this.idleDue(f) <= ts.sec || (f.closeAt !== 0 && f.closeAt <= ts.sec))) f = null;
    let srcIsA: boolean;
    // Bulk traffic comes in runs of one flow: the previous flow is checked before building a key.
    if (f !== null && f.pa === p.srcPort && f.pb === p.dstPort && f.a.equals(p.srcAddr) && f.b.equals(p.dstAddr)) srcIsA = true;
    else if (f !== null && f.pa === p.dstPort && f.pb === p.srcPort && f.a.equals(p.dstAddr) && f.b.equals(p.srcAddr)) srcIsA = false;
    else {
      const c = Buffer.compare(p.srcAddr, p.dstAddr);
      srcIsA = c < 0 || (c === 0 && p.srcPort <= p.dstPort);
      const key = srcIsA
        ? p.srcAddr.toString('latin1') + p.dstAddr.toString('latin1') + String.fromCharCode(p.srcPort, p.dstPort)
        : p.dstAddr.toString('latin1') + p.srcAddr.toString('latin1') + String.fromCharCode(p.dstPort, p.srcPort);
      f = this.flows.get(key) ?? null;
      if (f !== null && !this.byPackets && this.ownTimeout(f, ts)) f = null;
      if (f === null) f = this.create(key, p, srcIsA, ts, sensor);
      this.last = f;
    }
    this.touch(f);
    f.lastSec = ts.sec;
    const dir = srcIsA === f.clientIsA ? Dir.ToServer : Dir.ToClient;
    const cn = f.counters;
    if (dir === Dir.ToServer) {
      cn.clientBytes += p.payloadLen;
      cn.clientPackets++;
    } else {
      cn.serverBytes += p.payloadLen;
      cn.serverPackets++;
    }
    cn.last = ts;
    const h = f.handler;
    if (h === undefined) return;
    try {
      h.onDatagram(dir, p.payload, ts, p.payloadLen);
    } catch (e) {
      this.handlerError(f, e);
    }
  }

  /** clock 'ticks': when a datagram of `f` finds it idle (expire() runs once per second: never in `f`'s last second). */
  private idleDue(f: Flow): number {
    return Math.max(f.lastSec + this.opts.idleTimeoutSec, f.lastSec + 1);
  }

  /**
   * clock 'ticks': the timeout a datagram of `f` at `now` finds already due (what expire() would
   * have done had the table's time reached it). True when `f` was closed by it.
   */
  private ownTimeout(f: Flow, now: Timestamp): boolean {
    if (this.idleDue(f) <= now.sec) {
      this.stats.flowsTimedOut++;
      this.close(f, 'timeout', now);
      return true;
    }
    if (f.closeAt === 0 || f.closeAt > now.sec) return false;
    return this.closeIfReady(f, now);
  }

  /** A flow past its close time (setCloser) closes unless its handler still waits (canClose). */
  private closeIfReady(f: Flow, now: Timestamp): boolean {
    let ok = true;
    try {
      ok = f.handler?.canClose?.() ?? true;
    } catch (e) {
      this.handlerError(f, e);
    }
    if (ok) this.close(f, 'fin', now);
    return ok;
  }

  /** Close flows idle for idleTimeoutSec at capture time `now`. */
  expire(now: Timestamp): void {
    this.nextExpireAt = now.sec + 1;
    const idle = this.opts.idleTimeoutSec;
    while (this.head !== null && this.head.lastSec + idle <= now.sec) {
      this.stats.flowsTimedOut++;
      this.close(this.head, 'timeout', now);
    }
    if (this.closing.size === 0) return;
    for (const f of this.closing) if (f.closeAt <= now.sec) this.closeIfReady(f, now);
  }

  /** End of input: close every flow. */
  closeAll(ts: Timestamp): void {
    while (this.head !== null) this.close(this.head, 'eof', ts);
  }

  private create(key: string, p: DecodedPacket, srcIsA: boolean, ts: Timestamp, sensor: string | undefined): Flow {
    if (this.stats.flowsActive >= this.opts.maxFlows && this.head !== null) {
      this.stats.flowsEvicted++;
      this.anomalies.anomaly('udp_flow_evicted');
      this.close(this.head, 'evicted', ts);
    }
    const sp = this.opts.serverPorts;
    // The first datagram's sender is the client, unless it comes from a server port to another port.
    const swap = sp.includes(p.srcPort) && !sp.includes(p.dstPort);
    const cAddr = swap ? p.dstAddr : p.srcAddr;
    const sAddr = swap ? p.srcAddr : p.dstAddr;
    const cPort = swap ? p.dstPort : p.srcPort;
    const sPort = swap ? p.srcPort : p.dstPort;
    const info: FlowInfo = {
      id: this.nextId++,
      clientIp: ipToString(cAddr),
      clientPort: cPort,
      serverIp: ipToString(sAddr),
      serverPort: sPort,
      ipVersion: p.ipVersion,
      start: ts,
      rolesFromHandshake: false,
      communityId: communityId(cAddr, cPort, sAddr, sPort, 17),
    };
    if (sensor !== undefined) info.sensor = sensor;
    const f: Flow = {
      key,
      a: Buffer.from(srcIsA ? p.srcAddr : p.dstAddr),
      b: Buffer.from(srcIsA ? p.dstAddr : p.srcAddr),
      pa: srcIsA ? p.srcPort : p.dstPort,
      pb: srcIsA ? p.dstPort : p.srcPort,
      info,
      clientIsA: swap ? !srcIsA : srcIsA,
      handler: undefined,
      counters: { clientBytes: 0, serverBytes: 0, clientPackets: 0, serverPackets: 0, gapBytes: 0, last: ts },
      lastSec: ts.sec,
      closeAt: 0,
      prev: this.tail,
      next: null,
    };
    if (this.tail !== null) this.tail.next = f;
    else this.head = f;
    this.tail = f;
    this.flows.set(key, f);
    this.stats.flowsCreated++;
    this.stats.flowsActive++;
    try {
      const h = (f.handler = this.factory(info, p.payload));
      if (h?.setCloser) {
        h.setCloser((sec) => {
          if (this.flows.get(f.key) !== f) return; // closed already
          f.closeAt = sec;
          this.closing.add(f);
        });
      }
    } catch (e) {
      this.handlerError(f, e);
    }
    return f;
  }

  private touch(f: Flow): void {
    if (this.tail === f) return;
    this.unlink(f);
    f.prev = this.tail;
    f.next = null;
    if (this.tail !== null) this.tail.next = f;
    else this.head = f;
    this.tail = f;
  }

  private unlink(f: Flow): void {
    if (f.prev !== null) f.prev.next = f.next;
    else this.head = f.next;
    if (f.next !== null) f.next.prev = f.prev;
    else this.tail = f.prev;
    f.prev = f.next = null;
  }

  private close(f: Flow, reason: EndReason, ts: Timestamp): void {
    if (this.last === f) this.last = null;
    if (f.closeAt !== 0) this.closing.delete(f);
    this.unlink(f);
    this.flows.delete(f.key);
    this.stats.flowsActive--;
    const h = f.handler;
    f.handler = undefined;
    if (h === undefined) return;
    try {
      h.onClose(reason, f.counters, ts);
    } catch (e) {
      this.stats.handlerErrors++;
      this.anomalies.anomaly('handler_error', e instanceof Error ? e.message : String(e));
    }
  }

  private handlerError(f: Flow, e: unknown): void {
    this.stats.handlerErrors++;
    this.anomalies.anomaly('handler_error', e instanceof Error ? e.message : String(e));
    const h = f.handler;
    // the flow stays tracked; its handler only gets its onClose
    if (h !== undefined) {
      f.handler = {
        onDatagram(): void {},
        onClose: (r, c, t) => h.onClose(r, c, t),
      };
    }
  }
}
