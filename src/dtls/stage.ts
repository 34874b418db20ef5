/**
 * The DTLS stage: UDP flows whose first datagram is a DTLS 1.0 / 1.2 ClientHello (recognised by
 * content on any port: src/dtls/records.ts looksLikeClientHello) carry DTLS associations. Both
 * directions of the flow go to the association; a ClientHello with a new random after a
 * ServerHello starts the flow's next association (a client reconnecting from the same port).
 *
 * One `tls.session` event per association, when the next one starts or the UDP flow closes (idle
 * timeout, eviction, end of input): `network.transport: udp`, `tls.version_protocol: dtls`, the
 * common TLS fields, `decryption.*`, UDP payload bytes per side, and a `dtls` group (README).
 * Application data has no analyzer: its decrypted bytes are counted (`decryption.bytes`).
 */
import type { AnomalySink, EcsFields, EndReason, FlowCounters, FlowInfo, Timestamp } from '../types.js';
import { Dir } from '../types.js';
import type { UdpFlowHandler } from '../udp/index.js';
import type { SecretsStore } from '../tls/crypto/keylog.js';
import type { RsaServerKey } from '../tls/crypto/rsa.js';
import { suiteName } from '../tls/crypto/suites.js';
import { describeCertificate } from '../tls/crypto/x509.js';
import { buildEvent, type TlsSummary } from '../events/builder.js';
import type { QuicEventSink } from '../quic/stage.js';
import { DtlsAssociation, type DtlsAssociationHost, type DtlsDecision } from './association.js';
import { DTLS10, DTLS12, DTLS13, looksLikeClientHello, looksLikeProtectedRecords, splitRecords, type DtlsRecord } from './records.js';

export interface DtlsOptions {
  /** Bytes of protected records held per association while its keys are missing; beyond it they are lost (`dtls_pending_limit`). */
  maxPendingBytesPerAssociation: number;
  /** The same across all associations of an engine; beyond it they are lost (`dtls_pending_total_limit`). */
  maxPendingBytesTotal: number;
}

export const DEFAULT_DTLS_OPTIONS: Readonly<DtlsOptions> = Object.freeze({
  maxPendingBytesPerAssociation: 256 * 1024,
  maxPendingBytesTotal: 256 * 1024 * 1024,
});

export interface DtlsStageDeps {
  secrets: SecretsStore;
  /** Server keys for RSA key exchange (`--rsa-key`). */
  rsaKeys?: readonly RsaServerKey[];
  anomalies: AnomalySink;
  /** Where tls.session events go: the engine's sink for UDP sessions (the one QUIC uses). */
  sink: Pick<QuicEventSink, 'quicEvent'>;
  options?: Partial<DtlsOptions>;
  /** Ops (asset policy, resource governor): asked once per association when its ClientHello is known. */
  decide?: (flow: FlowInfo, sni: string | undefined) => DtlsDecision;
  /** Ops: seconds from an association's first protected record to its keys (once per association). */
  onSecretWait?: (seconds: number) => void;
}

export interface DtlsStats {
  associations: number;
  associationsActive: number;
}

const VERSION_NAMES: Record<number, string> = { [DTLS10]: '1.0', [DTLS12]: '1.2', [DTLS13]: '1.3' };

/** A UDP flow carrying DTLS: its current association. */
class DtlsPath implements UdpFlowHandler, DtlsAssociationHost {
  assoc: DtlsAssociation | undefined;
  /** The association's flow (roles from its ClientHello). */
  flow: FlowInfo;
  /** True when the UDP flow's client is the DTLS server (roles guessed the other way round). */
  private flip = false;
  /** Event ordinal within the UDP flow. */
  n = 0;
  private readonly recs: DtlsRecord[] = [];

  constructor(
    private readonly stage: DtlsStage,
    readonly origin: FlowInfo,
  ) {
    this.flow = origin;
  }

  get secrets(): SecretsStore {
    return this.stage.secrets;
  }
  get rsaKeys(): readonly RsaServerKey[] {
    return this.stage.rsaKeys;
  }
  get anomalies(): AnomalySink {
    return this.stage.anomalies;
  }
  get maxPendingBytes(): number {
    return this.stage.options.maxPendingBytesPerAssociation;
  }
  reservePending(n: number): boolean {
    return this.stage.reservePending(n);
  }
  releasePending(n: number): void {
    this.stage.pendingTotal -= n;
  }
  decide(sni: string | undefined): DtlsDecision {
    return this.stage.decide(this.flow, sni);
  }
  secretWait(seconds: number): void {
    this.stage.onSecretWait?.(seconds);
  }

  onDatagram(dir: Dir, payload: Buffer, ts: Timestamp): void {
    const recs = this.recs;
    recs.length = 0;
    const whole = splitRecords(payload, recs);
    let a = this.assoc;
    // (after a DTLS 1.3 ServerHello the unified headers of RFC 9147 follow: not malformed, unsupported)
    if (!whole && a?.unsupported !== true) this.stage.anomalies.anomaly('dtls_malformed_record');
    if (a === undefined || (recs.length > 0 && a.isNewClientHello(recs[0]))) {
      if (a !== undefined) this.stage.close(this, a);
      // the flow's first datagram: a ClientHello, or protected records (the capture began after the handshake)
      const mid = a === undefined && !looksLikeClientHello(payload);
      if (mid && !looksLikeProtectedRecords(payload)) return;
      // a ClientHello's sender is the client; without one, the UDP table's guess stands
      this.flip = !mid && dir !== Dir.ToServer;
      const o = this.origin;
      this.flow = this.flip
        ? { ...o, clientIp: o.serverIp, clientPort: o.serverPort, serverIp: o.clientIp, serverPort: o.clientPort, start: ts }
        : a === undefined
          ? o
          : { ...o, start: ts };
      a = this.assoc = this.stage.open(ts, this, mid);
    }
    const d = this.flip ? (dir === Dir.ToServer ? Dir.ToClient : Dir.ToServer) : dir;
    if (d === Dir.ToServer) a.clientBytes += payload.length;
    else a.serverBytes += payload.length;
    for (const r of recs) a.record(d, r, ts);
    recs.length = 0;
  }

  onClose(_reason: EndReason, _counters: FlowCounters, _ts: Timestamp): void {
    const a = this.assoc;
    this.assoc = undefined;
    if (a !== undefined) this.stage.close(this, a);
  }
}

export class DtlsStage {
  readonly stats: DtlsStats = { associations: 0, associationsActive: 0 };
  readonly options: DtlsOptions;
  readonly secrets: SecretsStore;
  readonly rsaKeys: readonly RsaServerKey[];
  readonly anomalies: AnomalySink;
  private readonly sink: DtlsStageDeps['sink'];
  private readonly decider: DtlsStageDeps['decide'];
  /** @internal (DtlsPath) */
  readonly onSecretWait: DtlsStageDeps['onSecretWait'];
  private readonly active = new Set<DtlsAssociation>();

  constructor(deps: DtlsStageDeps) {
    this.secrets = deps.secrets;
    this.rsaKeys = deps.rsaKeys ?? [];
    this.anomalies = deps.anomalies;
    this.sink = deps.sink;
    this.decider = deps.decide;
    this.onSecretWait = deps.onSecretWait;
    const o = deps.options ?? {};
    const num = (v: number | undefined, d: number): number => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : d);
    this.options = {
      maxPendingBytesPerAssociation: num(o.maxPendingBytesPerAssociation, DEFAULT_DTLS_OPTIONS.maxPendingBytesPerAssociation),
      maxPendingBytesTotal: num(o.maxPendingBytesTotal, DEFAULT_DTLS_OPTIONS.maxPendingBytesTotal),
    };
  }

  /** Bytes of records held for missing keys, all associations together. */
  pendingTotal = 0;

  /** @internal (DtlsPath) */
  reservePending(n: number): boolean {
    if (this.pendingTotal + n > this.options.maxPendingBytesTotal) return false;
    this.pendingTotal += n;
    return true;
  }

  /**
   * A new UDP flow: a DTLS path when its first datagram is a DTLS ClientHello (`fromStart`) or
   * wholly protected DTLS records (an association seen without its handshake), else undefined.
   */
  handler(flow: FlowInfo, first: Buffer): { handler: UdpFlowHandler; fromStart: boolean } | undefined {
    if (looksLikeClientHello(first)) return { handler: new DtlsPath(this, flow), fromStart: true };
    return looksLikeProtectedRecords(first) ? { handler: new DtlsPath(this, flow), fromStart: false } : undefined;
  }

  decide(flow: FlowInfo, sni: string | undefined): DtlsDecision {
    return this.decider ? this.decider(flow, sni) : 'decrypt';
  }

  /** New key-log lines (capture time `ts`): every association waiting for keys tries again. */
  retryKeys(ts: Timestamp): void {
    for (const a of this.active) a.retryKeys(ts);
  }

  get activeAssociations(): number {
    return this.stats.associationsActive;
  }

  /** @internal (DtlsPath) */
  open(ts: Timestamp, host: DtlsAssociationHost, mid: boolean): DtlsAssociation {
    const a = new DtlsAssociation(host, ts, mid);
    this.active.add(a);
    this.stats.associations++;
    this.stats.associationsActive++;
    return a;
  }

  /** @internal (DtlsPath) The association ended: its tls.session event. */
  close(path: DtlsPath, a: DtlsAssociation): void {
    if (!this.active.delete(a)) return;
    this.stats.associationsActive--;
    this.pendingTotal -= a.heldBytes; // (still held: reported, then dropped with the association)
    const ch = a.clientHello;
    const sh = a.serverHello;
    const summary: TlsSummary = {
      resumed: ch !== undefined && sh !== undefined && sh.sessionId.length > 0 && sh.sessionId.equals(ch.sessionId),
      established: a.established,
    };
    // without a ServerHello, the version its records carry
    const version = VERSION_NAMES[a.version || a.recordVersion];
    if (version !== undefined) summary.version = version;
    if (sh) summary.cipher = suiteName(sh.cipherSuite);
    if (ch?.sni !== undefined) summary.sni = ch.sni;
    if (sh?.alpn !== undefined) summary.alpn = sh.alpn;
    const tls: Record<string, unknown> = {};
    if (version !== undefined) tls.version_protocol = 'dtls';
    const leaf = a.certificates[0];
    const x509 = leaf ? describeCertificate(leaf) : undefined;
    if (x509) tls.server = { x509 };
    const status = a.status;
    const c = a.counts;
    const skipped = a.decision === 'paused' || a.decision === 'disabled';
    const fields: EcsFields = {
      tls,
      decryption: skipped ? { status, bytes: c.appBytes, skipped_bytes: a.skippedBytes } : { status, bytes: c.appBytes },
      source: { bytes: a.clientBytes },
      destination: { bytes: a.serverBytes },
      network: { transport: 'udp' },
      dtls: {
        hello_verify_request: a.helloVerifyRequest,
        client_hellos: a.clientHellos,
        records: c.records,
        decrypted_records: c.decryptedRecords,
        failed_records: c.failedRecords,
        duplicate_records: c.duplicateRecords,
        lost_records: c.lostRecords + a.missingRecords,
        alerts: c.alerts,
      },
    };
    const decrypted = status === 'decrypted' || status === 'partial';
    const flow = path.flow;
    const ev = buildEvent(flow, summary, 'tls.session', fields, a.start, decrypted, path.n++);
    this.sink.quicEvent(ev, decrypted, { flow, status, bytes: c.appBytes, sni: summary.sni, cipher: summary.cipher, skippedBytes: skipped ? a.skippedBytes : undefined }, path.origin);
  }
}
