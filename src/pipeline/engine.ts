/**
 * The single-threaded pipeline: capture records in, ECS events out.
 *
 *   RawPacket -> decodePacket -> TcpFlowTable -> FlowDispatcher -> TlsFlowHandler -> app analyzer
 *                                                                       └─ events (buildEvent) -> sink
 *
 * One Engine instance owns one flow table; the replay command runs one per worker shard.
 */
import { decodeFrame, newDecodedPacket } from '../decode/index.js';
import { IpReassembler, LINKTYPE_RAW } from '../decode/ipReassembly.js';
import { TcpFlowTable, type TcpOptions } from '../tcp/index.js';
import { TlsFlowHandler, SessionCache, PendingBudget, DEFAULT_TLS_OPTIONS, type TlsOptions, type TlsContext, type TlsInfo, type AppStream } from '../tls/index.js';
import type { AppFactoryObject } from '../tls/session.js';
import type { SecretsStore } from '../tls/crypto/keylog.js';
import type { RsaServerKey } from '../tls/crypto/rsa.js';
import { createAppAnalyzer, type AnalyzerOptions } from '../analyzers/index.js';
import { DataChannelRegistry } from '../analyzers/ftp/dataChannels.js';
import { ProtocolDispatcher, type DispatchDeps, type DispatchOptions, type TlsAppOverride } from './dispatch.js';
import type { EngineOpsHooks } from './hooks.js';
import { buildEvent, deepMerge, DECRYPTION_TAG, type EcsEvent } from '../events/builder.js';
import { Detector, fingerprintFields, type DetectorOptions, type DetectorStats } from '../detect/index.js';
import { UdpFlowTable, type UdpFlowHandler, type UdpOptions } from '../udp/index.js';
import { QuicStage, type QuicEventSink, type QuicOptions } from '../quic/index.js';
import { DtlsStage, type DtlsOptions } from '../dtls/index.js';
import {
  Dir,
  type AnomalySink,
  type CaptureSink,
  type DecodedPacket,
  type EcsFields,
  type EndReason,
  type EventSink,
  type FlowCounters,
  type FlowHandler,
  type FlowInfo,
  type RawPacket,
  type Timestamp,
} from '../types.js';

export interface EngineOptions {
  tcp: Partial<TcpOptions>;
  tls: Partial<TlsOptions>;
  analyzers: Partial<AnalyzerOptions>;
  /** Protocol detection, SMTP/FTP analyzers (ports, sniff limit, analyzer limits). */
  dispatch: Partial<DispatchOptions>;
  /** Emit only events whose content came from decrypted traffic. */
  onlyDecrypted: boolean;
  /** Ops hooks (src/ops/shard.ts ShardOps): per-session decrypt decision, session observations, secret wait. */
  ops?: EngineOpsHooks;
  /** Detection rules and fingerprints (plain data only: it crosses worker threads); false = off. */
  detect: Partial<Omit<DetectorOptions, 'rules'>> | false;
  /**
   * Sees every new flow's handler (may wrap it) and can mute a flow's events: `run`'s replay
   * watermark (src/kafka/watermark.ts). Set in-thread, never in workerData.
   */
  flows?: {
    open(flow: FlowInfo, handler: FlowHandler): FlowHandler;
    /** A new QUIC path (UDP flow); `fromStart`: its first datagram has a long header (a connection's start). */
    openUdp(flow: FlowInfo, handler: UdpFlowHandler, fromStart: boolean): UdpFlowHandler;
    muted(flow: FlowInfo): boolean;
  };
  /** UDP flow table limits and QUIC stage limits (src/udp, src/quic). */
  udp?: Partial<UdpOptions>;
  quic?: Partial<QuicOptions>;
  /** DTLS stage limits (src/dtls). */
  dtls?: Partial<DtlsOptions>;
}

/** The server a flow counts toward as an asset: its own, or its FTP control connection's (FlowInfo.assetServer). */
function assetIp(f: FlowInfo): string {
  return f.assetServer?.ip ?? f.serverIp;
}
function assetPort(f: FlowInfo): number {
  return f.assetServer?.port ?? f.serverPort;
}

/** Key-log label meaning "TLS secrets in a pcapng Decryption Secrets Block" (pcapng spec §4.7). */
export const DSB_TLS_KEY_LOG = 0x544c534b;

export interface EngineStats {
  packets: number;
  bytes: number;
  tcpPackets: number;
  flows: number;
  tlsFlows: number;
  otherFlows: number;
  /** Plaintext bytes produced by decryption (tls.session decryption.bytes, summed at close). */
  decryptedBytes: number;
  sessionsByStatus: Record<string, number>;
  eventsByDataset: Record<string, number>;
  anomalies: Record<string, number>;
  notDecoded: Record<string, number>;
  /** The detector's counters (alerts by rule, hits held back, evictions); absent with detection off. */
  detection?: DetectorStats;
}

export type EventOutput = (ev: EcsEvent) => void;

export class Engine implements CaptureSink, AnomalySink, QuicEventSink {
  readonly stats: EngineStats = {
    packets: 0,
    bytes: 0,
    tcpPackets: 0,
    flows: 0,
    tlsFlows: 0,
    otherFlows: 0,
    decryptedBytes: 0,
    sessionsByStatus: {},
    eventsByDataset: {},
    anomalies: {},
    notDecoded: {},
  };
  private readonly decoded: DecodedPacket = newDecodedPacket();
  /** IP fragments held until their datagram is whole (src/decode/ipReassembly.ts). */
  private readonly defrag = new IpReassembler(this);
  private readonly flows: TcpFlowTable;
  /** Alert rules over every event (src/detect); undefined when detection is off. */
  readonly detector: Detector | undefined;
  private readonly sessionCache = new SessionCache();
  /** Ciphertext held for late keys by all flows together (tls.maxPendingRecordBytesTotal). */
  private readonly pendingBudget: PendingBudget;
  /** FTP data connections announced by control sessions (PASV/EPSV/PORT/EPRT), shared by all flows. */
  private readonly dataChannels = new DataChannelRegistry(this);
  /** Live TLS handlers, for late keys. */
  private readonly tlsHandlers = new Set<TlsFlowHandler>();
  private lastTs: Timestamp = { sec: 0, nsec: 0 };
  private readonly opts: EngineOptions;
  /** UDP datagrams: flows beside the TCP ones; those carrying QUIC go to the QUIC stage. */
  private readonly udp: UdpFlowTable;
  readonly quic: QuicStage;
  /** UDP flows that start with a DTLS 1.0/1.2 ClientHello (src/dtls). */
  readonly dtls: DtlsStage;

  constructor(
    private readonly output: EventOutput,
    private readonly keys: { secrets: SecretsStore; rsaKeys: RsaServerKey[] },
    opts: Partial<EngineOptions> = {},
  ) {
    this.opts = { tcp: {}, tls: {}, analyzers: {}, dispatch: {}, detect: {}, onlyDecrypted: false, ...opts };
    this.pendingBudget = new PendingBudget(this.opts.tls.maxPendingRecordBytesTotal ?? DEFAULT_TLS_OPTIONS.maxPendingRecordBytesTotal);
    this.detector = this.opts.detect === false ? undefined : new Detector(this.opts.detect);
    if (this.detector) this.stats.detection = this.detector.stats; // the same object: always current
    this.flows = new TcpFlowTable((flow) => this.newFlow(flow), this, this.opts.tcp);
    const ops = this.opts.ops;
    this.quic = new QuicStage({
      secrets: keys.secrets,
      anomalies: this,
      sink: this,
      options: this.opts.quic,
      http: this.opts.analyzers.http,
      // the asset policy / resource governor, asked as for TLS over TCP (makeTlsHandler)
      decide: ops ? (f, sni) => ops.decide(assetIp(f), assetPort(f), sni, f.sensor) : undefined,
      onSecretWait: ops ? (s) => ops.onSecretWait(s) : undefined,
    });
    this.dtls = new DtlsStage({
      secrets: keys.secrets,
      rsaKeys: keys.rsaKeys,
      anomalies: this,
      sink: this, // tls.session events of UDP sessions, as QUIC's
      options: this.opts.dtls,
      decide: ops ? (f, sni) => ops.decide(assetIp(f), assetPort(f), sni, f.sensor) : undefined,
      onSecretWait: ops ? (s) => ops.onSecretWait(s) : undefined,
    });
    this.udp = new UdpFlowTable((flow, first) => this.newUdpFlow(flow, first), this, this.opts.udp);
    keys.secrets.onAdded(() => this.retryKeys());
  }

  anomaly(code: string): void {
    this.stats.anomalies[code] = (this.stats.anomalies[code] ?? 0) + 1;
  }

  packet(p: RawPacket): void {
    const data = p.data;
    this.frame(p.linktype, data, 0, data.length, p.origLen, p.ts, p.sensor);
  }

  /** CaptureSink.packetAt (classic pcap): the same as packet() without a RawPacket or a view of the frame. */
  packetAt(buf: Buffer, off: number, caplen: number, origLen: number, sec: number, nsec: number, linktype: number): void {
    this.frame(linktype, buf, off, off + caplen, origLen, { sec, nsec }, undefined);
  }

  private frame(linktype: number, buf: Buffer, off: number, end: number, origLen: number, ts: Timestamp, sensor: string | undefined): void {
    this.stats.packets++;
    this.stats.bytes += origLen;
    this.lastTs = ts;
    let kind = decodeFrame(linktype, buf, off, end, this.decoded, this);
    if (kind === 'fragment') {
      // held until its datagram is whole; the datagram is then decoded as one raw IP packet
      const dg = this.defrag.add(this.decoded.frag!, this.decoded.srcAddr, this.decoded.dstAddr, ts);
      if (dg === undefined) {
        this.stats.notDecoded.fragment = (this.stats.notDecoded.fragment ?? 0) + 1;
        return;
      }
      kind = decodeFrame(LINKTYPE_RAW, dg, 0, dg.length, this.decoded, this);
    }
    if (kind === 'udp') {
      this.udp.process(this.decoded, ts, sensor);
      return;
    }
    if (kind !== 'tcp') {
      this.stats.notDecoded[kind] = (this.stats.notDecoded[kind] ?? 0) + 1;
      return;
    }
    this.stats.tcpPackets++;
    this.quic.flush(); // QUIC packets held for their batch's authentication come first
    this.flows.processSegment(this.decoded, ts, sensor);
  }

  secrets(secretsType: number, data: Buffer): void {
    if (secretsType !== DSB_TLS_KEY_LOG) {
      this.anomaly('dsb_unsupported_type');
      return;
    }
    const r = this.keys.secrets.addText(data.toString('utf8'));
    if (r.malformed) this.stats.anomalies.keylog_malformed_line = (this.stats.anomalies.keylog_malformed_line ?? 0) + r.malformed;
  }

  /** Advance capture time without packets (idle timeouts in a live stream). */
  tick(now: Timestamp): void {
    this.quic.flush();
    this.defrag.expire(now);
    this.flows.expire(now);
    this.udp.expire(now);
  }

  /** End of input: flush and close every flow. */
  finish(): void {
    this.defrag.closeAll();
    this.flows.closeAll(this.lastTs);
    this.udp.closeAll(this.lastTs);
    // the summaries of alert windows that held hits back (src/detect/threshold.ts), after every flow's last alert
    if (this.detector) for (const a of this.detector.flush()) this.write(a, Array.isArray(a.tags) && a.tags.includes(DECRYPTION_TAG));
  }

  /**
   * `run`'s planned leave: nothing is closed (the replay watermark holds every open TCP flow and
   * QUIC path for the next owner's re-read); QUIC packets held for their batch's authentication are
   * processed, so the events they complete are delivered before the last commit.
   */
  leave(): void {
    this.quic.flush();
  }

  get activeFlows(): number {
    return this.flows.activeFlows + this.udp.activeFlows;
  }

  /** Closes at once the flows whose handler `match` picks (TcpFlowTable.closeWhere). */
  dropFlows(match: (h: FlowHandler) => boolean): number {
    return this.flows.closeWhere(match, this.lastTs);
  }

  private retryKeys(): void {
    for (const h of this.tlsHandlers) h.retryKeys(this.lastTs);
    this.quic.retryKeys(this.lastTs);
    this.dtls.retryKeys(this.lastTs);
  }

  /** A DTLS association's flow or a QUIC path (stamped by `run`'s watermark like a TCP flow), or a UDP flow only counted. */
  private newUdpFlow(flow: FlowInfo, first: Buffer): UdpFlowHandler | undefined {
    // DTLS first: its ClientHello (content type 22) would pass for a QUIC short header on 443/8443
    const d = this.dtls.handler(flow, first);
    if (d !== undefined) return this.opts.flows ? this.opts.flows.openUdp(flow, d.handler, d.fromStart) : d.handler;
    const h = this.quic.handler(flow, first);
    if (h === undefined) return this.otherUdp();
    return this.opts.flows ? this.opts.flows.openUdp(flow, h, first.length > 0 && (first[0] & 0x80) !== 0) : h;
  }

  private otherUdp(): undefined {
    this.stats.otherFlows++;
    return undefined;
  }

  /** QuicEventSink: HTTP/3 and tls.session events of QUIC connections (src/quic). */
  quicEvent(ev: EcsEvent, decrypted: boolean, session: { flow: FlowInfo; status: string; bytes: number; sni?: string; cipher?: string; skippedBytes?: number } | undefined, origin: FlowInfo): void {
    if (this.muted(origin)) return; // its partition moved to another owner (EngineOptions.flows)
    if (session) {
      this.stats.tlsFlows++;
      this.stats.sessionsByStatus[session.status] = (this.stats.sessionsByStatus[session.status] ?? 0) + 1;
      this.stats.decryptedBytes += session.bytes;
      const f = session.flow;
      this.opts.ops?.onSession({
        serverIp: assetIp(f),
        serverPort: assetPort(f),
        sni: session.sni,
        sensor: f.sensor,
        status: session.status,
        decryptedBytes: session.bytes,
        cipher: session.cipher,
        ts: f.start.sec + f.start.nsec / 1e9,
        skippedBytes: session.skippedBytes,
      });
    }
    this.emit(ev, decrypted);
  }

  /** Every event passes the detector (before the --only-decrypted filter), then is written with its alerts. */
  private emit(ev: EcsEvent, decrypted: boolean): void {
    const alerts = this.detector ? this.detector.inspect(ev) : [];
    this.write(ev, decrypted);
    for (const a of alerts) this.write(a, Array.isArray(a.tags) && a.tags.includes(DECRYPTION_TAG));
  }

  private write(ev: EcsEvent, decrypted: boolean): void {
    const ds = ev.event.dataset;
    if (this.opts.onlyDecrypted && !decrypted) return;
    this.stats.eventsByDataset[ds] = (this.stats.eventsByDataset[ds] ?? 0) + 1;
    this.output(ev);
  }

  private newFlow(flow: FlowInfo): FlowHandler {
    this.stats.flows++;
    // One object per flow is the dispatcher's deps, the clear-text event sink and the event
    // ordinal shared by the flow's clear-text and TLS events (event ids stay unique).
    const h = new ProtocolDispatcher(flow, new FlowSinks(this, flow));
    return this.opts.flows ? this.opts.flows.open(flow, h) : h;
  }

  /** @internal (FlowSinks, tlsEvent) A flow whose events are muted (EngineOptions.flows). */
  muted(flow: FlowInfo): boolean {
    return this.opts.flows !== undefined && this.opts.flows.muted(flow);
  }

  /** @internal (FlowSinks) */
  get dispatchOptions(): Partial<DispatchOptions> {
    return this.opts.dispatch;
  }
  /** @internal (FlowSinks) */
  get ftpDataChannels(): DataChannelRegistry {
    return this.dataChannels;
  }
  /** @internal (FlowSinks) */
  emitEvent(ev: EcsEvent, decrypted: boolean): void {
    this.emit(ev, decrypted);
  }

  /** The TLS context shared by every flow when no ops hooks need the flow. */
  private sharedTlsCtx: TlsContext | undefined;

  /** @internal (FlowSinks) */
  makeTlsHandler(flow: FlowInfo, app: TlsAppOverride | undefined, ordinal: FlowSinks): FlowHandler {
    this.stats.tlsFlows++;
    const ops = this.opts.ops;
    const handlers = this.tlsHandlers;
    const ctx: TlsContext = ops
      ? {
          secrets: this.keys.secrets,
          rsaKeys: this.keys.rsaKeys,
          sessionCache: this.sessionCache,
          pendingBudget: this.pendingBudget,
          anomalies: this,
          options: this.opts.tls,
          decide: (sni) => ops.decide(assetIp(flow), assetPort(flow), sni, flow.sensor),
          onSecretWait: (s) => ops.onSecretWait(s),
          closing: (h) => handlers.delete(h),
        }
      : (this.sharedTlsCtx ??= {
          secrets: this.keys.secrets,
          rsaKeys: this.keys.rsaKeys,
          sessionCache: this.sessionCache,
          pendingBudget: this.pendingBudget,
          anomalies: this,
          options: this.opts.tls,
          closing: (h) => handlers.delete(h),
        });
    const events = new TlsEvents(this, flow, ordinal, app);
    const h = new TlsFlowHandler(flow, ctx, events, events);
    events.handler = h;
    this.tlsHandlers.add(h);
    return h;
  }

  /** @internal (TlsEvents) */
  tlsEvent(flow: FlowInfo, handler: TlsFlowHandler | undefined, dataset: string, fields: EcsFields, ts: Timestamp, decrypted: boolean, ordinal: number): void {
    if (this.muted(flow)) return;
    const ops = this.opts.ops;
    if (dataset === 'tls.session' && handler) deepMerge(fields, fingerprintFields(handler.info));
    const ev = buildEvent(flow, handler?.info, dataset, fields, ts, decrypted, ordinal);
    if (dataset === 'tls.session') {
      const d = (fields.decryption ?? {}) as { status?: string; bytes?: number; skipped_bytes?: number };
      if (d.status) this.stats.sessionsByStatus[d.status] = (this.stats.sessionsByStatus[d.status] ?? 0) + 1;
      this.stats.decryptedBytes += d.bytes ?? 0;
      if (ops && d.status) {
        const info = handler?.info;
        ops.onSession({
          serverIp: assetIp(flow),
          serverPort: assetPort(flow),
          sni: info?.sni,
          sensor: flow.sensor,
          status: d.status,
          decryptedBytes: d.bytes ?? 0,
          cipher: info?.cipher,
          ts: ts.sec + ts.nsec / 1e9,
          skippedBytes: d.skipped_bytes,
        });
      }
    }
    this.emit(ev, decrypted);
  }

  /** @internal (TlsEvents) */
  defaultApp(info: TlsInfo, events: EventSink): AppStream {
    return createAppAnalyzer(info.alpn, events, this, this.opts.analyzers);
  }
}

/** Per flow: the dispatcher's deps, the clear-text event sink and the flow's event ordinal. */
class FlowSinks implements DispatchDeps, EventSink {
  /** Next event ordinal of the flow (clear-text and TLS events). */
  n = 0;
  constructor(
    private readonly engine: Engine,
    private readonly flow: FlowInfo,
  ) {}
  get clearEvents(): EventSink {
    return this;
  }
  get anomalies(): AnomalySink {
    return this.engine;
  }
  get dataChannels(): DataChannelRegistry {
    return this.engine.ftpDataChannels;
  }
  get options(): Partial<DispatchOptions> {
    return this.engine.dispatchOptions;
  }
  emit(dataset: string, fields: EcsFields, ts: Timestamp, decrypted: boolean): void {
    if (this.engine.muted(this.flow)) return;
    this.engine.emitEvent(buildEvent(this.flow, undefined, dataset, fields, ts, decrypted, this.n++), decrypted);
  }
  makeTls(flow: FlowInfo, app?: TlsAppOverride): FlowHandler {
    return this.engine.makeTlsHandler(flow, app, this);
  }
  onIgnored(): void {
    this.engine.stats.otherFlows++;
  }
}

/** Per TLS flow: its event sink and its app factory. */
class TlsEvents implements EventSink, AppFactoryObject {
  handler: TlsFlowHandler | undefined = undefined;
  constructor(
    private readonly engine: Engine,
    private readonly flow: FlowInfo,
    private readonly ordinal: FlowSinks,
    private readonly app: TlsAppOverride | undefined,
  ) {}
  emit(dataset: string, fields: EcsFields, ts: Timestamp, decrypted: boolean): void {
    this.engine.tlsEvent(this.flow, this.handler, dataset, fields, ts, decrypted, this.ordinal.n++);
  }
  createApp(info: TlsInfo): AppStream {
    return this.app ? this.app(info, this) : this.engine.defaultApp(info, this);
  }
}

export { DECRYPTION_TAG, Dir };
