/**
 * The QUIC stage: UDP flows that carry QUIC (recognised on any port by their long header and a
 * known version, or by a short header on a hinted port such as 443/8443, or by a connection ID
 * already known) are paths of QUIC connections, which are found by connection ID, not by address
 * (so a migrated or NAT-rebound path stays the same connection; RFC 9000 Section 9).
 *
 * A connection ends when the last of its UDP paths is closed by the UDP flow table (idle timeout,
 * eviction, end of input); then its HTTP/3 exchanges are flushed and one `tls.session` event is
 * emitted with `network.transport: udp` and a `quic.*` group.
 */
import type { AnomalySink, EcsFields, EndReason, EventSink, FlowCounters, FlowInfo, Timestamp } from '../types.js';
import { Dir } from '../types.js';
import type { UdpFlowHandler } from '../udp/index.js';
import type { SecretsStore } from '../tls/crypto/keylog.js';
import { suiteName } from '../tls/crypto/suites.js';
import { describeCertificate } from '../tls/crypto/x509.js';
import { buildEvent, deepMerge, type EcsEvent, type TlsSummary } from '../events/builder.js';
import { fingerprintFields } from '../detect/fingerprints.js';
import { resolveHttpOptions, type HttpOptions } from '../analyzers/http/options.js';
import { QuicConnection, type QuicConnectionHost } from './connection.js';
import { LongType, QUIC_VERSIONS } from './protection.js';
import { DEFAULT_QUIC_OPTIONS, type QuicOptions } from './options.js';
import { PacketBatch } from './gcmBatch.js';

/** Where the stage hands finished events. */
export interface QuicEventSink {
  /**
   * An event of a QUIC connection; `session` is set on its tls.session event. `origin` is the UDP
   * flow (path) the connection started on: the object its UdpFlowTable created, which `run`'s
   * replay watermark stamped (and may mute).
   */
  quicEvent(ev: EcsEvent, decrypted: boolean, session: { flow: FlowInfo; status: string; bytes: number; sni?: string; cipher?: string; skippedBytes?: number } | undefined, origin: FlowInfo): void;
}

export interface QuicStageDeps {
  secrets: SecretsStore;
  anomalies: AnomalySink;
  sink: QuicEventSink;
  options?: Partial<QuicOptions>;
  http?: Partial<HttpOptions>;
  /** UDP ports where a short-header datagram alone marks a flow as QUIC. */
  hintPorts?: readonly number[];
  /** Ops (asset policy, resource governor): asked once per connection when its ClientHello is known. */
  decide?: (flow: FlowInfo, sni: string | undefined) => 'decrypt' | 'paused' | 'disabled';
  /** Ops: seconds from a connection's first protected packet to its key-log keys (once per connection). */
  onSecretWait?: (seconds: number) => void;
}

export const QUIC_HINT_PORTS: readonly number[] = [443, 8443];

export interface QuicStats {
  connections: number;
  connectionsActive: number;
  paths: number;
}

/** A UDP flow carrying QUIC: forwards its datagrams to the connection they belong to. */
class QuicPath implements UdpFlowHandler {
  conn: QuicConnection | undefined;
  /** True when the UDP flow's client is the QUIC server (roles guessed the other way round). */
  flip = false;
  /** Closes this path's UDP flow at a capture second (UdpFlowHandler.setCloser). */
  closer: ((sec: number) => void) | undefined;
  constructor(
    private readonly stage: QuicStage,
    readonly flow: FlowInfo,
  ) {}

  setCloser(close: (sec: number) => void): void {
    this.closer = close;
  }

  /** An ended connection's path closes at its deadline unless packets still wait for keys. */
  canClose(): boolean {
    return this.conn === undefined || !this.conn.holding;
  }

  onDatagram(dir: Dir, payload: Buffer, ts: Timestamp): void {
    const b = this.stage.batch;
    if (b.owner !== undefined && b.owner !== this.conn) b.flush();
    if (this.conn === undefined && !this.stage.attach(this, dir, payload, ts)) return;
    const c = this.conn as QuicConnection;
    c.datagram(this.flip ? (dir === Dir.ToServer ? Dir.ToClient : Dir.ToServer) : dir, payload, ts);
  }

  onClose(_reason: EndReason, counters: FlowCounters, ts: Timestamp): void {
    if (this.conn) this.stage.pathClosed(this, counters, ts);
  }
}

interface ConnState {
  conn: QuicConnection;
  flow: FlowInfo;
  /** The path flow the connection started on (QuicEventSink.quicEvent). */
  origin: FlowInfo;
  /** Its paths (UDP flows), for closing them when the connection ends. */
  paths: QuicPath[];
  /** Event ordinal within the connection. */
  n: number;
  clientBytes: number;
  serverBytes: number;
  cids: Set<string>;
}

export class QuicStage implements QuicConnectionHost {
  readonly stats: QuicStats = { connections: 0, connectionsActive: 0, paths: 0 };
  readonly options: QuicOptions;
  readonly http: HttpOptions;
  readonly secrets: SecretsStore;
  readonly anomalies: AnomalySink;
  private readonly sink: QuicEventSink;
  private readonly hintPorts: readonly number[];
  private readonly decider: QuicStageDeps['decide'];
  /** Connection ID (hex) -> connection. */
  private readonly byCid = new Map<string, ConnState>();
  private readonly states = new Map<QuicConnection, ConnState>();
  /** Lengths of the connection IDs in byCid (short headers do not say theirs). */
  private readonly cidLens = new Map<number, number>();

  constructor(deps: QuicStageDeps) {
    this.secrets = deps.secrets;
    this.anomalies = deps.anomalies;
    this.sink = deps.sink;
    this.options = { ...DEFAULT_QUIC_OPTIONS, ...(deps.options ?? {}) };
    this.http = resolveHttpOptions(deps.http);
    this.hintPorts = deps.hintPorts ?? QUIC_HINT_PORTS;
    this.decider = deps.decide;
    this.onSecretWait = deps.onSecretWait;
  }

  private readonly onSecretWait: QuicStageDeps['onSecretWait'];
  secretWait(seconds: number): void {
    this.onSecretWait?.(seconds);
  }

  decide(conn: QuicConnection, sni: string | undefined): 'decrypt' | 'paused' | 'disabled' {
    const st = this.states.get(conn);
    return st && this.decider ? this.decider(st.flow, sni) : 'decrypt';
  }

  /**
   * 1-RTT packets whose plaintext waits for their batch's authentication (src/quic/gcmBatch.ts):
   * those of one connection's latest datagrams, flushed before anything else is processed.
   */
  readonly batch = new PacketBatch();

  /** Authenticates and processes the batched packets (the engine, before other traffic and on its tick). */
  flush(): void {
    if (this.batch.owner !== undefined) this.batch.flush();
  }

  /** A new UDP flow: a QUIC path when its first datagram looks like QUIC, else undefined. */
  handler(flow: FlowInfo, first: Buffer): UdpFlowHandler | undefined {
    this.flush();
    if (!this.looksLikeQuic(flow, first)) return undefined;
    this.stats.paths++;
    return new QuicPath(this, flow);
  }

  private looksLikeQuic(flow: FlowInfo, d: Buffer): boolean {
    if (d.length < 7) return false;
    const hinted = this.hintPorts.includes(flow.serverPort) || this.hintPorts.includes(flow.clientPort);
    if ((d[0] & 0x80) !== 0) {
      const v = d.readUInt32BE(1);
      // RFC 9000 Section 17.2: long header; a version we know, Version Negotiation (0), or any version on a hinted port
      return QUIC_VERSIONS.has(v) || v === 0 || hinted;
    }
    // a short header (its fixed bit may be greased, RFC 9287) on a hinted port or with a known connection ID
    return hinted || this.findShort(d) !== undefined;
  }

  /** A short header's connection: try each connection ID length in use. */
  private findShort(d: Buffer): ConnState | undefined {
    for (const len of this.cidLens.keys()) {
      if (1 + len > d.length) continue;
      const s = this.byCid.get(d.toString('hex', 1, 1 + len));
      if (s) return s;
    }
    return undefined;
  }

  /** Finds or starts the connection of a path's first usable datagram; false when there is none. */
  attach(path: QuicPath, dir: Dir, d: Buffer, ts: Timestamp): boolean {
    let st: ConnState | undefined;
    let toServer: boolean | undefined;
    if (d.length >= 7 && (d[0] & 0x80) !== 0) {
      const dcidLen = d[5];
      if (dcidLen > 20 || 6 + dcidLen > d.length) {
        this.anomalies.anomaly('quic_malformed_packet', 'cid_length');
        return false;
      }
      const dcid = d.toString('hex', 6, 6 + dcidLen);
      st = this.byCid.get(dcid);
      // A client Initial to a known first DCID on a new path is another connection (a replay, or a
      // client reusing a DCID): migration is only allowed after the handshake (RFC 9000 Section 9).
      const v0 = QUIC_VERSIONS.get(d.readUInt32BE(1));
      if (st && v0 !== undefined && v0.types[(d[0] >> 4) & 3] === LongType.Initial && st.conn.odcid?.toString('hex') === dcid) st = undefined;
      if (st) toServer = st.conn.serverCids.has(dcid) || (st.conn.odcid !== undefined && st.conn.odcid.toString('hex') === dcid);
      else {
        const version = d.readUInt32BE(1);
        const v = QUIC_VERSIONS.get(version);
        const type = v?.types[(d[0] >> 4) & 3];
        // Version Negotiation, Handshake or Retry of a connection whose start was not seen. (A
        // client's first datagram is padded to 1200 bytes, RFC 9000 Section 14.1: a "Retry" that
        // large is a client's Initial in another version's format, as in a version negotiation probe.)
        if (version === 0 || type === LongType.Handshake || (type === LongType.Retry && d.length < 1200)) {
          this.anomalies.anomaly('quic_unknown_connection');
          return false;
        }
        // a client's first long header packet: a new connection
        if (this.stats.connectionsActive >= this.options.maxConnections) {
          this.anomalies.anomaly('quic_connection_limit');
          return false;
        }
        st = this.newConnection(path.flow, dir);
        toServer = true;
      }
    } else if (d.length > 0) {
      st = this.findShort(d);
      if (st) {
        const cid = this.cidOf(st, d);
        toServer = cid !== undefined && st.conn.serverCids.has(cid);
      }
    }
    if (st === undefined || toServer === undefined) {
      this.anomalies.anomaly('quic_unknown_connection');
      return false;
    }
    path.conn = st.conn;
    path.flip = toServer !== (dir === Dir.ToServer);
    st.paths.push(path);
    if (st.conn.closeSeen || st.conn.statelessReset) path.closer?.(ts.sec + this.options.closedTimeoutSec);
    st.conn.paths++;
    st.conn.pathsSeen++;
    return true;
  }

  private cidOf(st: ConnState, d: Buffer): string | undefined {
    for (const len of this.cidLens.keys()) {
      const k = d.toString('hex', 1, 1 + len);
      if (st.cids.has(k)) return k;
    }
    return undefined;
  }

  private newConnection(flow: FlowInfo, dir: Dir): ConnState {
    // The UDP table guessed the roles from the first datagram; a client Initial fixes them.
    const f: FlowInfo =
      dir === Dir.ToServer
        ? flow
        : { ...flow, clientIp: flow.serverIp, clientPort: flow.serverPort, serverIp: flow.clientIp, serverPort: flow.clientPort };
    const events: EventSink = {
      emit: (dataset: string, fields: EcsFields, ts: Timestamp, decrypted: boolean) => {
        deepMerge(fields, { network: { transport: 'udp' } });
        const ev = buildEvent(st.flow, this.summary(st.conn), dataset, fields, ts, decrypted, st.n++);
        this.sink.quicEvent(ev, decrypted, undefined, st.origin);
      },
    };
    const conn = new QuicConnection(this, events);
    const st: ConnState = { conn, flow: f, origin: flow, paths: [], n: 0, clientBytes: 0, serverBytes: 0, cids: new Set() };
    this.states.set(conn, st);
    this.stats.connections++;
    this.stats.connectionsActive++;
    return st;
  }

  addCid(conn: QuicConnection, cid: Buffer, ofServer: boolean | undefined): void {
    const st = this.states.get(conn);
    if (!st) return;
    const k = cid.toString('hex');
    if (ofServer !== undefined) (ofServer ? conn.serverCids : conn.clientCids).add(k);
    if (cid.length === 0 || st.cids.has(k)) return;
    st.cids.add(k);
    // the first connection to use a CID keeps it (a second one with the same CID is found by path)
    if (!this.byCid.has(k)) this.byCid.set(k, st);
    this.cidLens.set(cid.length, (this.cidLens.get(cid.length) ?? 0) + 1);
  }

  /** Bytes of packets held for missing keys, all connections together. */
  pendingTotal = 0;
  pendingDelta(n: number): void {
    this.pendingTotal += n;
  }

  /** New key-log lines: every connection retries its held packets. */
  retryKeys(ts: Timestamp): void {
    this.flush();
    for (const c of this.states.keys()) c.retryHeld(ts);
  }

  /**
   * A connection ended (CONNECTION_CLOSE, stateless reset): its paths close `closedTimeoutSec` of
   * capture time later (the draining period), and it is reported then rather than at their idle
   * timeout — which also lets `run`'s replay watermark commit past it.
   */
  ended(conn: QuicConnection, ts: Timestamp): void {
    const st = this.states.get(conn);
    if (!st) return;
    for (const p of st.paths) p.closer?.(ts.sec + this.options.closedTimeoutSec);
  }

  pathClosed(path: QuicPath, counters: FlowCounters, ts: Timestamp): void {
    this.flush();
    const conn = path.conn as QuicConnection;
    const st = this.states.get(conn);
    if (!st) return;
    if (path.flip) {
      st.clientBytes += counters.serverBytes;
      st.serverBytes += counters.clientBytes;
    } else {
      st.clientBytes += counters.clientBytes;
      st.serverBytes += counters.serverBytes;
    }
    if (--conn.paths > 0) return;
    this.closeConnection(st, ts);
  }

  private closeConnection(st: ConnState, ts: Timestamp): void {
    const conn = st.conn;
    this.states.delete(conn);
    this.stats.connectionsActive--;
    for (const k of st.cids) {
      if (this.byCid.get(k) === st) this.byCid.delete(k);
      const len = k.length / 2;
      const n = (this.cidLens.get(len) ?? 1) - 1;
      if (n <= 0) this.cidLens.delete(len);
      else this.cidLens.set(len, n);
    }
    try {
      conn.close(ts);
    } catch (e) {
      this.anomalies.anomaly('handler_error', e instanceof Error ? e.message : String(e));
    }
    const status = conn.status;
    const summary = this.summary(conn);
    const tls: Record<string, unknown> = { established: conn.established };
    const leaf = conn.certificates[0];
    const x509 = leaf ? describeCertificate(leaf) : undefined;
    if (x509) tls.server = { x509 };
    const quic: Record<string, unknown> = {
      version: conn.version?.name ?? `0x${conn.versionId.toString(16).padStart(8, '0')}`,
      connection_ids: { client: [...conn.clientCids], server: [...conn.serverCids] },
      retry: conn.retry,
      packets: conn.counts.packets,
      decrypted_packets: conn.counts.decrypted,
      failed_packets: conn.counts.failed,
      paths: conn.pathsSeen,
    };
    if (conn.odcid) quic.original_destination_connection_id = conn.odcid.toString('hex');
    if (conn.retrySourceCid) quic.retry_source_connection_id = conn.retrySourceCid.toString('hex');
    if (conn.versionNegotiation) quic.version_negotiation = conn.versionNegotiation.map((v) => `0x${v.toString(16).padStart(8, '0')}`);
    if (conn.keyUpdates > 0) quic.key_updates = conn.keyUpdates;
    if (conn.statelessReset) quic.stateless_reset = true;
    const fields: EcsFields = {
      tls,
      // 'paused' / 'disabled' (ops) report the protected bytes not decrypted, as TLS sessions do
      decryption: conn.decision === undefined || conn.decision === 'decrypt' ? { status, bytes: conn.counts.appBytes } : { status, bytes: conn.counts.appBytes, skipped_bytes: conn.skippedBytes },
      source: { bytes: st.clientBytes },
      destination: { bytes: st.serverBytes },
      network: { transport: 'udp' },
      quic,
    };
    deepMerge(fields, fingerprintFields({ clientHello: conn.clientHello, serverHello: conn.serverHello }, { quic: true }));
    const decrypted = status === 'decrypted' || status === 'partial';
    const ev = buildEvent(st.flow, summary, 'tls.session', fields, st.flow.start, decrypted, st.n++);
    this.sink.quicEvent(ev, decrypted, { flow: st.flow, status, bytes: conn.counts.appBytes, sni: summary.sni, cipher: summary.cipher, skippedBytes: conn.decision === undefined || conn.decision === 'decrypt' ? undefined : conn.skippedBytes }, st.origin);
  }

  private summary(conn: QuicConnection): TlsSummary {
    const ch = conn.clientHello;
    const s: TlsSummary = { resumed: conn.serverHello?.preSharedKey ?? false, established: conn.established };
    if (ch) s.version = '1.3';
    if (conn.serverHello) s.cipher = suiteName(conn.serverHello.cipherSuite);
    if (ch?.sni !== undefined) s.sni = ch.sni;
    if (conn.alpn !== undefined) s.alpn = conn.alpn;
    return s;
  }

  get activeConnections(): number {
    return this.stats.connectionsActive;
  }
}
