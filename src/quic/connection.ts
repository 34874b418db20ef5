/**
 * One QUIC connection seen passively (RFC 9000 / RFC 9001 / RFC 9369): packet parsing (long and
 * short headers, coalesced packets in one datagram), header protection removal, packet number
 * reconstruction per number space, payload decryption with Initial keys (from the client's
 * Destination Connection ID) or with the key log's TLS secrets (handshake, 0-RTT, 1-RTT and
 * their key updates), frames, CRYPTO streams into the TLS 1.3 handshake parser (src/tls), and
 * STREAM data into HTTP/3 (src/analyzers/http/http3.ts).
 *
 * Packets whose keys are not known yet (key log late, 0-RTT before the ServerHello names the
 * suite) are held, copied and bounded (`maxPendingBytesPerConnection`), and retried when keys
 * arrive; what is still held at the end counts as undecryptable.
 */
import type { AnomalySink, Timestamp } from '../types.js';
import { Dir } from '../types.js';
import {
  HandshakeReassembler,
  HandshakeType,
  parseCertificate,
  parseClientHello,
  parseEncryptedExtensions,
  parseServerHello,
  type ParsedClientHello,
  type ParsedServerHello,
} from '../tls/handshake.js';
import type { SecretsStore } from '../tls/crypto/keylog.js';
import { internCertificate } from '../tls/crypto/x509.js';
import { H3Side, Http3Analyzer } from '../analyzers/http/http3.js';
import {
  AEAD_TAG_LEN,
  decodePacketNumber,
  initialKeys,
  LongType,
  nextPacketKeys,
  packetKeys,
  QUIC_SUITES,
  QUIC_VERSIONS,
  readVarint,
  retryTagValid,
  type PacketKeys,
  type QuicSuite,
  type QuicVersion,
} from './protection.js';
import { MAX_BATCH_PACKET_BYTES, type BatchEntry, type BatchOwner, type PacketBatch } from './gcmBatch.js';
import { OrderedStream, type OrderedSink } from './streams.js';
import type { QuicOptions } from './options.js';
import type { HttpOptions } from '../analyzers/http/options.js';
import type { EventSink } from '../types.js';

/** Encryption levels (RFC 9001 Section 4). */
export const enum Level {
  Initial = 0,
  Handshake = 1,
  ZeroRtt = 2,
  OneRtt = 3,
}

const LEVEL_NAMES = ['initial', 'handshake', '0rtt', '1rtt'];

/** Packet number space of a level (RFC 9000 Section 12.3). */
function space(l: Level): number {
  return l === Level.Initial ? 0 : l === Level.Handshake ? 1 : 2;
}

interface Held {
  level: Level;
  dir: Dir;
  pkt: Buffer;
  pnOffset: number;
  ts: Timestamp;
}

/** 1-RTT keys of one direction with their key phase (RFC 9001 Section 6). */
interface AppKeys {
  cur: PacketKeys;
  phase: number;
  next: PacketKeys | undefined;
  prev: PacketKeys | undefined;
}

/** What the connection needs from its stage. */
export interface QuicConnectionHost {
  readonly secrets: SecretsStore;
  readonly anomalies: AnomalySink;
  readonly options: QuicOptions;
  readonly http: HttpOptions;
  /** Bytes of held packets across all connections (+n held, -n released). */
  pendingDelta(n: number): void;
  readonly pendingTotal: number;
  /** A connection ID of this connection (long headers, NEW_CONNECTION_ID): the server's, the client's, or (undefined) the client's first DCID. */
  addCid(conn: QuicConnection, cid: Buffer, ofServer: boolean | undefined): void;
  /**
   * Ops (asset policy, resource governor), asked once when the ClientHello is parsed:
   * 'paused' / 'disabled' connections decrypt nothing past the Initials and hold nothing.
   */
  decide(conn: QuicConnection, sni: string | undefined): 'decrypt' | 'paused' | 'disabled';
  /** Ops: the key log's keys for this connection were found, `seconds` after its first protected packet. */
  secretWait(seconds: number): void;
  /** 1-RTT packets held for their batch's authentication (one for all connections). */
  readonly batch: PacketBatch;
  /** The connection ended (its first CONNECTION_CLOSE, or a stateless reset) at capture time `ts`. */
  ended(conn: QuicConnection, ts: Timestamp): void;
}

const EMPTY = Buffer.alloc(0);
/** Header scratch: long headers are at most 1+4+1+20+1+20+token+8+4 bytes; longer tokens allocate. */
const AAD_SCRATCH = Buffer.alloc(512);
/** Header protection samples of a batch, one after the other (grown for a larger batch). */
let SAMPLES = Buffer.alloc(16 * 128);

export class QuicConnection implements BatchOwner {
  version: QuicVersion | undefined;
  versionId = 0;
  /** The client's first Destination Connection ID (Initial keys; RFC 9001 Section 5.2). */
  odcid: Buffer | undefined;
  /** The DCID of the client's latest Initial (changes after Retry). */
  private initialDcid: Buffer | undefined;
  private initial: { client: PacketKeys; server: PacketKeys } | undefined;
  private initialVersion: QuicVersion | undefined;
  /** Set when a handshake message may have made new keys available (held packets are retried after the datagram). */
  private keysChanged = false;
  readonly clientCids = new Set<string>();
  readonly serverCids = new Set<string>();
  /** Short-header DCID length of packets to the server / to the client. */
  serverCidLen = -1;
  clientCidLen = -1;
  retry = false;
  retrySourceCid: Buffer | undefined;
  versionNegotiation: number[] | undefined;
  paths = 0;
  pathsSeen = 0;

  private readonly hs: (PacketKeys | undefined)[] = [undefined, undefined];
  private zeroRtt: PacketKeys | undefined;
  private readonly app: (AppKeys | undefined)[] = [undefined, undefined];
  private readonly largest = [-1, -1, -1, -1, -1, -1];
  private readonly crypto: (OrderedStream | undefined)[] = [];
  private readonly hsParsers: (HandshakeReassembler | undefined)[] = [];
  private readonly streams = new Map<number, OrderedStream>();
  private streamBuffered = 0;
  private held: Held[] = [];
  /** Packets held for keys not (yet) in the key log. */
  get holding(): boolean {
    return this.held.length > 0;
  }
  private heldBytes = 0;

  clientHello: (ParsedClientHello & { readonly message?: Buffer }) | undefined;
  serverHello: ParsedServerHello | undefined;
  suite: QuicSuite | undefined;
  unsupportedSuite = 0;
  alpn: string | undefined;
  certificates: Buffer[] = [];
  established = false;
  closeSeen = false;
  keyUpdates = 0;
  /** Stateless reset tokens announced in NEW_CONNECTION_ID frames (hex), and whether one was seen. */
  private readonly resetTokens = new Set<string>();
  statelessReset = false;

  readonly counts = {
    packets: 0,
    decrypted: 0,
    failed: 0,
    /** Handshake/0-RTT/1-RTT packets decrypted and failed (key-log keys, not Initial). */
    decryptedProtected: 0,
    failedProtected: 0,
    noKey: 0,
    appBytes: 0,
  };
  h3: Http3Analyzer | undefined;
  private appDataSeen = false;
  /** Ops decision, made when the ClientHello is parsed (undefined before). */
  decision: 'decrypt' | 'paused' | 'disabled' | undefined;
  /** Bytes of Handshake/0-RTT/1-RTT packets not decrypted because of the decision. */
  skippedBytes = 0;
  /** Capture time of the first Handshake/0-RTT/1-RTT packet, and whether key-log keys were found since. */
  private firstProtectedTs: Timestamp | undefined;
  private keysFound = false;
  /** Time of the datagram, key-log update or close that retries held packets. */
  private retryTs: Timestamp | undefined;

  constructor(
    private readonly host: QuicConnectionHost,
    private readonly events: EventSink,
  ) {}

  // ------------------------------------------------------------------ datagrams and packets

  /** One UDP datagram of this connection; `dir` is relative to the QUIC client. */
  datagram(dir: Dir, d: Buffer, ts: Timestamp): void {
    this.packets(dir, d, ts);
    if (this.keysChanged) {
      this.keysChanged = false;
      this.retryHeld(ts);
    }
  }

  private packets(dir: Dir, d: Buffer, ts: Timestamp): void {
    let off = 0;
    const an = this.host.anomalies;
    while (off < d.length) {
      const b0 = d[off];
      if ((b0 & 0x80) === 0) {
        if (b0 === 0 && isZero(d, off)) return; // datagram padding after the last packet
        // (the fixed bit 0x40 is not checked: peers may grease it, RFC 9287)
        const cidLen = dir === Dir.ToServer ? this.serverCidLen : this.clientCidLen;
        if (cidLen < 0 || d.length - off < 1 + cidLen + 4 + 16) {
          an.anomaly('quic_malformed_packet', cidLen < 0 ? 'short_before_handshake' : 'short_truncated');
          return;
        }
        this.counts.packets++;
        this.packet(Level.OneRtt, dir, d.subarray(off), 1 + cidLen, ts, false);
        return;
      }
      // (a long header may change the connection's state, CIDs, keys: its batched packets first)
      if (this.host.batch.owner === this) this.host.batch.flush();
      if (d.length - off < 7) {
        an.anomaly('quic_malformed_packet', 'long_truncated');
        return;
      }
      const version = d.readUInt32BE(off + 1);
      let p = off + 5;
      const dcidLen = d[p++];
      if (dcidLen > 20 || p + dcidLen + 1 > d.length) {
        an.anomaly('quic_malformed_packet', 'cid_length');
        return;
      }
      const dcid = d.subarray(p, p + dcidLen);
      p += dcidLen;
      const scidLen = d[p++];
      if (scidLen > 20 || p + scidLen > d.length) {
        an.anomaly('quic_malformed_packet', 'cid_length');
        return;
      }
      const scid = d.subarray(p, p + scidLen);
      p += scidLen;
      this.counts.packets++;
      if (version === 0) {
        // RFC 9000 Section 17.2.1: Version Negotiation (the whole datagram)
        const vs: number[] = [];
        for (; p + 4 <= d.length; p += 4) vs.push(d.readUInt32BE(p));
        this.versionNegotiation = vs;
        return;
      }
      const v = QUIC_VERSIONS.get(version);
      if (v === undefined) {
        an.anomaly('quic_unsupported_version', `0x${version.toString(16).padStart(8, '0')}`);
        this.versionId ||= version;
        return;
      }
      if (this.version === undefined || this.version.id !== v.id) {
        this.version = v;
        this.versionId = version;
      }
      const type = v.types[(b0 >> 4) & 3];
      if (type === LongType.Retry && dir === Dir.ToServer) {
        this.longHeaderCids(type, dir, dcid, scid);
        an.anomaly('quic_malformed_packet', 'retry_from_client');
        return;
      }
      if (type === LongType.Retry) {
        // RFC 9001 Section 5.8: a client discards a Retry whose integrity tag is wrong (the Retry
        // has no length field: it is the rest of the datagram); so does the observer.
        if (this.odcid !== undefined && retryTagValid(v, this.odcid, d.subarray(off)) === false) {
          an.anomaly('quic_retry_integrity_failure');
          return;
        }
        // RFC 9000 Section 17.2.5.2: a client processes at most one Retry (a server may answer each
        // copy of a retransmitted first Initial with one; the client follows the first).
        if (this.retry) return;
        // RFC 9000 Section 17.2.5: the client's next Initial goes to the Retry's SCID.
        if (this.serverHello === undefined) this.restartClientHello();
        this.retry = true;
        this.retrySourceCid = Buffer.from(scid);
        this.host.addCid(this, scid, true);
        return;
      }
      if (type === LongType.Initial) {
        const tl = readVarint(d, p, d.length);
        if (tl < 0 || p + varLen(d[p]) + tl > d.length) {
          an.anomaly('quic_malformed_packet', 'token_length');
          return;
        }
        p += varLen(d[p]) + tl;
      }
      const len = readVarint(d, p, d.length);
      if (len < 0) {
        an.anomaly('quic_malformed_packet', 'length');
        return;
      }
      p += varLen(d[p]);
      const end = p + len;
      if (end > d.length || len < 4 + AEAD_TAG_LEN) {
        an.anomaly('quic_malformed_packet', 'length');
        return;
      }
      this.longHeaderCids(type, dir, dcid, scid);
      const level = type === LongType.Initial ? Level.Initial : type === LongType.Handshake ? Level.Handshake : Level.ZeroRtt;
      if (level === Level.ZeroRtt && dir !== Dir.ToServer) an.anomaly('quic_malformed_packet', '0rtt_from_server');
      else this.packet(level, dir, d.subarray(off, end), p - off, ts, false);
      off = end;
    }
  }

  /** Connection IDs of a long header: the client's SCID / the server's SCID; the client's first DCID. */
  private longHeaderCids(type: LongType, dir: Dir, dcid: Buffer, scid: Buffer): void {
    if (dir === Dir.ToServer) {
      if (type === LongType.Initial) {
        if (this.odcid === undefined) {
          this.odcid = Buffer.from(dcid);
          this.host.addCid(this, dcid, undefined);
        }
        // RFC 9001 Section 5.2: Initial keys come from the client's first DCID (after a Retry, the
        // DCID of its next Initial); later Initials to the server's own CID keep those keys.
        const from = this.retrySourceCid ?? this.odcid;
        if (this.initialDcid === undefined || !this.initialDcid.equals(from) || this.initialVersion !== this.version) {
          this.initialDcid = from;
          this.initialVersion = this.version;
          this.initial = this.version ? initialKeys(this.version, from) : undefined;
        }
      }
      if (!this.clientCids.has(scid.toString('hex'))) this.host.addCid(this, scid, false);
      if (this.clientCidLen < 0) this.clientCidLen = scid.length;
    } else {
      if (!this.serverCids.has(scid.toString('hex'))) this.host.addCid(this, scid, true);
      // the server's SCID is what the client's short headers carry
      if (type !== LongType.Initial || this.serverCidLen < 0) this.serverCidLen = scid.length;
      if (this.clientCidLen < 0) this.clientCidLen = dcid.length;
    }
  }

  private keysFor(level: Level, dir: Dir): PacketKeys | undefined {
    switch (level) {
      case Level.Initial:
        return this.initial ? (dir === Dir.ToServer ? this.initial.client : this.initial.server) : undefined;
      case Level.Handshake:
        return (this.hs[dir] ??= this.secretKeys(dir === Dir.ToServer ? 'CLIENT_HANDSHAKE_TRAFFIC_SECRET' : 'SERVER_HANDSHAKE_TRAFFIC_SECRET'));
      case Level.ZeroRtt:
        return (this.zeroRtt ??= this.secretKeys('CLIENT_EARLY_TRAFFIC_SECRET'));
      default: {
        let a = this.app[dir];
        if (a === undefined) {
          const k = this.secretKeys(dir === Dir.ToServer ? 'CLIENT_TRAFFIC_SECRET_0' : 'SERVER_TRAFFIC_SECRET_0');
          if (k === undefined) return undefined;
          a = this.app[dir] = { cur: k, phase: 0, next: undefined, prev: undefined };
        }
        return a.cur;
      }
    }
  }

  private secretKeys(label: string): PacketKeys | undefined {
    const ch = this.clientHello;
    const v = this.version;
    if (!ch || !v) return undefined;
    let suite = this.suite;
    // 0-RTT before the ServerHello: the suite is the resumed session's; a client offering one suite says which
    if (suite === undefined && label === 'CLIENT_EARLY_TRAFFIC_SECRET') {
      const offered = ch.cipherSuites.filter((s) => QUIC_SUITES.has(s));
      if (offered.length === 1) suite = QUIC_SUITES.get(offered[0]);
    }
    if (suite === undefined) return undefined;
    const secret = this.host.secrets.get(ch.random, label);
    if (secret === undefined) return undefined;
    return packetKeys(v, suite, secret);
  }

  /**
   * One packet (`pkt` from its first byte to its end; pn at pnOffset). `retrying`: a held packet
   * (it is held again, not counted twice, when keys are still missing).
   */
  private packet(level: Level, dir: Dir, pkt: Buffer, pnOffset: number, ts: Timestamp, retrying: boolean): boolean {
    if (level !== Level.Initial && this.decision !== undefined && this.decision !== 'decrypt') {
      this.skippedBytes += pkt.length; // (held ones too: retryHeld drops them after the decision)
      return true;
    }
    if (level !== Level.Initial) this.firstProtectedTs ??= ts;
    const keys = this.keysFor(level, dir);
    if (keys === undefined) {
      if (!retrying) this.hold(level, dir, pkt, pnOffset, ts);
      return false;
    }
    if (level !== Level.Initial && !this.keysFound) {
      // once per connection, as for TLS sessions: how long the key log's lines took (ops metric)
      this.keysFound = true;
      const first = this.firstProtectedTs as Timestamp;
      const now = retrying && this.retryTs ? this.retryTs : ts;
      this.host.secretWait(Math.max(0, now.sec - first.sec + (now.nsec - first.nsec) / 1e9));
    }
    if (pkt.length < pnOffset + 4 + 16) {
      this.host.anomalies.anomaly('quic_malformed_packet', 'too_short');
      return true;
    }
    // 1-RTT packets under the current AES-GCM keys: held and opened with their batch
    if (level === Level.OneRtt && this.batched(dir, keys, pkt, pnOffset, ts)) return true;
    const b = this.host.batch;
    if (b.owner === this) b.flush();
    // RFC 9001 Section 5.4.2: the sample starts 4 bytes after the packet number's start
    const mask = keys.hp.mask(pkt.subarray(pnOffset + 4, pnOffset + 20));
    const long = (pkt[0] & 0x80) !== 0;
    const first = pkt[0] ^ (mask[0] & (long ? 0x0f : 0x1f));
    const pnLen = (first & 3) + 1;
    // the unprotected header is the AEAD's associated data; a shared scratch (used within this call)
    const aad = pnOffset + pnLen <= AAD_SCRATCH.length ? AAD_SCRATCH.subarray(0, pnOffset + pnLen) : Buffer.allocUnsafe(pnOffset + pnLen);
    aad[0] = first;
    for (let i = 1; i < pnOffset; i++) aad[i] = pkt[i]; // (a loop: Buffer.copy costs more for a header)
    let truncated = 0;
    for (let i = 0; i < pnLen; i++) {
      const b = pkt[pnOffset + i] ^ mask[1 + i];
      aad[pnOffset + i] = b;
      truncated = truncated * 256 + b;
    }
    this.opened(level, dir, aad, pkt.subarray(pnOffset + pnLen), truncated, pnLen, ts);
    return true;
  }

  /** A packet without header protection: packet number, payload protection, frames. */
  private opened(level: Level, dir: Dir, aad: Buffer, payload: Buffer, truncated: number, pnLen: number, ts: Timestamp): void {
    const sp = space(level) * 2 + dir;
    const pn = decodePacketNumber(this.largest[sp], truncated, pnLen * 8);
    const first = aad[0];
    let plain: Buffer | undefined;
    if (level === Level.OneRtt) plain = this.openApp(dir, (first >> 2) & 1, aad, payload, pn);
    else plain = (this.keysFor(level, dir) as PacketKeys).open(aad, payload, pn);
    if (plain === undefined) {
      if (level === Level.OneRtt && payload.length >= 16 && this.resetTokens.has(payload.toString('hex', payload.length - 16))) {
        if (!this.statelessReset) {
          this.statelessReset = true; // not a protected packet at all
          this.host.ended(this, ts);
        }
        return;
      }
      this.counts.failed++;
      if (level !== Level.Initial) this.counts.failedProtected++;
      this.host.anomalies.anomaly('quic_decrypt_failed', LEVEL_NAMES[level]);
      return;
    }
    this.counts.decrypted++;
    if (level !== Level.Initial) this.counts.decryptedProtected++;
    if (pn > this.largest[sp]) this.largest[sp] = pn;
    if (level === Level.OneRtt) this.established = true;
    this.frames(level, dir, plain, ts);
  }

  /**
   * Holds a 1-RTT packet in the stage's batch (src/quic/gcmBatch.ts) when its keys are the current
   * AES-GCM ones; false when it is not batched (the caller processes it at once).
   */
  private batched(dir: Dir, keys: PacketKeys, pkt: Buffer, pnOffset: number, ts: Timestamp): boolean {
    const a = this.app[dir] as AppKeys;
    if (keys !== a.cur || pkt.length > MAX_BATCH_PACKET_BYTES || keys.gcm === undefined) return false;
    const b = this.host.batch;
    if (b.owner !== this || !b.fits(dir, pkt.length)) {
      b.flush();
      b.owner = this;
    }
    b.add(dir, pkt, pnOffset, ts);
    return true;
  }

  /**
   * BatchOwner: removes header protection with one AES-ECB call per direction, decodes packet
   * numbers, and decrypts and authenticates each direction's packets together (GcmBatchStream).
   * A packet of another key phase (a key update) and the rest of its direction after it are left
   * to the one-by-one path; so is a direction whose batch does not verify, from its first packet.
   */
  batchOpen(entries: readonly BatchEntry[], batch: PacketBatch): void {
    for (let dir = 0; dir < 2; dir++) {
      let n = 0;
      for (const e of entries) if (e.dir === dir) n++;
      if (n === 0) continue;
      const a = this.app[dir] as AppKeys;
      const keys = a.cur;
      const raw = batch.raw[dir];
      if (SAMPLES.length < n * 16) SAMPLES = Buffer.allocUnsafe(n * 32);
      let j = 0;
      for (const e of entries) if (e.dir === dir) raw.copy(SAMPLES, 16 * j++, e.rawOff + e.pnOffset + 4, e.rawOff + e.pnOffset + 20);
      const masks = keys.hp.masks(SAMPLES.subarray(0, 16 * n)) as Buffer;
      const st = batch.streams[dir];
      st.key = keys.gcm;
      const sp = space(Level.OneRtt) * 2 + dir;
      const before = this.largest[sp];
      let slow = false;
      j = 0;
      for (const e of entries) {
        if (e.dir !== dir) continue;
        const m = 16 * j++;
        const off = e.rawOff;
        const pnOffset = e.pnOffset;
        const first = raw[off] ^ (masks[m] & 0x1f);
        const pnLen = (first & 3) + 1;
        const aad = AAD_SCRATCH.subarray(0, pnOffset + pnLen);
        aad[0] = first;
        for (let i = 1; i < pnOffset; i++) aad[i] = raw[off + i];
        let truncated = 0;
        for (let i = 0; i < pnLen; i++) {
          const x = raw[off + pnOffset + i] ^ masks[m + 1 + i];
          aad[pnOffset + i] = x;
          truncated = truncated * 256 + x;
        }
        const payload = raw.subarray(off + pnOffset + pnLen, off + e.len);
        if (!slow && (((first >> 2) & 1) !== a.phase || payload.length < AEAD_TAG_LEN)) slow = true;
        if (slow) {
          e.aad = Buffer.from(aad);
          e.payload = Buffer.from(payload);
          continue;
        }
        const pn = decodePacketNumber(this.largest[sp], truncated, pnLen * 8);
        // (provisional until the batch verifies: the next packet's number is decoded against it)
        if (pn > this.largest[sp]) this.largest[sp] = pn;
        e.aadOff = st.off;
        e.aadLen = aad.length;
        e.i = st.add(keys.nonce(pn), aad, payload);
      }
      const ok = st.count === 0 || st.open();
      if (!ok) this.largest[sp] = before;
      for (const e of entries) {
        if (e.dir !== dir || e.i < 0) continue;
        if (ok) e.plain = st.plain(e.i);
        else {
          // (the unprotected header stands at the start of the packet's GHASH input)
          e.aad = Buffer.from(st.scratch.subarray(e.aadOff, e.aadOff + e.aadLen));
          e.payload = st.payload(e.i);
        }
      }
    }
  }

  /** BatchOwner: the opened packets in their order. */
  batchDone(entries: readonly BatchEntry[]): void {
    for (const e of entries) {
      const dir = e.dir as Dir;
      if (e.plain !== undefined) {
        this.counts.decrypted++;
        this.counts.decryptedProtected++;
        this.established = true;
        this.frames(Level.OneRtt, dir, e.plain, e.ts);
        continue;
      }
      const aad = e.aad as Buffer;
      const pnLen = (aad[0] & 3) + 1;
      let truncated = 0;
      for (let i = aad.length - pnLen; i < aad.length; i++) truncated = truncated * 256 + aad[i];
      this.opened(Level.OneRtt, dir, aad, e.payload as Buffer, truncated, pnLen, e.ts);
    }
  }

  /** RFC 9001 Section 6: a key phase bit different from the current one means the next keys. */
  private openApp(dir: Dir, phase: number, aad: Buffer, payload: Buffer, pn: number): Buffer | undefined {
    const a = this.app[dir] as AppKeys;
    const v = this.version as QuicVersion;
    if (phase === a.phase) {
      return a.cur.open(aad, payload, pn) ?? (a.prev ? a.prev.open(aad, payload, pn) : undefined);
    }
    a.next ??= nextPacketKeys(v, a.cur);
    const plain = a.next.open(aad, payload, pn);
    if (plain !== undefined) {
      a.prev = a.cur;
      a.cur = a.next;
      a.next = undefined;
      a.phase = phase;
      this.keyUpdates++;
      return plain;
    }
    // a late packet of the previous phase
    return a.prev ? a.prev.open(aad, payload, pn) : undefined;
  }

  private hold(level: Level, dir: Dir, pkt: Buffer, pnOffset: number, ts: Timestamp): void {
    const o = this.host.options;
    if (this.heldBytes + pkt.length > o.maxPendingBytesPerConnection || this.host.pendingTotal + pkt.length > o.maxPendingBytesTotal) {
      this.counts.noKey++;
      this.host.anomalies.anomaly(this.heldBytes + pkt.length > o.maxPendingBytesPerConnection ? 'quic_pending_limit' : 'quic_pending_total_limit');
      return;
    }
    this.held.push({ level, dir, pkt: Buffer.from(pkt), pnOffset, ts });
    this.heldBytes += pkt.length;
    this.host.pendingDelta(pkt.length);
  }

  /** Keys may have arrived (ServerHello parsed, key log lines added): decrypt what is held. */
  retryHeld(ts: Timestamp): void {
    if (this.held.length === 0) return;
    this.retryTs = ts;
    for (let progress = true; progress && this.held.length > 0; ) {
      progress = false;
      const list = this.held;
      this.held = [];
      this.host.pendingDelta(-this.heldBytes);
      this.heldBytes = 0;
      for (const h of list) {
        if (this.packet(h.level, h.dir, h.pkt, h.pnOffset, h.ts, true)) progress = true;
        else {
          this.held.push(h);
          this.heldBytes += h.pkt.length;
          this.host.pendingDelta(h.pkt.length);
        }
      }
    }
  }

  // ------------------------------------------------------------------ frames (RFC 9000 Section 19)

  private frames(level: Level, dir: Dir, b: Buffer, ts: Timestamp): void {
    const end = b.length;
    let p = 0;
    const an = this.host.anomalies;
    const bad = (what: string): void => an.anomaly('quic_frame_malformed', what);
    // reads one varint at p (advancing it); -1 when cut short
    const vi = (): number => {
      const v = readVarint(b, p, end);
      if (v >= 0) p += varLen(b[p]);
      return v;
    };
    while (p < end) {
      const t = b[p];
      if (t === 0x00) {
        while (p < end && b[p] === 0) p++;
        continue;
      }
      const type = vi();
      if (type < 0) return bad('type');
      switch (type) {
        case 0x01: // PING
        case 0x1e: // HANDSHAKE_DONE
          if (type === 0x1e) this.established = true;
          break;
        case 0x02:
        case 0x03: {
          // ACK
          vi();
          vi();
          const n = vi();
          if (vi() < 0 || n < 0) return bad('ack');
          for (let i = 0; i < n; i++) if (vi() < 0 || vi() < 0) return bad('ack');
          if (type === 0x03 && (vi() < 0 || vi() < 0 || vi() < 0)) return bad('ack');
          break;
        }
        case 0x04: {
          const id = vi();
          if (vi() < 0 || vi() < 0 || id < 0) return bad('reset_stream');
          this.streamReset(id, dir, ts);
          break;
        }
        case 0x05:
          if (vi() < 0 || vi() < 0) return bad('stop_sending');
          break;
        case 0x06: {
          const off = vi();
          const len = vi();
          if (off < 0 || len < 0 || p + len > end) return bad('crypto');
          this.cryptoData(level, dir, off, b.subarray(p, p + len));
          p += len;
          break;
        }
        case 0x07: {
          const len = vi();
          if (len < 0 || p + len > end) return bad('new_token');
          p += len;
          break;
        }
        case 0x10:
        case 0x12:
        case 0x13:
        case 0x14:
        case 0x16:
        case 0x17:
        case 0x19:
          if (vi() < 0) return bad('frame');
          break;
        case 0x11:
        case 0x15:
          if (vi() < 0 || vi() < 0) return bad('frame');
          break;
        case 0x18: {
          // NEW_CONNECTION_ID: the sender's new CIDs (RFC 9000 Section 19.15)
          if (vi() < 0 || vi() < 0 || p >= end) return bad('new_connection_id');
          const l = b[p++];
          if (l < 1 || l > 20 || p + l + 16 > end) return bad('new_connection_id');
          this.host.addCid(this, b.subarray(p, p + l), dir === Dir.ToClient);
          // RFC 9000 Section 10.3: a datagram ending in this token is a stateless reset
          if (this.resetTokens.size < 64) this.resetTokens.add(b.toString('hex', p + l, p + l + 16));
          p += l + 16;
          break;
        }
        case 0x1a:
        case 0x1b:
          if (p + 8 > end) return bad('path');
          p += 8;
          break;
        case 0x1c:
        case 0x1d: {
          if (vi() < 0) return bad('connection_close');
          if (type === 0x1c && vi() < 0) return bad('connection_close');
          const rl = vi();
          if (rl < 0 || p + rl > end) return bad('connection_close');
          p += rl;
          if (!this.closeSeen) {
            this.closeSeen = true;
            this.host.ended(this, ts);
          }
          break;
        }
        case 0x30:
          p = end;
          break;
        case 0x31: {
          const len = vi();
          if (len < 0 || p + len > end) return bad('datagram');
          p += len;
          break;
        }
        default:
          if (type >= 0x08 && type <= 0x0f) {
            const id = vi();
            const off = type & 0x04 ? vi() : 0;
            const len = type & 0x02 ? vi() : end - p;
            if (id < 0 || off < 0 || len < 0 || p + len > end) return bad('stream');
            if (level === Level.Initial || level === Level.Handshake) return bad('stream_level');
            this.streamData(id, dir, off, b.subarray(p, p + len), (type & 0x01) !== 0, ts);
            p += len;
            break;
          }
          // unknown extension frame: its length is unknown, the rest of the packet is skipped
          an.anomaly('quic_unknown_frame', `0x${type.toString(16)}`);
          return;
      }
    }
  }

  // ------------------------------------------------------------------ CRYPTO -> TLS handshake

  /**
   * After a Retry the client's next Initial carries its ClientHello again from CRYPTO offset 0,
   * and it may be a new one: quiche (Netty's QUIC) restarts its TLS handshake on a Retry, with a new
   * client random, which is the one the key log's lines name (fixtures/quic/netty-retry). The
   * client's Initial CRYPTO stream starts over, and the ClientHello that follows replaces the first.
   */
  private restartClientHello(): void {
    const i = Level.Initial * 2 + Dir.ToServer;
    this.crypto[i] = undefined;
    this.hsParsers[i] = undefined;
    this.clientHello = undefined;
  }

  private cryptoData(level: Level, dir: Dir, off: number, data: Buffer): void {
    if (level === Level.ZeroRtt) return this.host.anomalies.anomaly('quic_frame_malformed', 'crypto_in_0rtt');
    const i = level * 2 + dir;
    let s = this.crypto[i];
    if (s === undefined) {
      const parser = (this.hsParsers[i] = new HandshakeReassembler(
        (type, body, raw) => this.handshake(dir, type, body, raw),
        this.host.anomalies,
        { maxHandshakeMessageBytes: this.host.options.maxCryptoBytes },
      ));
      const sink: OrderedSink = {
        data: (d) => parser.push(d),
        gap: () => parser.reset(),
        end: () => undefined,
      };
      s = this.crypto[i] = new OrderedStream(sink);
    }
    if (off + data.length > this.host.options.maxCryptoBytes) {
      this.host.anomalies.anomaly('quic_crypto_limit');
      return;
    }
    s.push(off, data, false);
    if (s.buffered > this.host.options.maxCryptoBytes) {
      this.host.anomalies.anomaly('quic_crypto_limit');
      s.flush();
    }
  }

  private handshake(dir: Dir, type: number, body: Buffer, raw: Buffer): void {
    switch (type) {
      case HandshakeType.ClientHello:
        if (dir === Dir.ToServer && this.clientHello === undefined) {
          this.clientHello = parseClientHello(Buffer.from(body), Buffer.from(raw));
          this.keysChanged = true;
          if (this.clientHello === undefined) this.host.anomalies.anomaly('quic_tls_malformed', 'client_hello');
          else this.decision ??= this.host.decide(this, this.clientHello.sni); // (asked once: a ClientHello after a Retry keeps it)
        }
        break;
      case HandshakeType.ServerHello:
        if (dir === Dir.ToClient && this.serverHello === undefined) {
          const sh = parseServerHello(Buffer.from(body));
          if (sh === undefined) {
            this.host.anomalies.anomaly('quic_tls_malformed', 'server_hello');
            break;
          }
          this.serverHello = sh;
          this.keysChanged = true;
          this.suite = QUIC_SUITES.get(sh.cipherSuite);
          if (this.suite === undefined) this.unsupportedSuite = sh.cipherSuite;
        }
        break;
      case HandshakeType.EncryptedExtensions:
        if (dir === Dir.ToClient) {
          const ee = parseEncryptedExtensions(body);
          if (ee?.alpn !== undefined) this.alpn = ee.alpn;
        }
        break;
      case HandshakeType.Certificate:
        if (dir === Dir.ToClient && this.certificates.length === 0) {
          const c = parseCertificate(body, true, false);
          if (c) this.certificates = c.certificates.map(internCertificate);
        }
        break;
      default:
        break;
    }
  }

  // ------------------------------------------------------------------ STREAM -> HTTP/3

  private streamData(id: number, dir: Dir, off: number, data: Buffer, fin: boolean, ts: Timestamp): void {
    this.appDataSeen = true;
    const key = id * 2 + dir;
    let s = this.streams.get(key);
    if (s === undefined) {
      if (this.streams.size >= this.host.options.maxStreamsPerConnection) {
        this.host.anomalies.anomaly('quic_stream_limit');
        return;
      }
      const h3 = this.httpAnalyzer();
      const side = dir === Dir.ToServer ? H3Side.Client : H3Side.Server;
      const sink: OrderedSink = {
        data: (d) => {
          this.counts.appBytes += d.length;
          h3?.onStreamData(id, side, d, this.curTs);
        },
        gap: (n) => h3?.onStreamGap(id, side, n, this.curTs),
        end: () => h3?.onStreamEnd(id, side, this.curTs),
      };
      s = new OrderedStream(sink);
      this.streams.set(key, s);
    }
    this.curTs = ts;
    this.streamBuffered += s.push(off, data, fin);
    if (this.streamBuffered > this.host.options.maxStreamBufferBytesPerConnection) {
      this.host.anomalies.anomaly('quic_stream_buffer_limit');
      for (const x of this.streams.values()) this.streamBuffered -= x.flush();
    }
  }

  private curTs: Timestamp = { sec: 0, nsec: 0 };

  private streamReset(id: number, dir: Dir, ts: Timestamp): void {
    const s = this.streams.get(id * 2 + dir);
    this.curTs = ts;
    if (s) this.streamBuffered -= s.reset();
  }

  /** HTTP/3 when the server chose h3 (or "h3-NN" drafts), or when no ALPN was seen and streams carry data. */
  private httpAnalyzer(): Http3Analyzer | undefined {
    if (this.h3) return this.h3;
    const alpn = this.alpn ?? this.clientHello?.alpn?.[0];
    if (alpn !== undefined && !alpn.startsWith('h3')) return undefined;
    this.h3 = new Http3Analyzer(this.events, this.host.anomalies, this.host.http);
    return this.h3;
  }

  /** End of the connection: flush held packets and streams; the HTTP/3 exchanges are emitted. */
  close(ts: Timestamp): void {
    if (this.host.batch.owner === this) this.host.batch.flush();
    this.retryHeld(ts);
    this.counts.noKey += this.held.length;
    this.held = [];
    this.host.pendingDelta(-this.heldBytes);
    this.heldBytes = 0;
    this.curTs = ts;
    for (const s of this.streams.values()) s.flush();
    this.streams.clear();
    this.h3?.onClose(ts);
    void this.appDataSeen;
  }

  /** RFC 9001 / the contract's decryption.status for this connection. */
  get status(): string {
    if (!this.clientHello || !this.serverHello) return 'missing_handshake';
    if (this.unsupportedSuite) return 'unsupported_cipher';
    if (this.decision === 'paused' || this.decision === 'disabled') return this.decision;
    const c = this.counts;
    if (c.decryptedProtected === 0) return c.failedProtected > 0 ? 'integrity_failure' : 'no_key';
    return c.failedProtected > 0 || c.noKey > 0 ? 'partial' : 'decrypted';
  }
}

function varLen(b: number): number {
  return 1 << (b >> 6);
}

function isZero(d: Buffer, from: number): boolean {
  for (let i = from; i < d.length; i++) if (d[i] !== 0) return false;
  return true;
}

export { EMPTY as NO_BYTES };
