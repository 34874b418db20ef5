/**
 * FTP data channels (RFC 959 Section 3.2, RFC 2428 EPRT/EPSV, RFC 4217 Section 9 protected data):
 * the registry of expected data connections shared by all flows of one engine, and the byte
 * accounting of one data connection.
 *
 * A control session registers an expectation when the server accepted PASV (227) / EPSV (229)
 * or the client's PORT / EPRT (200): "a TCP connection to ip:port". The dispatcher asks the
 * registry about every new flow (`claim`); a match hands the flow to the control session's
 * DataChannel. Expectations expire (capture time) and the registry is bounded.
 */
import { createHash, type Hash } from 'node:crypto';
import { isIPv6 } from 'node:net';
import type { AnomalySink, Dir, EndReason, FlowInfo, Timestamp } from '../../types.js';
import { tsSeconds } from '../../types.js';

export interface DataChannelOptions {
  /** Seconds an expectation waits for its connection (capture time). */
  expectationTtlSeconds: number;
  /** Expectations kept per engine; the oldest are dropped beyond (counted). */
  maxExpectations: number;
}

export const DEFAULT_DATA_CHANNEL_OPTIONS: DataChannelOptions = {
  expectationTtlSeconds: 120,
  maxExpectations: 10_000,
};

/** Canonical text of an IP address so that expectations and flows compare equal. */
export function canonicalIp(ip: string): string {
  let s = ip.trim().toLowerCase();
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  if (s.startsWith('::ffff:') && /^\d+\.\d+\.\d+\.\d+$/.test(s.slice(7))) return s.slice(7);
  // (no ':' is never IPv6: skips isIPv6, whose large pattern costs ~25 ms to compile on first use)
  if (s.includes(':') && isIPv6(s)) {
    try {
      return new URL(`http://[${s}]/`).hostname.slice(1, -1);
    } catch {
      return s;
    }
  }
  return s;
}

/** What the dispatcher gets for a flow that a control session expected. */
export interface DataChannelClaim {
  channel: DataChannel;
  /** PROT P was in effect when the transfer was announced (the connection should be TLS). */
  protectedExpected: boolean;
  /** The control connection's server endpoint (the asset the data connection counts toward). */
  control?: { ip: string; port: number };
}

export interface Expectation {
  /** The data connection's TCP server endpoint. */
  ip: string;
  port: number;
  /** When registered (capture time); expires after expectationTtlSeconds. */
  ts: Timestamp;
  protectedExpected: boolean;
  /** The control connection's server endpoint. */
  control?: { ip: string; port: number };
  /** Called once when a flow matches: returns the channel that receives the flow's bytes. */
  attach(flow: FlowInfo, ts: Timestamp): DataChannel;
  /** Set when claimed or cancelled. */
  done?: boolean;
}

export class DataChannelRegistry {
  private readonly byKey = new Map<string, Expectation[]>();
  private count = 0;
  readonly opts: DataChannelOptions;

  constructor(
    private readonly anomalies?: AnomalySink,
    opts?: Partial<DataChannelOptions>,
  ) {
    this.opts = { ...DEFAULT_DATA_CHANNEL_OPTIONS, ...(opts ?? {}) };
  }

  get size(): number {
    return this.count;
  }

  expect(e: Expectation): void {
    const key = `${canonicalIp(e.ip)}|${e.port}`;
    let list = this.byKey.get(key);
    if (!list) this.byKey.set(key, (list = []));
    list.push(e);
    this.count++;
    if (++this.sinceSweep >= 1024) this.sweep(e.ts);
    if (this.count > this.opts.maxExpectations) this.evictOldest();
  }

  private sinceSweep = 0;

  /** Drops claimed, cancelled and expired expectations (amortised: every 1024 registrations). */
  private sweep(now: Timestamp): void {
    this.sinceSweep = 0;
    const t = tsSeconds(now);
    for (const [k, list] of this.byKey) {
      const keep = list.filter((e) => !e.done && t - tsSeconds(e.ts) <= this.opts.expectationTtlSeconds);
      this.count -= list.length - keep.length;
      if (keep.length) this.byKey.set(k, keep);
      else this.byKey.delete(k);
    }
  }

  cancel(e: Expectation): void {
    e.done = true;
  }

  /** The expectation this new flow fulfils (oldest unexpired one for its server endpoint), if any. */
  claim(flow: FlowInfo, ts: Timestamp): DataChannelClaim | undefined {
    if (this.byKey.size === 0) return undefined; // no FTP control session expects anything (the usual case)
    const key = `${canonicalIp(flow.serverIp)}|${flow.serverPort}`;
    const list = this.byKey.get(key);
    if (!list) return undefined;
    const now = tsSeconds(flow.start ?? ts);
    let found: Expectation | undefined;
    while (list.length) {
      const e = list.shift()!;
      this.count--;
      if (e.done) continue;
      if (now - tsSeconds(e.ts) > this.opts.expectationTtlSeconds) {
        this.anomalies?.anomaly('ftp_data_expectation_expired');
        continue;
      }
      if (now + 1 < tsSeconds(e.ts)) {
        // a connection older than the announcement cannot be its data channel; keep it
        list.unshift(e);
        this.count++;
        break;
      }
      found = e;
      break;
    }
    if (!list.length) this.byKey.delete(key);
    if (!found) return undefined;
    found.done = true;
    return { channel: found.attach(flow, ts), protectedExpected: found.protectedExpected, control: found.control };
  }

  private evictOldest(): void {
    let oldestKey: string | undefined;
    let oldest = Infinity;
    for (const [k, list] of this.byKey) {
      const t = list.length ? tsSeconds(list[0].ts) : -Infinity;
      if (t < oldest) {
        oldest = t;
        oldestKey = k;
      }
    }
    if (oldestKey === undefined) return;
    const list = this.byKey.get(oldestKey)!;
    list.shift();
    this.count--;
    if (!list.length) this.byKey.delete(oldestKey);
    this.anomalies?.anomaly('ftp_data_expectation_evicted');
  }
}

/** Bytes of a transfer's start reported as file.magic (hex). */
export const FILE_MAGIC_BYTES = 16;

/** Per-direction accounting of a data connection: bytes and a running SHA-256. */
class DirAccount {
  bytes = 0;
  gap = false;
  ended = false;
  endReason: EndReason | undefined;
  private hash: Hash | undefined = createHash('sha256');
  digest: string | undefined;
  /** The first bytes of the transfer (file-type detection by magic bytes). */
  head: Buffer | undefined;

  add(data: Buffer): void {
    if (this.bytes < FILE_MAGIC_BYTES && !this.gap) {
      const t = Math.min(FILE_MAGIC_BYTES - this.bytes, data.length);
      this.head = this.head ? Buffer.concat([this.head, data.subarray(0, t)]) : Buffer.from(data.subarray(0, t));
    }
    this.bytes += data.length;
    this.hash?.update(data);
  }

  markGap(len: number): void {
    this.gap = true;
    this.bytes += len;
    this.hash = undefined; // a hash over a hole would be a lie
  }

  finish(): void {
    if (this.hash) {
      this.digest = this.hash.digest('hex');
      this.hash = undefined;
    }
  }
}

/** What a finished (or given-up-on) data connection tells its command's event. */
export interface DataChannelResult {
  bytes: number;
  sha256?: string;
  /** Hex of the first FILE_MAGIC_BYTES bytes of the transfer, when its start was seen. */
  magic?: string;
  /** Direction that carried the data: 0 client->server (upload, from the TCP view), 1 server->client. */
  dir: Dir;
  tls: boolean;
  decrypted: boolean;
  gap: boolean;
  complete: boolean;
  /** How the data-carrying direction ended (undefined: not seen to end before the connection closed). */
  endReason?: EndReason;
  flowId: number;
  clientIp: string;
  clientPort: number;
  serverIp: string;
  serverPort: number;
}

/**
 * One data connection: receives the connection's clear bytes, or the decrypted bytes of its TLS
 * connection (PROT P), through the AppStream-shaped methods. `onDone` fires once when the
 * connection closed (both directions ended or flow closed).
 */
export class DataChannel {
  private readonly acct: [DirAccount, DirAccount] = [new DirAccount(), new DirAccount()];
  tls = false;
  /** Set when the TLS handler handed the decrypted stream over (keys were found). */
  decrypting = false;
  complete = false;
  private listeners: ((r: DataChannelResult) => void)[] = [];

  constructor(readonly flow: FlowInfo) {}

  /** Register for the result; fires immediately when already complete. */
  whenDone(fn: (r: DataChannelResult) => void): void {
    if (this.complete) fn(this.result());
    else this.listeners.push(fn);
  }

  onData(dir: Dir, data: Buffer, _ts: Timestamp): void {
    if (this.complete) return;
    this.acct[dir].add(data);
  }

  onGap(dir: Dir, length: number, _ts: Timestamp): void {
    if (this.complete) return;
    this.acct[dir].markGap(length);
  }

  onEnd(dir: Dir, reason: EndReason, _ts: Timestamp): void {
    if (!this.acct[dir].ended) this.acct[dir].endReason = reason;
    this.acct[dir].ended = true;
    if (this.acct[0].ended && this.acct[1].ended) this.finish();
  }

  onClose(_ts: Timestamp): void {
    this.finish();
  }

  /** The result so far (used for bounded waits that give up before the connection ends). */
  result(): DataChannelResult {
    const d: Dir = this.acct[1].bytes >= this.acct[0].bytes ? 1 : 0;
    const a = this.acct[d];
    return {
      bytes: a.bytes,
      sha256: this.complete && !a.gap ? a.digest : undefined,
      magic: a.head?.length ? a.head.toString('hex') : undefined,
      dir: d,
      tls: this.tls,
      decrypted: this.tls && this.decrypting,
      gap: a.gap || this.acct[d === 1 ? 0 : 1].gap,
      complete: this.complete,
      endReason: a.endReason,
      flowId: this.flow.id,
      clientIp: this.flow.clientIp,
      clientPort: this.flow.clientPort,
      serverIp: this.flow.serverIp,
      serverPort: this.flow.serverPort,
    };
  }

  private finish(): void {
    if (this.complete) return;
    this.complete = true;
    this.acct[0].finish();
    this.acct[1].finish();
    const r = this.result();
    const ls = this.listeners;
    this.listeners = [];
    for (const fn of ls) fn(r);
  }
}
