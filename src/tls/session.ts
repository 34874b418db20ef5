/**
 * The per-connection TLS state machine: deframes both directions, reassembles and parses the
 * handshake, finds key material (NSS key log, RSA server keys, resumption cache), derives keys,
 * decrypts records and hands application data to an application analyzer.
 *
 * TLS 1.0-1.2: RFC 2246/4346/5246 (keys switch per direction at ChangeCipherSpec, §7.1), RFC 7627
 * (extended master secret), RFC 7366 (encrypt-then-MAC), RFC 5077 (tickets), RFC 5746
 * (renegotiation: a new handshake inside the protected channel, new keys at the next CCS).
 * TLS 1.3: RFC 8446 (handshake traffic keys after ServerHello §7.1, application keys after
 * Finished, KeyUpdate §4.6.3, HelloRetryRequest §4.1.4, 0-RTT §4.2.10, middlebox-compat CCS §D.4).
 *
 * Ordering: once any record has to be held back (keys not there yet), every later record and
 * gap/end of both directions is queued behind it so the analyzer sees the same interleaving as
 * the wire; plaintext records (hellos, CCS) are still processed at once, since they are what
 * unblocks the queue. The queue is drained at the end of every entry point (never from inside a
 * parser callback, which would reorder bytes).
 */
import { createHash, type Hash } from 'node:crypto';
import { digest } from '../events/digest.js';
import type { AnomalySink, AppStream, EndReason, EventSink, FlowCounters, FlowHandler, FlowInfo, Timestamp } from '../types.js';
import { Dir } from '../types.js';
import { ContentType, RECORD_HEADER_LEN, RecordDeframer, type RecordSink } from './records.js';
import {
  HandshakeReassembler,
  HandshakeType,
  type HandshakeSink,
  parseCertificate,
  parseClientHello,
  parseEncryptedExtensions,
  parseKeyUpdate,
  parseNewSessionTicket,
  parseRsaClientKeyExchange,
  parseServerHello,
  type ParsedClientHello,
  type ParsedServerHello,
} from './handshake.js';
import { suiteById, suiteName, type CipherSuite } from './crypto/suites.js';
import { extendedMasterSecret12, keyBlock12, masterSecret12, type TrafficKeys } from './crypto/prf.js';
import { nextTrafficSecret13, trafficKeys13 } from './crypto/keySchedule13.js';
import { RecordDecryptor, type DecryptResult } from './crypto/recordDecryptor.js';
import { preMasterFromKeys, type RsaServerKey } from './crypto/rsa.js';
import type { SecretsStore } from './crypto/keylog.js';
import { describeCertificate, internCertificate } from './crypto/x509.js';
import { keepCopy } from '../util/keptBytes.js';

export interface TlsInfo {
  version?: '1.0' | '1.1' | '1.2' | '1.3';
  /** IANA cipher suite name. */
  cipher?: string;
  sni?: string;
  alpn?: string;
  resumed: boolean;
  established: boolean;
  clientHello?: ParsedClientHello;
  serverHello?: ParsedServerHello;
  /** Server certificate chain (DER), leaf first. In TLS 1.3 only visible after decryption. */
  certificates: Buffer[];
  /**
   * Client certificate chain (DER), leaf first, when the server asked for one and the client sent
   * a non-empty Certificate (mutual TLS; in TLS 1.3 also post-handshake authentication, RFC 8446
   * §4.6.2). The last one sent wins (renegotiation, a second post-handshake request).
   */
  clientCertificates?: Buffer[];
}

/** 'paused' / 'disabled': decryption not attempted (ops: resource governor / asset policy); an extension of the contract's list. */
export type DecryptionStatus = 'decrypted' | 'partial' | 'no_key' | 'missing_handshake' | 'unsupported_cipher' | 'integrity_failure' | 'paused' | 'disabled';

export type { AppStream } from '../types.js';

export type AppFactory = (info: TlsInfo) => AppStream;

export interface TlsOptions {
  /** Ciphertext held per flow while keys are missing (late keys); beyond it held records are dropped. */
  maxPendingRecordBytesPerFlow: number;
  /**
   * Ciphertext held for late keys by all flows of one engine together; a flow whose record would
   * take the total past it has its held records dropped (counted 'tls_pending_total_limit').
   */
  maxPendingRecordBytesTotal: number;
  /** Largest handshake message reassembled; larger ones are skipped and counted. */
  maxHandshakeMessageBytes: number;
  /** Sequence numbers tried after records were lost in a gap (RecordDecryptor.tryResync). */
  resyncMaxSkip: number;
}

export const DEFAULT_TLS_OPTIONS: TlsOptions = {
  maxPendingRecordBytesPerFlow: 1 << 20,
  maxPendingRecordBytesTotal: 256 << 20,
  maxHandshakeMessageBytes: 256 * 1024,
  resyncMaxSkip: 64,
};

/**
 * TLS 1.2 resumption state for captures decrypted with an RSA server key only: the key log has
 * the master secret of every connection, but the RSA key only opens full handshakes, so the
 * master secrets they yield are kept by session id (RFC 5246 §7.4.1.2) and by ticket (RFC 5077).
 * A bounded LRU shared by all flows.
 */
export class SessionCache {
  private readonly map = new Map<string, Buffer>();
  constructor(readonly maxEntries = 100_000) {}

  get size(): number {
    return this.map.size;
  }

  private put(key: string, master: Buffer): void {
    this.map.delete(key);
    this.map.set(key, keepCopy(master)); // (a pool slice would keep its whole 8 KiB pool alive)
    while (this.map.size > this.maxEntries) {
      const oldest = this.map.keys().next().value as string;
      this.map.delete(oldest);
    }
  }

  private take(key: string): Buffer | undefined {
    const v = this.map.get(key);
    if (v) {
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }

  setBySessionId(id: Buffer, master: Buffer): void {
    if (id.length > 0) this.put('i' + id.toString('hex'), master);
  }
  getBySessionId(id: Buffer): Buffer | undefined {
    return id.length > 0 ? this.take('i' + id.toString('hex')) : undefined;
  }
  setByTicket(ticket: Buffer, master: Buffer): void {
    if (ticket.length > 0) this.put('t' + digest('sha256', ticket, 'base64'), master);
  }
  getByTicket(ticket: Buffer): Buffer | undefined {
    return ticket.length > 0 ? this.take('t' + digest('sha256', ticket, 'base64')) : undefined;
  }
}

export interface TlsContext {
  secrets: SecretsStore;
  rsaKeys: RsaServerKey[];
  sessionCache: SessionCache;
  anomalies: AnomalySink;
  options?: Partial<TlsOptions>;
  /**
   * Ops (src/ops/shard.ts): whether to decrypt this session, asked once, when the first protected
   * record needs keys. 'paused' / 'disabled': no keys derived, nothing held for late keys.
   */
  decide?: (sni: string | undefined) => 'decrypt' | 'paused' | 'disabled';
  /** Ops: capture-time seconds from the first protected record to the keys being found (once per session). */
  onSecretWait?: (seconds: number) => void;
  /** Called first thing in every onClose (the engine's late-key registry forgets the handler). */
  closing?: (h: TlsFlowHandler) => void;
  /**
   * Ciphertext held for late keys across all flows of an engine (maxPendingRecordBytesTotal).
   * Shared by the flows; without it only the per-flow limit applies.
   */
  pendingBudget?: PendingBudget;
}

/** Bytes of ciphertext held for late keys by all flows sharing this object. */
export class PendingBudget {
  used = 0;
  constructor(readonly max: number) {}
}

/** An app factory as an object (one per flow that is also the flow's event sink: no closure). */
export interface AppFactoryObject {
  createApp(info: TlsInfo): AppStream;
}

const optionsCache = new WeakMap<object, TlsOptions>();
/** The merged options, one object per distinct `ctx.options` (not one per flow). */
function tlsOptionsOf(o: Partial<TlsOptions> | undefined): TlsOptions {
  if (!o) return DEFAULT_TLS_OPTIONS;
  let r = optionsCache.get(o);
  if (!r) {
    r = { ...DEFAULT_TLS_OPTIONS, ...o };
    optionsCache.set(o, r);
  }
  return r;
}

/** TLS 1.3 key phase of one direction. */
const enum Phase {
  /** No protection yet (before ServerHello). */
  Plain,
  /** Client only: 0-RTT offered; records are tried with the handshake key, then the early key. */
  Early,
  Handshake,
  Application,
}

/**
 * One direction's state. Its record deframer and handshake reassembler are created on first use
 * (a flow waiting for its ServerHello has bytes in one direction only), and the state object
 * itself is their sink (no closures per flow).
 */
class DirState implements RecordSink, HandshakeSink {
  /** TLS 1.2: ChangeCipherSpec seen, later records are protected. */
  ccs = false;
  phase: Phase = Phase.Plain;
  dec?: RecordDecryptor = undefined;
  /** TLS 1.3: traffic secret behind `dec` (KeyUpdate derives the next one from it). */
  secret?: Buffer = undefined;
  earlyDec?: RecordDecryptor = undefined;
  /** Whole records lost (gap inside a known record, held records dropped): seq moves by this. */
  lostRecords = 0;
  /** Records may have been lost in a gap: the next decryption searches sequence numbers. */
  lostUnknown = false;
  /** Application data may flow in this direction (gaps are reported to the analyzer). */
  appPhase = false;
  /** TLS 1.3: records protected with application keys seen (for `established`). */
  protectedAfterHello = 0;
  /** TLS 1.2: this direction's Finished was processed. */
  finished = false;
  /**
   * TLS 1.3 with handshake secrets missing: records are tried with application keys and the
   * handshake records that fail are skipped, not counted as failures, until one decrypts.
   */
  skipFailures = false;
  private deframerState: RecordDeframer | undefined = undefined;
  private hsState: HandshakeReassembler | undefined = undefined;

  constructor(
    readonly dir: Dir,
    private readonly h: TlsFlowHandler,
  ) {}

  get deframer(): RecordDeframer {
    return (this.deframerState ??= new RecordDeframer(this, this.h.anomalySink));
  }
  get hs(): HandshakeReassembler {
    return (this.hsState ??= new HandshakeReassembler(this, this.h.anomalySink, { maxHandshakeMessageBytes: this.h.maxHandshakeMessageBytes }));
  }
  /** End of the direction's bytes (a deframer never created holds nothing). */
  endDeframer(): void {
    this.deframerState?.end();
  }
  /** Drop a partial handshake message (none when the reassembler was never created). */
  resetHandshake(): void {
    this.hsState?.reset();
  }

  record(type: number, _version: number, header: Buffer, fragment: Buffer): void {
    this.h.onRecord(this, type, header, fragment, this.h.curTs);
  }
  lost(bytes: number, records: number): void {
    this.h.onLost(this, bytes, records, this.h.curTs);
  }
  message(type: number, body: Buffer, raw: Buffer): void {
    this.h.onHandshake(this, type, body, raw, this.h.curTs);
  }
}

const enum ItemKind {
  Record,
  Gap,
  End,
}

interface QueueItem {
  kind: ItemKind;
  dir: Dir;
  ts: Timestamp;
  type: number;
  header: Buffer;
  fragment: Buffer;
  length: number;
  records: number;
  reason: EndReason;
}

const EMPTY = Buffer.alloc(0);
/** Shared empty list of held 0-RTT plaintext (a list is made on the first push). */
const NO_EARLY: { data: Buffer; ts: Timestamp }[] = [];
const ZERO_TS: Timestamp = Object.freeze({ sec: 0, nsec: 0 });

/** Why a protected record could not be processed now. */
const enum Outcome {
  Done,
  /** Keys (or the ServerHello) may still come: hold the record. */
  Blocked,
}

function versionName(v: number): TlsInfo['version'] {
  switch (v) {
    case 0x0301:
      return '1.0';
    case 0x0302:
      return '1.1';
    case 0x0303:
      return '1.2';
    case 0x0304:
      return '1.3';
    default:
      return undefined;
  }
}

/** Safe detail text for anomalies: never includes key material, only the error's message head. */
function errText(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  return m.replace(/[0-9a-f]{32,}/gi, '<hex>').slice(0, 200);
}

/**
 * The handshake transcript for the RFC 7627 session hash. Which hash it needs is only known at the
 * ServerHello (TLS 1.2 PRF hash of the suite, MD5+SHA-1 before 1.2), and most flows never need one
 * (TLS 1.3, no extended_master_secret): so until then the messages are kept as bytes (a few KB,
 * only during the handshake) instead of running four hash contexts per flow from the ClientHello
 * on, which cost memory on every waiting flow and CPU on every handshake. From the ServerHello on
 * (`streamAs`) the later messages (the certificate chain among them) go straight into the hash,
 * without a copy.
 */
class Transcript {
  /** The first message (the ClientHello: usually the only one while a flow waits), then the rest. */
  private readonly first: Buffer;
  private rest: Buffer[] | undefined = undefined;
  /** The running hashes once the algorithms are known. */
  private hashes: Map<string, Hash> | undefined = undefined;

  /** `first` is kept as is: a message the caller owns and never changes (the ClientHello's own copy). */
  constructor(first: Buffer) {
    this.first = first;
  }

  update(raw: Buffer): void {
    if (this.hashes) for (const h of this.hashes.values()) h.update(raw);
    else (this.rest ??= []).push(Buffer.from(raw));
  }

  /** Hashes with `algs` from now on (the messages so far first); `digest` then takes one of them, once. */
  streamAs(algs: readonly string[]): void {
    if (this.hashes) return;
    this.hashes = new Map();
    for (const alg of algs) this.hashes.set(alg, this.hashOf(alg));
    this.rest = undefined;
  }

  digest(alg: string): Buffer {
    const h = this.hashes?.get(alg);
    if (h) return h.digest();
    if (this.hashes) throw new Error(`transcript hashed with ${[...this.hashes.keys()].join('+')}, not ${alg}`);
    return this.hashOf(alg).digest();
  }

  private hashOf(alg: string): Hash {
    const h = createHash(alg);
    h.update(this.first);
    if (this.rest) for (const p of this.rest) h.update(p);
    return h;
  }
}

/** The hash(es) of the RFC 7627 session hash: the suite's PRF hash from TLS 1.2 on, else MD5 and SHA-1. */
export function sessionHashAlgs(version: number, suite: CipherSuite): readonly string[] {
  return version >= 0x0303 ? [suite.prfHash] : MD5_SHA1;
}
const MD5_SHA1: readonly string[] = ['md5', 'sha1'];

export class TlsFlowHandler implements FlowHandler {
  readonly info: TlsInfo = { resumed: false, established: false, certificates: [] };
  private readonly opts: TlsOptions;
  private readonly anomalies: AnomalySink;
  private readonly dirs: [DirState, DirState];
  private app: AppStream | undefined;
  private closed = false;

  private clientHello: ParsedClientHello | undefined;
  private serverHello: ParsedServerHello | undefined;
  private helloRetry = false;
  /**
   * 0-RTT data known to be rejected: a HelloRetryRequest (RFC 8446 §4.1.4) or a ServerHello
   * without pre_shared_key (early data needs the PSK, §4.2.10).
   */
  private earlyRejected = false;
  /**
   * 0-RTT application data decrypted before it is known whether the server accepted it (the
   * early records precede the server's flight): held until EncryptedExtensions (early_data or
   * not), the client's EndOfEarlyData (accepted) or a client record under the handshake key
   * without EndOfEarlyData (rejected), then delivered or dropped, so the analyzer never sees data
   * the server discarded. Bounded by maxPendingRecordBytesPerFlow.
   */
  private earlyPlain: { data: Buffer; ts: Timestamp }[] = NO_EARLY;
  private earlyPlainBytes = 0;
  private encryptedExtensionsSeen = false;
  /** TLS 1.2 renegotiation (RFC 5746) in progress: a new handshake inside the protected channel. */
  private renegotiating = false;
  private suite: CipherSuite | undefined;
  private version = 0;
  private tls13 = false;
  private unsupported = false;
  private ems = false;
  private etm = false;

  // TLS 1.2 key material
  private master: Buffer | undefined;
  private keys12: { client: TrafficKeys; server: TrafficKeys } | undefined;
  private encPreMaster: Buffer | undefined;
  private rsaTried = false;
  private transcript: Transcript | undefined;
  private sessionHash: Buffer | undefined;
  private sawServerCertificate = false;
  private sawClientKeyExchange = false;
  private pendingTickets: Buffer[] | undefined = undefined;

  // accounting
  private decryptedRecords = 0;
  private failedRecords = 0;
  private lostRecords = 0;
  private droppedRecords = 0;
  private appBytes = 0;
  private keysFound = false;
  private serverAfterClient = false;
  /** Ops decision, made at the first protected record (undefined before). */
  private decision: 'decrypt' | 'paused' | 'disabled' | undefined;
  /** Protected bytes not decrypted because of the decision. */
  private skippedBytes = 0;
  private firstProtectedTs: Timestamp | undefined;
  /** Capture time at the entry point that started the current drain (key arrival for late keys). */
  private drainEntryTs: Timestamp | undefined;

  private readonly queue: QueueItem[] = [];
  private queueBytes = 0;
  private draining = false;
  /**
   * Application-data records of one direction authenticated as one run (batchRecord), in order:
   * the buffer holding each (RecordDeframer.takeRecord), its plaintext length and capture time.
   * Nothing of them is counted or delivered until flushPending has checked the run's tag.
   */
  private pendDs: DirState | undefined = undefined;
  private pendDec: RecordDecryptor | undefined = undefined;
  private readonly pendBufs: Buffer[] = [];
  private readonly pendLens: number[] = [];
  private readonly pendTs: Timestamp[] = [];
  /** Plaintext bytes of the run. */
  private pendBytes = 0;

  constructor(
    readonly flow: FlowInfo,
    private readonly ctx: TlsContext,
    private readonly events: EventSink,
    private readonly appFactory: AppFactory | AppFactoryObject,
  ) {
    this.opts = tlsOptionsOf(ctx.options);
    this.anomalies = ctx.anomalies;
    this.dirs = [new DirState(Dir.ToServer, this), new DirState(Dir.ToClient, this)];
  }

  /** @internal (DirState) */
  get anomalySink(): AnomalySink {
    return this.anomalies;
  }
  /** @internal (DirState) */
  get maxHandshakeMessageBytes(): number {
    return this.opts.maxHandshakeMessageBytes;
  }

  /** Capture time of the bytes being processed (set by every entry point and by the drain). */
  /** @internal (DirState) */
  curTs: Timestamp = ZERO_TS;

  // ---------------------------------------------------------------- public API

  onData(dir: Dir, data: Buffer, ts: Timestamp): void {
    if (this.closed) return;
    try {
      this.curTs = ts;
      this.dirs[dir === Dir.ToClient ? 1 : 0].deframer.push(data);
      this.drain();
    } catch (e) {
      this.internal(e);
    }
  }

  onGap(dir: Dir, length: number, ts: Timestamp): void {
    if (this.closed) return;
    try {
      this.flushPending();
      this.curTs = ts;
      this.dirs[dir === Dir.ToClient ? 1 : 0].deframer.gap(length);
      this.drain();
    } catch (e) {
      this.internal(e);
    }
  }

  onEnd(dir: Dir, reason: EndReason, ts: Timestamp): void {
    if (this.closed) return;
    try {
      this.flushPending();
      this.curTs = ts;
      const ds = this.dirs[dir === Dir.ToClient ? 1 : 0];
      ds.endDeframer();
      if (this.queue.length > 0) this.enqueue(ItemKind.End, ds, ts, 0, EMPTY, EMPTY, 0, 0, reason);
      else this.app?.onEnd(dir, reason, ts);
    } catch (e) {
      this.internal(e);
    }
  }

  onClose(reason: EndReason, counters: FlowCounters, ts: Timestamp): void {
    this.ctx.closing?.(this);
    if (this.closed) return;
    try {
      this.flushPending();
    } catch (e) {
      this.internal(e);
    }
    this.closed = true;
    try {
      this.drain();
      // Acceptance of 0-RTT data never learned (server flight not decrypted): show it.
      this.releaseEarly(true);
    } catch (e) {
      this.internal(e);
    }
    try {
      for (const ds of this.dirs) ds.endDeframer();
      this.app?.onClose(ts);
    } catch (e) {
      this.internal(e);
    }
    try {
      const status = this.status;
      const tls: Record<string, unknown> = { established: this.info.established };
      const leaf = this.info.certificates[0];
      const x509 = leaf ? describeCertificate(leaf) : undefined;
      if (x509) tls.server = { x509 };
      const clientLeaf = this.info.clientCertificates?.[0];
      const clientX509 = clientLeaf ? describeCertificate(clientLeaf) : undefined;
      if (clientX509) tls.client = { x509: clientX509 };
      this.events.emit(
        'tls.session',
        {
          tls,
          decryption: this.decision === undefined || this.decision === 'decrypt' ? { status, bytes: this.appBytes } : { status, bytes: this.appBytes, skipped_bytes: this.skippedBytes },
          source: { bytes: counters.clientBytes },
          destination: { bytes: counters.serverBytes },
        },
        this.flow.start,
        status === 'decrypted' || status === 'partial',
      );
    } catch (e) {
      this.internal(e);
    }
    this.queue.length = 0;
    this.setQueueBytes(0);
    void reason;
  }

  /** Late keys: new secrets for this flow's client random arrived; decrypt what is held. */
  retryKeys(ts: Timestamp): void {
    if (this.closed) return;
    try {
      this.flushPending();
      this.curTs = ts;
      this.drain();
    } catch (e) {
      this.internal(e);
    }
  }

  get status(): DecryptionStatus {
    if (!this.clientHello || !this.serverHello || this.helloRetry) return 'missing_handshake';
    if (this.unsupported) return 'unsupported_cipher';
    if (this.decision === 'paused' || this.decision === 'disabled') return this.decision;
    if (this.decryptedRecords === 0) {
      if (this.failedRecords > 0) return 'integrity_failure';
      if (!this.keysFound || this.queue.length > 0) return 'no_key';
      return this.lostRecords + this.droppedRecords > 0 ? 'partial' : 'decrypted';
    }
    if (this.failedRecords > 0 || this.lostRecords > 0 || this.droppedRecords > 0 || this.queue.length > 0) return 'partial';
    return 'decrypted';
  }

  /** True while records are held back waiting for key material (the engine may watch for late keys). */
  get waitingForKeys(): boolean {
    return this.queue.length > 0;
  }

  /** Nothing held and keys not awaited: closing now gives the same events as closing later. */
  settled(): boolean {
    try {
      this.flushPending();
    } catch (e) {
      this.internal(e);
    }
    return this.queue.length === 0 && this.status !== 'no_key';
  }

  /** Plaintext application bytes delivered. */
  get decryptedBytes(): number {
    return this.appBytes;
  }

  /** The 32-byte ClientHello.random (the key log index), once seen. */
  get clientRandom(): Buffer | undefined {
    return this.clientHello?.random;
  }

  // ---------------------------------------------------------------- records

  private internal(e: unknown): void {
    try {
      this.anomalies.anomaly('tls_internal_error', errText(e));
    } catch {
      /* the sink itself failed: nothing more to do */
    }
  }

  /** @internal (DirState) */
  onRecord(ds: DirState, type: number, header: Buffer, fragment: Buffer, ts: Timestamp): void {
    if (this.isProtected(ds, type)) {
      if (this.tls13 && ds.phase !== Phase.Plain) {
        ds.protectedAfterHello++;
        if (ds.dir === Dir.ToClient && this.dirs[0].protectedAfterHello > 0) this.serverAfterClient = true;
        this.updateEstablished();
      }
      if (this.queue.length === 0 && this.batchRecord(ds, header, fragment, ts)) return;
      this.flushPending();
      if (this.queue.length > 0 || this.processProtected(ds, header, fragment, ts) === Outcome.Blocked) {
        this.enqueue(ItemKind.Record, ds, ts, type, header, fragment, 0, 0, 'eof');
      }
      return;
    }
    this.flushPending();
    this.processPlain(ds, type, fragment, ts);
  }

  /** Records per authenticated run at most (the latency of a direction's byte count, in records). */
  private static readonly MAX_RUN = 32;

  /**
   * A TLS 1.3 AES-GCM application-data record that processProtected would authenticate without
   * decrypting (its plaintext skippable), and that does not end the analyzer's skippable bytes
   * (what ends them may complete a message, i.e. emit an event, which must happen now): added to
   * the direction's run (RecordDecryptor.batchAppData13) and kept, its bytes counted and delivered
   * by flushPending once the run's one tag check has passed. Every other record, and every other
   * entry point, flushes the run first, so the analyzer sees the same calls in the same order as
   * record by record, and the flow's events stay where they were among other flows'. False: not
   * taken (nothing changed).
   */
  private batchRecord(ds: DirState, header: Buffer, fragment: Buffer, ts: Timestamp): boolean {
    const dec = ds.dec;
    const app = this.app;
    if (
      dec === undefined ||
      !this.tls13 ||
      !ds.appPhase ||
      ds.phase === Phase.Early ||
      ds.skipFailures ||
      ds.lostRecords !== 0 ||
      ds.lostUnknown ||
      this.decision !== 'decrypt' ||
      this.unsupported ||
      this.helloRetry ||
      !this.clientHello ||
      !this.serverHello ||
      app?.skippable === undefined ||
      (this.pendDs !== undefined && (this.pendDs !== ds || this.pendDec !== dec))
    ) {
      return false;
    }
    if (app.skippable(ds.dir) - this.pendBytes <= fragment.length - 17) return false;
    const buf = ds.deframer.takeRecord(header, fragment);
    if (buf === undefined) return false;
    const n = dec.batchAppData13(header, fragment);
    if (n < 0) {
      RecordDeframer.releaseRecord(buf);
      return false;
    }
    this.pendDs = ds;
    this.pendDec = dec;
    this.pendBufs.push(buf);
    this.pendLens.push(n);
    this.pendTs.push(ts);
    this.pendBytes += n;
    if (this.pendBufs.length >= TlsFlowHandler.MAX_RUN) this.flushPending();
    return true;
  }

  /**
   * Ends the run of batchRecord: when its tag checks, each record is counted and its bytes
   * delivered as processProtected does; otherwise the records go through processProtected one
   * by one from the run's first sequence number, which finds and reports the bad ones as before.
   */
  private flushPending(): void {
    const ds = this.pendDs;
    if (ds === undefined) return;
    const dec = this.pendDec as RecordDecryptor;
    this.pendDs = undefined;
    this.pendDec = undefined;
    this.pendBytes = 0;
    const bufs = this.pendBufs;
    const lens = this.pendLens;
    const tss = this.pendTs;
    const m = bufs.length;
    try {
      if (dec.checkBatch()) {
        const app = this.app as AppStream;
        for (let i = 0; i < m; i++) {
          this.decryptedRecords++;
          const n = lens[i];
          if (n > 0) {
            this.appBytes += n;
            app.onSkipped?.(ds.dir, n, tss[i]);
          }
        }
      } else {
        const saved = this.curTs;
        for (let i = 0; i < m; i++) {
          const b = bufs[i];
          this.curTs = tss[i];
          this.processProtected(ds, b.subarray(0, RECORD_HEADER_LEN), b.subarray(RECORD_HEADER_LEN, RECORD_HEADER_LEN + lens[i] + 17), tss[i]);
        }
        this.curTs = saved;
      }
    } finally {
      for (let i = 0; i < m; i++) RecordDeframer.releaseRecord(bufs[i]);
      bufs.length = 0;
      lens.length = 0;
      tss.length = 0;
    }
  }

  /** Whether a record of this type in this direction is protected now. */
  private isProtected(ds: DirState, type: number): boolean {
    if (type === ContentType.ChangeCipherSpec) return false;
    if (this.tls13 || (!this.serverHello && type === ContentType.ApplicationData)) {
      // TLS 1.3 protected records always carry the outer type application_data (§5.2);
      // application_data before ServerHello is 0-RTT data.
      return type === ContentType.ApplicationData;
    }
    if (ds.ccs) return true;
    return false;
  }

  private processPlain(ds: DirState, type: number, fragment: Buffer, ts: Timestamp): void {
    switch (type) {
      case ContentType.Handshake:
        ds.hs.push(fragment);
        return;
      case ContentType.ChangeCipherSpec:
        this.onChangeCipherSpec(ds);
        return;
      case ContentType.Alert:
        this.onAlert(fragment);
        return;
      case ContentType.Heartbeat:
        this.anomalies.anomaly('tls_heartbeat');
        return;
      case ContentType.ApplicationData:
        // Application data without protection before keys are in place (no ClientHello seen,
        // or TLS 1.2 before ChangeCipherSpec): nothing to decrypt.
        if (this.clientHello && this.serverHello) this.anomalies.anomaly('tls_unexpected_plaintext_record');
        void ts;
        return;
      default:
        return;
    }
  }

  private onChangeCipherSpec(ds: DirState): void {
    if (this.tls13 || !this.serverHello) return; // RFC 8446 §5: compatibility CCS is ignored
    // Also the renegotiation case: the new keys take over at this direction's CCS.
    ds.ccs = true;
    ds.dec = undefined;
    if (ds.dir === Dir.ToClient && !this.renegotiating && !this.sawServerCertificate && !this.sawClientKeyExchange) {
      // Abbreviated handshake (RFC 5246 §7.3, RFC 5077 §3.1): the server's CCS follows ServerHello
      // (or NewSessionTicket) directly.
      this.info.resumed = true;
    }
    this.updateEstablished();
  }

  private onAlert(fragment: Buffer): void {
    if (fragment.length < 2) {
      this.anomalies.anomaly('tls_alert_malformed');
      return;
    }
    // RFC 8446 §6: level fatal(2); close_notify(0) is a normal closure.
    if (fragment[0] === 2) this.anomalies.anomaly('tls_alert_fatal', String(fragment[1]));
  }

  /** @internal (DirState) */
  onLost(ds: DirState, bytes: number, records: number, ts: Timestamp): void {
    this.flushPending();
    if (this.queue.length > 0) {
      this.enqueue(ItemKind.Gap, ds, ts, 0, EMPTY, EMPTY, bytes, records, 'eof');
      return;
    }
    this.applyLost(ds, bytes, records, ts);
  }

  private applyLost(ds: DirState, bytes: number, records: number, ts: Timestamp): void {
    if (records >= 0) {
      ds.lostRecords += records;
      this.lostRecords += records;
    } else {
      ds.lostUnknown = true;
      this.lostRecords += 1;
    }
    // A handshake message spanning the gap can never complete.
    ds.resetHandshake();
    if (ds.appPhase && this.keysFound) this.appStream().onGap(ds.dir, bytes, ts);
  }

  private enqueue(
    kind: ItemKind,
    ds: DirState,
    ts: Timestamp,
    type: number,
    header: Buffer,
    fragment: Buffer,
    length: number,
    records: number,
    reason: EndReason,
  ): void {
    const item: QueueItem = {
      kind,
      dir: ds.dir,
      ts,
      type,
      header: header.length ? Buffer.from(header) : EMPTY,
      fragment: fragment.length ? Buffer.from(fragment) : EMPTY,
      length,
      records,
      reason,
    };
    this.queue.push(item);
    this.setQueueBytes(this.queueBytes + header.length + fragment.length);
    const budget = this.ctx.pendingBudget;
    if (this.queueBytes > this.opts.maxPendingRecordBytesPerFlow) {
      this.anomalies.anomaly('tls_pending_limit', String(this.opts.maxPendingRecordBytesPerFlow));
      this.dropQueue();
    } else if (budget && budget.used > budget.max) {
      this.anomalies.anomaly('tls_pending_total_limit', String(budget.max));
      this.dropQueue();
    }
  }

  /** Held bytes of this flow, mirrored into the engine-wide budget. */
  private setQueueBytes(n: number): void {
    const budget = this.ctx.pendingBudget;
    if (budget) budget.used += n - this.queueBytes;
    this.queueBytes = n;
  }

  /** Held records over the limit: drop them, remembering how many records each direction lost. */
  private dropQueue(): void {
    const items = this.queue.splice(0, this.queue.length);
    this.setQueueBytes(0);
    for (const it of items) {
      const ds = this.dirs[it.dir === Dir.ToClient ? 1 : 0];
      if (it.kind === ItemKind.Record) {
        this.droppedRecords++;
        ds.lostRecords++;
      } else if (it.kind === ItemKind.Gap) {
        this.applyLost(ds, it.length, it.records, it.ts);
      } else {
        this.app?.onEnd(it.dir, it.reason, it.ts);
      }
    }
  }

  /** Process held items in order until one is still blocked. Never re-entered. */
  private drain(): void {
    if (this.draining || this.queue.length === 0) return;
    this.draining = true;
    const saved = this.curTs;
    this.drainEntryTs = saved;
    try {
      while (this.queue.length > 0) {
        const it = this.queue[0];
        const ds = this.dirs[it.dir === Dir.ToClient ? 1 : 0];
        this.curTs = it.ts;
        if (it.kind === ItemKind.Record) {
          if (this.processProtected(ds, it.header, it.fragment, it.ts) === Outcome.Blocked) break;
          this.setQueueBytes(this.queueBytes - (it.header.length + it.fragment.length));
        } else if (it.kind === ItemKind.Gap) {
          this.applyLost(ds, it.length, it.records, it.ts);
        } else {
          this.app?.onEnd(it.dir, it.reason, it.ts);
        }
        this.queue.shift();
      }
    } finally {
      this.draining = false;
      this.curTs = saved;
    }
  }

  /** Decrypt one protected record and dispatch its content. */
  private processProtected(ds: DirState, header: Buffer, fragment: Buffer, ts: Timestamp): Outcome {
    if (!this.clientHello) return Outcome.Done; // capture started mid-connection
    if (!this.serverHello || this.helloRetry) {
      // 0-RTT data (or records before a lost ServerHello): the suite is not known yet.
      return this.closed ? Outcome.Done : Outcome.Blocked;
    }
    if (this.unsupported || !this.suite) return Outcome.Done;
    if (this.decision === undefined) {
      // Once per session (ops: resource governor / asset policy).
      this.decision = this.ctx.decide?.(this.info.sni) ?? 'decrypt';
      this.firstProtectedTs = ts;
    }
    if (this.decision !== 'decrypt') {
      this.skippedBytes += fragment.length;
      return Outcome.Done;
    }
    if (this.tls13 && ds.phase === Phase.Early) return this.processEarly(ds, header, fragment, ts);
    const dec = this.decryptorFor(ds);
    if (!dec) {
      if (!this.closed) return Outcome.Blocked;
      this.droppedRecords++; // still no key when the flow ended
      return Outcome.Done;
    }
    if (ds.appPhase && this.app?.skippable && ds.lostRecords === 0 && !ds.lostUnknown && this.app.skippable(ds.dir) >= fragment.length - 17) {
      // Application data nobody reads (e.g. the bulk of an HTTP/1 body): authenticated, not decrypted.
      const n = dec.authenticateAppData13(header, fragment);
      if (n >= 0) {
        ds.skipFailures = false;
        this.decryptedRecords++;
        if (n > 0) {
          this.appBytes += n;
          this.app.onSkipped?.(ds.dir, n, ts);
        }
        return Outcome.Done;
      }
    }
    const r = this.decryptWith(ds, dec, header, fragment);
    if (!r.ok && ds.skipFailures) {
      this.anomalies.anomaly('tls13_handshake_record_skipped');
      return Outcome.Done;
    }
    ds.skipFailures = false;
    if (!r.ok) {
      if (this.tls13 && ds.phase === Phase.Handshake && this.tryApplicationKeys13(ds, header, fragment, ts)) return Outcome.Done;
      this.failedRecords++;
      this.anomalies.anomaly(r.error === 'integrity_failure' ? 'tls_decrypt_failed' : 'tls_decrypt_' + r.error);
      return Outcome.Done;
    }
    this.decryptedRecords++;
    this.dispatchPlaintext(ds, r.contentType, r.plaintext, ts);
    return Outcome.Done;
  }

  private decryptWith(ds: DirState, dec: RecordDecryptor, header: Buffer, fragment: Buffer): DecryptResult {
    if (ds.lostRecords > 0) {
      dec.seq += BigInt(ds.lostRecords);
      ds.lostRecords = 0;
    }
    if (ds.lostUnknown) {
      const r = dec.tryResync(header, fragment, this.opts.resyncMaxSkip);
      if (r.ok) ds.lostUnknown = false;
      // On failure tryResync leaves seq unchanged; the next record searches the same window.
      return r;
    }
    return dec.decrypt(header, fragment);
  }

  /**
   * The handshake key failed in TLS 1.3: when the handshake's Finished was lost (gap, dropped
   * records, or no handshake secrets logged), application keys may already be in use. Try them
   * from sequence number 0; on success the direction moves to the application phase.
   */
  private tryApplicationKeys13(ds: DirState, header: Buffer, fragment: Buffer, ts: Timestamp): boolean {
    const secret = this.secret13(ds.dir === Dir.ToServer ? 'CLIENT_TRAFFIC_SECRET_0' : 'SERVER_TRAFFIC_SECRET_0');
    if (!secret || !this.suite) return false;
    const dec = new RecordDecryptor(this.suite, trafficKeys13(this.suite, secret), { tls13: true, encryptThenMac: false });
    const r = dec.tryResync(header, fragment, this.opts.resyncMaxSkip);
    if (!r.ok) return false;
    this.anomalies.anomaly('tls13_handshake_keys_skipped');
    ds.phase = Phase.Application;
    ds.appPhase = true;
    ds.dec = dec;
    ds.secret = secret;
    ds.lostUnknown = false;
    ds.resetHandshake();
    this.foundKeys();
    this.decryptedRecords++;
    this.dispatchPlaintext(ds, r.contentType, r.plaintext, ts);
    return true;
  }

  /**
   * RFC 8446 §4.2.10: after a ClientHello with early_data the client's records are 0-RTT data
   * (early traffic key) until EndOfEarlyData, or, when the server rejected 0-RTT, records it
   * will skip. Like Wireshark, try the handshake key first: once it works, early data is over.
   * Known rejection (HelloRetryRequest, no PSK in ServerHello, EncryptedExtensions without
   * early_data) skips the record without trying the early key.
   */
  private processEarly(ds: DirState, header: Buffer, fragment: Buffer, ts: Timestamp): Outcome {
    const hsSecret = this.secret13('CLIENT_HANDSHAKE_TRAFFIC_SECRET');
    if (!hsSecret) {
      if (!this.closed) return Outcome.Blocked;
      this.droppedRecords++;
      return Outcome.Done;
    }
    const suite = this.suite as CipherSuite;
    if (!ds.dec) {
      ds.dec = new RecordDecryptor(suite, trafficKeys13(suite, hsSecret), { tls13: true, encryptThenMac: false });
      ds.secret = hsSecret;
      this.foundKeys();
    }
    const seq = ds.dec.seq;
    const r = ds.dec.decrypt(header, fragment);
    if (r.ok) {
      // The handshake key works before any EndOfEarlyData: the server rejected the 0-RTT data.
      this.releaseEarly(false);
      ds.phase = Phase.Handshake;
      this.decryptedRecords++;
      this.dispatchPlaintext(ds, r.contentType, r.plaintext, ts);
      return Outcome.Done;
    }
    ds.dec.seq = seq;
    if (this.earlyRejected) {
      this.anomalies.anomaly('tls13_early_data_skipped');
      return Outcome.Done;
    }
    if (!ds.earlyDec) {
      const early = this.secret13('CLIENT_EARLY_TRAFFIC_SECRET');
      if (early) ds.earlyDec = new RecordDecryptor(suite, trafficKeys13(suite, early), { tls13: true, encryptThenMac: false });
    }
    if (ds.earlyDec) {
      const e = ds.earlyDec.decrypt(header, fragment);
      if (e.ok) {
        this.decryptedRecords++;
        ds.appPhase = true;
        if (e.contentType === ContentType.ApplicationData && !this.encryptedExtensionsSeen) this.holdEarly(e.plaintext, ts);
        else this.dispatchPlaintext(ds, e.contentType, e.plaintext, ts);
        return Outcome.Done;
      }
      ds.earlyDec.seq--;
      // Rejected 0-RTT data: the server skips it too.
      this.anomalies.anomaly('tls13_early_data_skipped');
      return Outcome.Done;
    }
    // 0-RTT data without CLIENT_EARLY_TRAFFIC_SECRET: lost to us.
    this.anomalies.anomaly('tls13_early_data_no_key');
    this.lostRecords++;
    return Outcome.Done;
  }

  private holdEarly(data: Buffer, ts: Timestamp): void {
    if (data.length === 0) return;
    if (this.earlyPlainBytes + data.length > this.opts.maxPendingRecordBytesPerFlow) {
      this.anomalies.anomaly('tls_pending_limit', 'early_data');
      this.lostRecords++;
      return;
    }
    if (this.earlyPlain === NO_EARLY) this.earlyPlain = [];
    this.earlyPlain.push({ data: Buffer.from(data), ts });
    this.earlyPlainBytes += data.length;
  }

  /** Deliver (accepted or unknown) or drop (rejected) the held 0-RTT data. */
  private releaseEarly(accepted: boolean): void {
    const held = this.earlyPlain;
    if (held.length === 0) return;
    this.earlyPlain = NO_EARLY;
    this.earlyPlainBytes = 0;
    const ds = this.dirs[0];
    for (const h of held) {
      if (accepted) this.dispatchPlaintext(ds, ContentType.ApplicationData, h.data, h.ts);
      else this.anomalies.anomaly('tls13_early_data_skipped');
    }
  }

  private dispatchPlaintext(ds: DirState, contentType: number, plaintext: Buffer, ts: Timestamp): void {
    switch (contentType) {
      case ContentType.ApplicationData:
        ds.appPhase = true;
        if (plaintext.length > 0) {
          this.appBytes += plaintext.length;
          this.appStream().onData(ds.dir, plaintext, ts);
        }
        return;
      case ContentType.Handshake:
        ds.hs.push(plaintext);
        return;
      case ContentType.Alert:
        this.onAlert(plaintext);
        return;
      case ContentType.Heartbeat:
        this.anomalies.anomaly('tls_heartbeat');
        return;
      default:
        this.anomalies.anomaly('tls_unexpected_inner_content_type', String(contentType));
        return;
    }
  }

  private appStream(): AppStream {
    if (!this.app) {
      const f = this.appFactory;
      this.app = typeof f === 'function' ? f(this.info) : f.createApp(this.info);
    }
    return this.app;
  }

  private updateEstablished(): void {
    if (this.info.established) return;
    if (this.tls13) {
      // Without keys: the server sent protected records after the client's first one (its
      // Finished); with keys the client's Finished sets it (onFinished).
      this.info.established = this.dirs[0].protectedAfterHello > 0 && this.dirs[1].protectedAfterHello > 0 && this.serverAfterClient;
    } else if (this.serverHello) {
      this.info.established = this.dirs[0].ccs && this.dirs[1].ccs;
    }
  }

  // ---------------------------------------------------------------- keys

  private secret13(label: string): Buffer | undefined {
    const cr = this.clientHello?.random;
    return cr ? this.ctx.secrets.get(cr, label) : undefined;
  }

  /** Keys for this session are in place; the first time, reports how long they took (ops). */
  private foundKeys(): void {
    if (this.keysFound) return;
    this.keysFound = true;
    const f = this.ctx.onSecretWait;
    const first = this.firstProtectedTs;
    if (f && first) {
      const now = this.draining && this.drainEntryTs ? this.drainEntryTs : this.curTs;
      f(Math.max(0, now.sec - first.sec + (now.nsec - first.nsec) / 1e9));
    }
  }

  /** The decryptor for this direction's current protection, building it when keys are known. */
  private decryptorFor(ds: DirState): RecordDecryptor | undefined {
    if (ds.dec) return ds.dec;
    const suite = this.suite as CipherSuite;
    if (this.tls13) {
      const client = ds.dir === Dir.ToServer;
      let label: string;
      if (ds.phase === Phase.Application) label = client ? 'CLIENT_TRAFFIC_SECRET_0' : 'SERVER_TRAFFIC_SECRET_0';
      else label = client ? 'CLIENT_HANDSHAKE_TRAFFIC_SECRET' : 'SERVER_HANDSHAKE_TRAFFIC_SECRET';
      let secret = ds.phase === Phase.Application && ds.secret ? ds.secret : this.secret13(label);
      if (!secret && ds.phase === Phase.Handshake) {
        // Handshake secrets not logged (some tools log only application secrets).
        secret = this.secret13(client ? 'CLIENT_TRAFFIC_SECRET_0' : 'SERVER_TRAFFIC_SECRET_0');
        if (secret) {
          this.anomalies.anomaly('tls13_handshake_keys_missing');
          ds.phase = Phase.Application;
          ds.appPhase = true;
          ds.lostUnknown = true;
          ds.skipFailures = true;
        }
      }
      if (!secret) return undefined;
      ds.secret = secret;
      ds.dec = new RecordDecryptor(suite, trafficKeys13(suite, secret), { tls13: true, encryptThenMac: false });
      this.foundKeys();
      return ds.dec;
    }
    if (!ds.ccs) return undefined;
    if (!this.keys12) {
      const master = this.master12();
      if (!master || !this.clientHello || !this.serverHello) return undefined;
      this.keys12 = keyBlock12(suite, master, this.clientHello.random, this.serverHello.random, this.version);
    }
    const keys = ds.dir === Dir.ToServer ? this.keys12.client : this.keys12.server;
    ds.dec = new RecordDecryptor(suite, keys, {
      tls13: false,
      encryptThenMac: this.etm,
      version: this.version,
    });
    this.foundKeys();
    return ds.dec;
  }

  /**
   * TLS 1.2 master secret: key log CLIENT_RANDOM (also logged for resumed sessions), key log
   * PMS_CLIENT_RANDOM / RSA premaster, resumption cache, or the RSA server key opening the
   * ClientKeyExchange (RFC 5246 §7.4.7.1), with RFC 7627 extended master secret when negotiated.
   */
  private master12(): Buffer | undefined {
    if (this.master) return this.master;
    const ch = this.clientHello;
    const sh = this.serverHello;
    const suite = this.suite;
    if (!ch || !sh || !suite) return undefined;
    const secrets = this.ctx.secrets;
    let master = secrets.get(ch.random, 'CLIENT_RANDOM');
    if (!master && !this.sawClientKeyExchange) {
      master = this.ctx.sessionCache.getBySessionId(ch.sessionId);
      if (!master && ch.sessionTicket) master = this.ctx.sessionCache.getByTicket(ch.sessionTicket);
    }
    if (!master) {
      let pre = secrets.get(ch.random, 'PMS_CLIENT_RANDOM');
      if (!pre && this.encPreMaster && suite.kx === 'RSA') {
        pre = secrets.getRsaPreMaster(this.encPreMaster.subarray(0, 8));
        if (!pre && !this.rsaTried) {
          this.rsaTried = true;
          pre = this.rsaPreMaster(this.encPreMaster);
        }
      }
      if (pre) {
        if (this.ems) {
          if (!this.sessionHash) return undefined;
          master = extendedMasterSecret12(suite, pre, this.sessionHash, this.version);
        } else {
          master = masterSecret12(suite, pre, ch.random, sh.random, this.version);
        }
      }
    }
    if (!master) return undefined;
    this.master = master;
    if (!this.info.resumed) this.ctx.sessionCache.setBySessionId(sh.sessionId, master);
    if (this.pendingTickets) for (const t of this.pendingTickets) this.ctx.sessionCache.setByTicket(t, master);
    this.pendingTickets = undefined;
    return master;
  }

  /** Try the RSA key whose modulus matches the server certificate first, then all others. */
  private rsaPreMaster(enc: Buffer): Buffer | undefined {
    if (this.ctx.rsaKeys.length === 0) return undefined;
    const pre = preMasterFromKeys(this.ctx.rsaKeys, this.info.certificates[0], enc);
    if (!pre) this.anomalies.anomaly('tls_rsa_decrypt_failed');
    return pre;
  }

  // ---------------------------------------------------------------- handshake messages

  /** @internal (DirState) */
  onHandshake(ds: DirState, type: number, body: Buffer, raw: Buffer, ts: Timestamp): void {
    if (this.transcript && !this.sawClientKeyExchange && type !== HandshakeType.HelloRequest) {
      this.transcript.update(raw);
    }
    const client = ds.dir === Dir.ToServer;
    switch (type) {
      case HandshakeType.ClientHello:
        if (client) this.onClientHello(ds, body, raw);
        break;
      case HandshakeType.ServerHello:
        if (!client) this.onServerHello(body);
        break;
      case HandshakeType.EncryptedExtensions:
        if (!client) {
          const ee = parseEncryptedExtensions(body);
          if (!ee) this.anomalies.anomaly('tls_malformed_encrypted_extensions');
          else {
            if (ee.alpn !== undefined) this.info.alpn = ee.alpn;
            // The server rejected 0-RTT after accepting the PSK: later early records are skipped.
            // Early records processed before this message was decrypted were already delivered.
            if (!ee.earlyData && this.dirs[0].phase === Phase.Early) this.earlyRejected = true;
            this.encryptedExtensionsSeen = true;
            this.releaseEarly(ee.earlyData);
          }
        }
        break;
      case HandshakeType.Certificate:
        if (!client) {
          this.sawServerCertificate = true;
          const c = parseCertificate(body, this.tls13, false);
          if (!c) this.anomalies.anomaly('tls_malformed_certificate');
          else this.info.certificates = c.certificates.map(internCertificate);
        } else {
          // The client's answer to a CertificateRequest; empty when it has no certificate.
          const c = parseCertificate(body, this.tls13, false);
          if (!c) this.anomalies.anomaly('tls_malformed_certificate');
          else if (c.certificates.length > 0) this.info.clientCertificates = c.certificates.map(internCertificate);
        }
        break;
      case HandshakeType.ServerHelloDone:
        if (!client) this.sawServerCertificate = true;
        break;
      case HandshakeType.ClientKeyExchange:
        if (client) this.onClientKeyExchange(body);
        break;
      case HandshakeType.NewSessionTicket:
        if (!client && !this.tls13) {
          const t = parseNewSessionTicket(body, false);
          if (!t) this.anomalies.anomaly('tls_malformed_new_session_ticket');
          else if (t.ticket.length > 0) {
            if (this.master) this.ctx.sessionCache.setByTicket(t.ticket, this.master);
            else (this.pendingTickets ??= []).push(t.ticket);
          }
        }
        break;
      case HandshakeType.Finished:
        this.onFinished(ds);
        break;
      case HandshakeType.EndOfEarlyData:
        // RFC 8446 §4.5: the client switches to its handshake key after this message.
        if (client && this.tls13) {
          // Sent only when the server accepted 0-RTT (RFC 8446 §4.5): the held data was processed.
          this.releaseEarly(true);
          ds.earlyDec = undefined;
          if (ds.phase === Phase.Early) ds.phase = Phase.Handshake;
        }
        break;
      case HandshakeType.KeyUpdate:
        if (this.tls13) this.onKeyUpdate(ds, body);
        break;
      case HandshakeType.HelloRequest:
        // RFC 5246 §7.4.1.1: the server asks for renegotiation; the ClientHello that follows starts it.
        break;
      default:
        break;
    }
    void ts;
  }

  private onClientHello(ds: DirState, body: Buffer, raw: Buffer): void {
    // One copy of the message serves the parsed hello and the transcript.
    const ch = parseClientHello(body, raw);
    if (!ch) {
      this.anomalies.anomaly('tls_malformed_client_hello');
      return;
    }
    if (this.clientHello) {
      if (!this.tls13 && this.serverHello && this.dirs[0].ccs && this.dirs[1].ccs) {
        this.startRenegotiation(ch, raw);
      } else if (!this.helloRetry) {
        this.anomalies.anomaly('tls_unexpected_client_hello');
      } else if (!ch.random.equals(this.clientHello.random)) {
        // RFC 8446 §4.1.2: the second ClientHello after HelloRetryRequest keeps the random.
        this.anomalies.anomaly('tls_hrr_random_changed');
      }
      return;
    }
    this.clientHello = ch;
    this.info.clientHello = ch;
    if (ch.sni !== undefined) this.info.sni = ch.sni;
    if (ch.extendedMasterSecret) {
      // The transcript did not exist when onHandshake hashed: it starts with this ClientHello.
      this.transcript = new Transcript(ch.message ?? Buffer.from(raw));
    }
    if (ch.earlyData) ds.phase = Phase.Early;
  }

  /**
   * TLS 1.2 renegotiation (RFC 5246 §7.4.1.1, RFC 5746): a new ClientHello inside the protected
   * channel starts a handshake with new randoms and a new master secret (key log CLIENT_RANDOM of
   * the new random). The current keys stay in use until each direction's next ChangeCipherSpec.
   * `info` keeps describing the first handshake.
   */
  private startRenegotiation(ch: ParsedClientHello & { readonly message?: Buffer }, raw: Buffer): void {
    this.anomalies.anomaly('tls_renegotiation');
    this.renegotiating = true;
    this.clientHello = ch;
    this.master = undefined;
    this.keys12 = undefined;
    this.encPreMaster = undefined;
    this.rsaTried = false;
    this.sessionHash = undefined;
    this.sawServerCertificate = false;
    this.sawClientKeyExchange = false;
    this.pendingTickets = undefined;
    this.transcript = undefined;
    if (ch.extendedMasterSecret) {
      this.transcript = new Transcript(ch.message ?? Buffer.from(raw));
    }
  }

  private onServerHello(body: Buffer): void {
    const sh = parseServerHello(body);
    if (!sh) {
      this.anomalies.anomaly('tls_malformed_server_hello');
      return;
    }
    if (this.renegotiating) {
      this.onRenegotiationServerHello(sh);
      return;
    }
    const version = sh.version;
    this.info.version = versionName(version);
    const suite = suiteById(sh.cipherSuite);
    this.info.cipher = suiteName(sh.cipherSuite);
    if (sh.isHelloRetryRequest) {
      // RFC 8446 §4.1.4: a second ClientHello and the real ServerHello follow.
      this.helloRetry = true;
      this.earlyRejected = true;
      this.info.serverHello = sh;
      return;
    }
    if (this.serverHello && !this.helloRetry) {
      this.anomalies.anomaly('tls_unexpected_server_hello');
      return;
    }
    this.helloRetry = false;
    this.serverHello = sh;
    this.info.serverHello = sh;
    this.version = version;
    this.suite = suite;
    this.tls13 = version === 0x0304;
    if (!suite || !suite.supported || (suite.tls13 !== this.tls13) || !this.info.version) {
      this.unsupported = true;
      this.anomalies.anomaly('tls_unsupported_cipher', this.info.cipher + ' ' + version.toString(16));
    }
    const ch = this.clientHello;
    if (this.tls13) {
      this.transcript = undefined;
      this.info.resumed = sh.preSharedKey;
      if (!sh.preSharedKey) this.earlyRejected = true;
      const c = this.dirs[0];
      const s = this.dirs[1];
      s.phase = Phase.Handshake;
      // With 0-RTT offered the client phase stays Early (trial decryption decides).
      if (c.phase === Phase.Plain) c.phase = Phase.Handshake;
      c.dec = undefined;
      s.dec = undefined;
      if (sh.alpn !== undefined) this.info.alpn = sh.alpn;
      return;
    }
    if (sh.alpn !== undefined) this.info.alpn = sh.alpn;
    this.ems = !!ch?.extendedMasterSecret && sh.extendedMasterSecret;
    if (!this.ems) this.transcript = undefined;
    else if (suite) this.transcript?.streamAs(sessionHashAlgs(version, suite));
    this.etm = !!ch?.encryptThenMac && sh.encryptThenMac && suite?.kind === 'cbc';
    if (ch && sh.sessionId.length > 0 && sh.sessionId.equals(ch.sessionId)) this.info.resumed = true;
    // Client phase was set to Early by a TLS 1.3-style ClientHello; not relevant in TLS 1.2.
    this.dirs[0].phase = Phase.Plain;
  }

  private onRenegotiationServerHello(sh: ParsedServerHello): void {
    const suite = suiteById(sh.cipherSuite);
    if (sh.version !== this.version || !suite || !suite.supported || suite.tls13) {
      this.unsupported = true;
      this.anomalies.anomaly('tls_unsupported_cipher', suiteName(sh.cipherSuite) + ' ' + sh.version.toString(16));
      return;
    }
    this.serverHello = sh;
    this.suite = suite;
    const ch = this.clientHello;
    this.ems = !!ch?.extendedMasterSecret && sh.extendedMasterSecret;
    if (!this.ems) this.transcript = undefined;
    else this.transcript?.streamAs(sessionHashAlgs(this.version, suite));
    this.etm = !!ch?.encryptThenMac && sh.encryptThenMac && suite.kind === 'cbc';
  }

  private onClientKeyExchange(body: Buffer): void {
    if (this.sawClientKeyExchange) return;
    this.sawClientKeyExchange = true;
    const t = this.transcript;
    if (t && this.suite) {
      // RFC 7627 §3: session_hash covers the messages up to and including ClientKeyExchange.
      const algs = sessionHashAlgs(this.version, this.suite);
      this.sessionHash = algs.length === 1 ? t.digest(algs[0]) : Buffer.concat(algs.map((a) => t.digest(a)));
      this.transcript = undefined;
    }
    if (this.suite?.kx === 'RSA') {
      const enc = parseRsaClientKeyExchange(body, this.version);
      if (!enc) this.anomalies.anomaly('tls_malformed_client_key_exchange');
      else this.encPreMaster = enc;
    }
  }

  private onFinished(ds: DirState): void {
    if (this.tls13) {
      // RFC 8446 §7.1: after its Finished each side protects with its application traffic secret.
      if (ds.phase === Phase.Handshake || ds.phase === Phase.Early) {
        if (ds.dir === Dir.ToServer) this.info.established = true;
        ds.phase = Phase.Application;
        ds.appPhase = true;
        // The application keys are derived by decryptorFor when this direction's first
        // application record needs them (a direction that sends none never pays the key schedule).
        ds.dec = undefined;
        ds.secret = undefined;
        ds.earlyDec = undefined;
      }
      return;
    }
    ds.finished = true;
    ds.appPhase = true;
  }

  /** RFC 8446 §4.6.3: the sender's next records use application_traffic_secret_N+1. */
  private onKeyUpdate(ds: DirState, body: Buffer): void {
    if (!parseKeyUpdate(body)) {
      this.anomalies.anomaly('tls_malformed_key_update');
      return;
    }
    if (ds.phase !== Phase.Application || !ds.secret || !this.suite) {
      this.anomalies.anomaly('tls13_unexpected_key_update');
      return;
    }
    const next = nextTrafficSecret13(this.suite, ds.secret);
    ds.secret = next;
    ds.dec = new RecordDecryptor(this.suite, trafficKeys13(this.suite, next), { tls13: true, encryptThenMac: false });
  }
}
