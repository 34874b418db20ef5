/**
 * One DTLS 1.0 / 1.2 association (RFC 6347): its handshake as seen on the wire, its keys from the
 * key log (CLIENT_RANDOM master secret, as for TLS 1.2), and the decryption of its protected
 * records, each under its own epoch and sequence number.
 *
 * Keys: the key block of TLS 1.2 (DTLS 1.2) or TLS 1.1 (DTLS 1.0: explicit CBC IVs, the MD5/SHA-1
 * PRF), derived when the ServerHello and the key log's master secret for the ClientHello's random
 * are both known; the epoch after the one that carried the ServerHello uses them (1). A
 * renegotiation is not followed: its messages restart at message_seq 0 (RFC 6347 §4.2.2) and pass
 * for retransmissions, so the records of its new epoch are lost (`dtls_unknown_epoch`).
 * Protected records that come before their keys are held (bounded, `maxPendingBytes`) and
 * retried when key-log lines arrive. Duplicated records (same epoch and sequence number) are
 * recognised by the anti-replay window and counted once.
 */
import { createHash } from 'node:crypto';
import type { AnomalySink, Timestamp } from '../types.js';
import { Dir } from '../types.js';
import type { SecretsStore } from '../tls/crypto/keylog.js';
import { suiteById, type CipherSuite } from '../tls/crypto/suites.js';
import { extendedMasterSecret12, keyBlock12, masterSecret12, TLS11, TLS12 } from '../tls/crypto/prf.js';
import { RecordDecryptor } from '../tls/crypto/recordDecryptor.js';
import { preMasterFromKeys, type RsaServerKey } from '../tls/crypto/rsa.js';
import { sessionHashAlgs } from '../tls/session.js';
import {
  HandshakeType,
  parseCertificate,
  parseClientHello,
  parseRsaClientKeyExchange,
  parseServerHello,
  type ParsedClientHello,
  type ParsedServerHello,
} from '../tls/handshake.js';
import {
  clientHelloWithoutCookie,
  DTLS10,
  DTLS12,
  DtlsContentType,
  HandshakeAssembler,
  ReplayWindow,
  type DtlsHandshakeMessage,
  type DtlsRecord,
} from './records.js';

export type DtlsDecision = 'decrypt' | 'paused' | 'disabled';
export type DtlsStatus = 'decrypted' | 'partial' | 'no_key' | 'missing_handshake' | 'unsupported_cipher' | 'integrity_failure' | 'paused' | 'disabled';

export interface DtlsAssociationHost {
  readonly secrets: SecretsStore;
  /** Server keys for RSA key exchange (`--rsa-key`). */
  readonly rsaKeys: readonly RsaServerKey[];
  readonly anomalies: AnomalySink;
  /** Bytes of protected records held for missing keys, per association. */
  readonly maxPendingBytes: number;
  /** Takes `n` bytes from the budget of all associations together; false when it is spent. */
  reservePending(n: number): boolean;
  /** Gives `n` bytes back to that budget. */
  releasePending(n: number): void;
  /** Ops: asked once, when the ClientHello is known. */
  decide(sni: string | undefined): DtlsDecision;
  /** Ops: seconds from the first protected record to its keys (once per association). */
  secretWait(seconds: number): void;
}

/** The keys of one epoch: a read state per direction. */
interface EpochKeys {
  client: RecordDecryptor;
  server: RecordDecryptor;
}

/** A handshake (first, or renegotiation) waiting for its keys: they serve `epoch`. */
interface KeyWait {
  epoch: number;
  clientRandom: Buffer;
  serverHello: ParsedServerHello;
}

/** An epoch-0 handshake message, kept for the extended master secret's session hash. */
interface Logged {
  toServer: boolean;
  seq: number;
  type: number;
  body: Buffer;
}

interface Held {
  dir: Dir;
  rec: DtlsRecord;
}

/** TLS 1.0-1.2 AEAD additional data / MAC header type || version || length, from a DTLS record. */
const HEADER = Buffer.alloc(5);

export class DtlsAssociation {
  clientHello: ParsedClientHello | undefined;
  serverHello: ParsedServerHello | undefined;
  /** The negotiated DTLS version (wire value), from the ServerHello. */
  version = 0;
  suite: CipherSuite | undefined;
  certificates: Buffer[] = [];
  helloVerifyRequest = false;
  clientHellos = 0;
  /** A ChangeCipherSpec seen from each side. */
  private ccs = [false, false];
  decision: DtlsDecision | undefined;
  unsupported = false;
  keysFound = false;

  readonly counts = {
    records: 0,
    decryptedRecords: 0,
    failedRecords: 0,
    duplicateRecords: 0,
    /** Protected records not decrypted for want of a handshake, or dropped at the pending limit (gaps: `missingRecords`). */
    lostRecords: 0,
    appBytes: 0,
    alerts: 0,
  };
  skippedBytes = 0;
  /** Bytes of UDP payload per direction. */
  clientBytes = 0;
  serverBytes = 0;

  /** Handshake reassembly from the client (0) and from the server (1). */
  private readonly hs: [HandshakeAssembler, HandshakeAssembler];
  private readonly keys = new Map<number, EpochKeys>();
  private readonly windows = new Map<number, ReplayWindow>();
  private wait: KeyWait | undefined;
  private held: Held[] = [];
  /** Bytes of the held records (taken from the host's budget). */
  heldBytes = 0;
  /** The latest client random (the ServerHello's keys go with it). */
  private clientRandom: Buffer | undefined;
  /** Epoch-0 handshake messages until the first keys are found (session hash of RSA / PMS keys). */
  private log: Logged[] | undefined = [];
  /** The client's ClientKeyExchange body (RSA key exchange). */
  private cke: Buffer | undefined;
  private rsaTried = false;
  /** The premaster secret once known (RSA / PMS keys), while the session hash still waits for messages. */
  private preMaster: Buffer | undefined;
  /** Capture time of the record (or key-log lines) being processed. */
  private now: Timestamp;
  /** Capture time of the first protected record; undefined again once its wait was reported. */
  private firstProtected: Timestamp | undefined;
  private waitReported = false;

  constructor(
    private readonly host: DtlsAssociationHost,
    readonly start: Timestamp,
    /** Started by protected records, not a ClientHello: the capture began after the handshake. */
    readonly mid = false,
  ) {
    this.hs = [new HandshakeAssembler(host.anomalies), new HandshakeAssembler(host.anomalies)];
    this.now = start;
  }

  get established(): boolean {
    return this.ccs[0] && this.ccs[1];
  }

  /**
   * A ClientHello of a new association on the same UDP flow: a new random after a ServerHello, or
   * any ClientHello after an association seen without its handshake.
   */
  isNewClientHello(rec: DtlsRecord): boolean {
    if (rec.epoch !== 0 || rec.type !== DtlsContentType.Handshake) return false;
    const f = rec.fragment;
    // ClientHello fragment at offset 0 holding client_version || random
    if (f.length < 12 + 34 || f[0] !== HandshakeType.ClientHello || f.readUIntBE(6, 3) !== 0) return false;
    if (this.mid && this.clientHello === undefined) return true;
    if (this.serverHello === undefined || this.clientRandom === undefined) return false;
    return !f.subarray(12 + 2, 12 + 34).equals(this.clientRandom);
  }

  /** The record layer's version, for an association whose ServerHello was not seen. */
  recordVersion = 0;

  /** One record in direction `dir` (ToServer: from the client), at capture time `ts`. */
  record(dir: Dir, rec: DtlsRecord, ts: Timestamp): void {
    this.now = ts;
    this.counts.records++;
    if (rec.epoch === 0) {
      this.plain(dir, rec.type, rec.fragment, 0);
      return;
    }
    if (this.decision === 'paused' || this.decision === 'disabled') {
      this.skippedBytes += rec.fragment.length;
      return;
    }
    if (this.recordVersion === 0) this.recordVersion = rec.version;
    this.firstProtected ??= ts;
    const k = this.keys.get(rec.epoch);
    if (k !== undefined) {
      this.open(dir, rec, k);
      return;
    }
    // keys to come: this epoch's handshake waits for its key-log line, or the ServerHello is still
    // missing (records reordered before it, or its flight lost and retransmitted later)
    if (!this.unsupported && !this.mid && (this.wait !== undefined ? this.wait.epoch === rec.epoch : this.serverHello === undefined)) {
      this.hold(dir, rec);
      return;
    }
    // (counted once per association: every record of one without its handshake would be one)
    if (this.counts.lostRecords++ === 0) this.host.anomalies.anomaly(this.serverHello === undefined ? 'dtls_missing_handshake' : this.unsupported ? 'dtls_unsupported_cipher' : 'dtls_unknown_epoch');
  }

  private hold(dir: Dir, rec: DtlsRecord): void {
    const n = rec.fragment.length;
    if (this.heldBytes + n > this.host.maxPendingBytes || !this.host.reservePending(n)) {
      this.counts.lostRecords++;
      this.host.anomalies.anomaly(this.heldBytes + n > this.host.maxPendingBytes ? 'dtls_pending_limit' : 'dtls_pending_total_limit');
      return;
    }
    this.held.push({ dir, rec: { ...rec, fragment: Buffer.from(rec.fragment) } });
    this.heldBytes += n;
  }

  /** New key-log lines (at capture time `ts`): keys for the waiting handshake, then its held records. */
  retryKeys(ts: Timestamp): void {
    if (this.wait === undefined) return;
    this.now = ts;
    this.tryKeys();
  }

  get holding(): boolean {
    return this.held.length > 0;
  }

  private open(dir: Dir, rec: DtlsRecord, k: EpochKeys): void {
    let w = this.windows.get(dir * 0x10000 + rec.epoch);
    if (w === undefined) this.windows.set(dir * 0x10000 + rec.epoch, (w = new ReplayWindow()));
    if (w.seen(rec.seq)) {
      this.counts.duplicateRecords++;
      this.host.anomalies.anomaly('dtls_duplicate_record');
      return;
    }
    const f = rec.fragment;
    HEADER[0] = rec.type;
    HEADER[1] = rec.version >> 8;
    HEADER[2] = rec.version & 0xff;
    HEADER.writeUInt16BE(f.length, 3);
    const dec = dir === Dir.ToServer ? k.client : k.server;
    const r = dec.decryptDatagramRecord((BigInt(rec.epoch) << 48n) | BigInt(rec.seq), HEADER, f);
    if (!r.ok) {
      this.counts.failedRecords++;
      w.failed++;
      this.host.anomalies.anomaly(r.error === 'integrity_failure' ? 'dtls_decrypt_failed' : 'dtls_decrypt_' + r.error);
      return;
    }
    w.accept(rec.seq);
    this.counts.decryptedRecords++;
    if (!this.waitReported) {
      // once per association, as for TLS sessions: how long the key log's lines took (ops metric)
      this.waitReported = true;
      const f = this.firstProtected ?? this.now;
      this.host.secretWait(Math.max(0, this.now.sec - f.sec + (this.now.nsec - f.nsec) / 1e9));
    }
    this.plain(dir, r.contentType, r.plaintext, rec.epoch);
  }

  /** A record's content in the clear (epoch 0, or decrypted). */
  private plain(dir: Dir, type: number, data: Buffer, epoch: number): void {
    switch (type) {
      case DtlsContentType.Handshake: {
        // (a new array per handshake record: a message may find its keys and replay held
        // records, whose handshake messages come through here again)
        const out: DtlsHandshakeMessage[] = [];
        this.hs[dir === Dir.ToServer ? 0 : 1].add(data, epoch, out);
        for (const m of out) this.message(dir, m);
        return;
      }
      case DtlsContentType.ApplicationData:
        if (epoch === 0) {
          this.host.anomalies.anomaly('dtls_plaintext_application_data');
          return;
        }
        this.counts.appBytes += data.length; // no analyzer of DTLS payloads: counted only
        return;
      case DtlsContentType.ChangeCipherSpec:
        this.ccs[dir === Dir.ToServer ? 0 : 1] = true;
        return;
      case DtlsContentType.Alert:
        this.counts.alerts++;
        return;
      default:
        this.host.anomalies.anomaly('dtls_unknown_content_type');
    }
  }

  private message(dir: Dir, m: DtlsHandshakeMessage): void {
    const toServer = dir === Dir.ToServer;
    if (m.epoch === 0 && this.log !== undefined) {
      this.log.push({ toServer, seq: m.messageSeq, type: m.type, body: m.body });
      // a premaster waiting for the session hash's messages (they may come in any order)
      if (this.preMaster !== undefined && this.wait !== undefined) this.tryKeys();
    }
    switch (m.type) {
      case HandshakeType.ClientHello: {
        if (!toServer) break;
        const c = clientHelloWithoutCookie(m.body);
        const ch = c && parseClientHello(c.tlsBody);
        if (!ch) {
          this.host.anomalies.anomaly('dtls_malformed_client_hello');
          return;
        }
        this.clientHellos++;
        this.clientRandom = ch.random;
        if (this.clientHello === undefined) {
          this.clientHello = ch;
          this.decision ??= this.host.decide(ch.sni);
        }
        return;
      }
      case HandshakeType.HelloVerifyRequest:
        if (!toServer) this.helloVerifyRequest = true;
        return;
      case HandshakeType.ServerHello: {
        if (toServer) break;
        const sh = parseServerHello(m.body);
        if (!sh) {
          this.host.anomalies.anomaly('dtls_malformed_server_hello');
          return;
        }
        this.serverHello ??= sh;
        // the messages are kept for the extended master secret's session hash only
        if (!sh.extendedMasterSecret) this.log = undefined;
        if (this.version === 0) {
          this.version = sh.version;
          this.suite = suiteById(sh.cipherSuite);
        }
        if (!this.usable(sh)) {
          this.unsupported = true;
          this.host.anomalies.anomaly(sh.version === DTLS10 || sh.version === DTLS12 ? 'dtls_unsupported_cipher' : 'dtls_unsupported_version');
          return;
        }
        if (this.clientRandom === undefined) return; // its ClientHello was not seen
        this.wait = { epoch: m.epoch + 1, clientRandom: this.clientRandom, serverHello: sh };
        this.tryKeys();
        return;
      }
      case HandshakeType.ClientKeyExchange:
        if (!toServer || m.epoch !== 0) break;
        this.cke = m.body;
        if (this.wait !== undefined) this.tryKeys();
        return;
      case HandshakeType.Certificate:
        if (!toServer && this.certificates.length === 0) {
          const c = parseCertificate(m.body, false);
          if (c) this.certificates = c.certificates.map((x) => Buffer.from(x));
        }
        return;
      default:
        return;
    }
  }

  /** DTLS 1.0 / 1.2 with a suite that has a decryptor (no RC4: RFC 6347 §4.1.2.2). */
  private usable(sh: ParsedServerHello): boolean {
    const s = suiteById(sh.cipherSuite);
    return (sh.version === DTLS10 || sh.version === DTLS12) && s !== undefined && s.supported && !s.tls13 && s.kind !== 'stream';
  }

  private tryKeys(): void {
    if (this.decision === 'paused' || this.decision === 'disabled') return; // no key work (the governor's point)
    const w = this.wait as KeyWait;
    const sh = w.serverHello;
    const suite = suiteById(sh.cipherSuite) as CipherSuite;
    // DTLS 1.0 is TLS 1.1 on datagrams (RFC 4347 §4.1), DTLS 1.2 is TLS 1.2 (RFC 6347 §4.1)
    const tlsVersion = sh.version === DTLS12 ? TLS12 : TLS11;
    let master = this.host.secrets.get(w.clientRandom, 'CLIENT_RANDOM');
    // the first handshake only: the premaster from the key log or the server's RSA key
    if (master === undefined && w.epoch === 1) master = this.masterFromPreMaster(w, suite, tlsVersion);
    if (master === undefined || master.length !== 48) return;
    this.wait = undefined;
    this.log = undefined;
    this.preMaster = undefined;
    this.keysFound = true;
    const kb = keyBlock12(suite, master, w.clientRandom, sh.random, tlsVersion);
    const opts = { tls13: false, encryptThenMac: sh.encryptThenMac, version: tlsVersion };
    this.keys.set(w.epoch, { client: new RecordDecryptor(suite, kb.client, opts), server: new RecordDecryptor(suite, kb.server, opts) });
    const held = this.held;
    this.held = [];
    this.host.releasePending(this.heldBytes);
    this.heldBytes = 0;
    const now = this.now;
    for (const h of held) this.record(h.dir, h.rec, now);
    // record() counted them once already
    this.counts.records -= held.length;
  }

  /**
   * RFC 5246 §8.1 / RFC 7627 §4 from a premaster secret: the key log's PMS_CLIENT_RANDOM, or for
   * RSA key exchange its `RSA` line or the server's key (`--rsa-key`).
   */
  private masterFromPreMaster(w: KeyWait, suite: CipherSuite, tlsVersion: number): Buffer | undefined {
    const secrets = this.host.secrets;
    let pre = this.preMaster ?? secrets.get(w.clientRandom, 'PMS_CLIENT_RANDOM');
    if (pre === undefined && suite.kx === 'RSA' && this.cke !== undefined) {
      const enc = parseRsaClientKeyExchange(this.cke, tlsVersion);
      if (enc === undefined) {
        this.host.anomalies.anomaly('dtls_malformed_client_key_exchange');
        this.cke = undefined;
        return undefined;
      }
      pre = secrets.getRsaPreMaster(enc.subarray(0, 8));
      if (pre === undefined && !this.rsaTried && this.host.rsaKeys.length > 0) {
        this.rsaTried = true;
        pre = preMasterFromKeys(this.host.rsaKeys, this.certificates[0], enc);
        if (pre === undefined) this.host.anomalies.anomaly('dtls_rsa_decrypt_failed');
      }
    }
    if (pre === undefined) return undefined;
    this.preMaster = pre;
    if (!w.serverHello.extendedMasterSecret) return masterSecret12(suite, pre, w.clientRandom, w.serverHello.random, tlsVersion);
    const hash = this.sessionHash(suite, tlsVersion);
    return hash && extendedMasterSecret12(suite, pre, hash, tlsVersion);
  }

  /**
   * RFC 7627 §3 session hash for DTLS: the messages from the ClientHello the ServerHello answered
   * (the one with the ServerHello's message_seq, RFC 6347 §4.2.2: not the first ClientHello and
   * the HelloVerifyRequest of a cookie exchange) through the ClientKeyExchange, in protocol
   * order, each with its DTLS header as if sent unfragmented (RFC 6347 §4.2.6). Undefined until
   * those messages and the ServerHelloDone are known.
   */
  private sessionHash(suite: CipherSuite, tlsVersion: number): Buffer | undefined {
    const log = this.log;
    if (log === undefined) return undefined;
    const bySeq = (a: Logged, b: Logged): number => a.seq - b.seq;
    const client = log.filter((m) => m.toServer).sort(bySeq);
    const server = log.filter((m) => !m.toServer && m.type !== HandshakeType.HelloVerifyRequest).sort(bySeq);
    const sh = server.find((m) => m.type === HandshakeType.ServerHello);
    const ch = sh && client.find((m) => m.type === HandshakeType.ClientHello && m.seq === sh.seq);
    const cke = client.find((m) => m.type === HandshakeType.ClientKeyExchange);
    const shd = server.find((m) => m.type === HandshakeType.ServerHelloDone);
    if (ch === undefined || cke === undefined || shd === undefined) return undefined;
    const msgs = [ch, ...server.filter((m) => m.seq <= shd.seq), ...client.filter((m) => m.seq > ch.seq && m.seq <= cke.seq)];
    const parts = sessionHashAlgs(tlsVersion, suite).map((alg) => {
      const h = createHash(alg);
      for (const m of msgs) {
        const hdr = Buffer.alloc(12);
        hdr[0] = m.type;
        hdr.writeUIntBE(m.body.length, 1, 3);
        hdr.writeUInt16BE(m.seq, 4);
        hdr.writeUIntBE(m.body.length, 9, 3); // fragment_offset 0, fragment_length = length
        h.update(hdr).update(m.body);
      }
      return h.digest();
    });
    return parts.length === 1 ? parts[0] : Buffer.concat(parts);
  }

  /** Records lost before the capture: gaps in the sequence numbers of decrypted epochs. */
  get missingRecords(): number {
    let n = 0;
    for (const w of this.windows.values()) n += w.missing;
    return n;
  }

  /** Decryption outcome, as TLS sessions report it (README: decryption.status). */
  get status(): DtlsStatus {
    if (this.clientHello === undefined || this.serverHello === undefined) return 'missing_handshake';
    if (this.unsupported) return 'unsupported_cipher';
    if (this.decision === 'paused' || this.decision === 'disabled') return this.decision;
    const c = this.counts;
    if (c.decryptedRecords === 0) {
      if (c.failedRecords > 0) return 'integrity_failure';
      if (!this.keysFound || this.held.length > 0) return 'no_key';
      return c.lostRecords > 0 ? 'partial' : 'decrypted';
    }
    if (c.failedRecords > 0 || c.lostRecords > 0 || this.held.length > 0 || this.missingRecords > 0) return 'partial';
    return 'decrypted';
  }
}
