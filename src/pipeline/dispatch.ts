/**
 * Protocol detection for new TCP flows: decides what a flow carries and hands it to the matching
 * handler, including clear-text protocols that upgrade to TLS in the middle of the connection
 * (SMTP STARTTLS, FTP AUTH TLS) and FTP data connections announced on a control connection.
 * It replaces engine.ts's FlowDispatcher (which knew TLS only).
 *
 * ROUTING (first match wins; decided once per flow):
 *  1. An FTP data connection the engine's DataChannelRegistry expects (a control session saw
 *     PASV 227 / EPSV 229 / PORT / EPRT 200 for this server ip:port): its bytes go to that
 *     session's DataChannel, clear or - when its first bytes are a TLS record (PROT P) - through a
 *     TLS handler whose decrypted stream goes to the DataChannel. In active mode the FTP server
 *     is the TCP client but the FTP client stays the TLS client: when the ClientHello comes from
 *     the TCP server the directions are swapped around the TLS handler (SwappedFlow/SwappedApp).
 *  2. By port, confirmed by content: server port 465 (SMTPS) -> TLS with the SMTP analyzer;
 *     990 (FTPS) -> TLS with the FTP control analyzer; 25/587/2525 -> clear SMTP analyzer that can
 *     switch to TLS; 21 -> clear FTP analyzer that can switch. A flow whose first bytes are a TLS
 *     record is TLS whatever its port (on 25/587/21 with the protocol's analyzer). Client port 20
 *     (active ftp-data) or server port 989 (ftps-data) without an expectation: an orphan data
 *     connection, reported as such by its own `ftp` event (ftp.data.orphan: true), never
 *     attached to a guessed control session.
 *  3. By content, any port: a TLS record -> TLS (the default app analyzers: HTTP, and SMTP/FTP
 *     by their client's first bytes); a server greeting `220 ` with SMTP words -> SMTP, with FTP
 *     words -> FTP; a plain `220 ` waits for the client: EHLO/HELO -> SMTP, USER/AUTH TLS/FEAT ->
 *     FTP; client first bytes EHLO/HELO -> SMTP, USER/AUTH TLS/AUTH SSL -> FTP.
 *  4. Other clear-text protocols that switch to TLS by a command of their own (IMAP, POP3, NNTP,
 *     LDAP, XMPP, ManageSieve, PostgreSQL, MySQL), and proxies that tunnel it (HTTP CONNECT,
 *     SOCKS): on their server ports (`startTlsPorts`), or by an IMAP/POP3 greeting, an XMPP stream
 *     header or a CONNECT request on any port, the flow is watched
 *     (src/pipeline/startTlsWatch.ts) for the client's ClientHello and then the server's
 *     ServerHello, up to `startTlsWatchBytes` per direction; from there on it is a TLS flow with
 *     the default app factory (its tls.session event, decryption status and detection; there is
 *     no analyzer of these protocols' content). The clear text before is not reported.
 *  Anything else is ignored (deps.onIgnored) after at most `sniffBytes` bytes.
 *
 * THE TLS SWITCH. A clear-text analyzer (SmtpSession, FtpSession) is constructed with
 * TlsUpgradeHooks. When the server accepts (SMTP 220 to STARTTLS, FTP 234 to AUTH TLS/SSL), the
 * analyzer calls `hooks.startTls(rest, ts)` with the bytes of each direction that follow the
 * switch point (client: after its STARTTLS/AUTH line, held since; server: after the 220/234
 * line), then ignores further clear bytes. The dispatcher creates the TLS handler with
 * `deps.makeTls(flow, app)`, where `app(info, events)` returns `analyzer.decryptedStream(events)`:
 * the same analyzer object continues the session on the decrypted stream, emitting through the
 * TLS flow's event sink, tagged decrypted. The dispatcher feeds `rest` to the TLS handler and
 * routes every later byte, gap and end of the flow there. A refused upgrade (454, 5xx) stays
 * clear text and nothing is switched.
 *
 * CONTRACT WITH THE ENGINE (DispatchDeps, one object per flow):
 *  - makeTls(flow, app?): a TlsFlowHandler for this flow. Without `app` the engine's default app
 *    factory (createAppAnalyzer by ALPN/content). With `app`, the handler's app factory must be
 *    `(info) => app(info, tlsEvents)` where tlsEvents is the EventSink the handler itself uses
 *    (so protocol events carry the tls.* fields of this flow).
 *  - clearEvents: EventSink for events of the clear-text part (emitted with decrypted=false);
 *    it should share the per-flow event ordinal with the TLS sink so event ids stay unique.
 *  - anomalies, dataChannels (one registry per engine, shared by all flows), options.
 *
 * SHARDING. A data connection is matched only by the Engine that saw its control connection.
 * Sharding flows by 5-tuple (pipeline/flowHash.ts) sends them to different workers, so with
 * --workers > 1 transfers lose their data (`ftp.data.seen: false`); sharding by the
 * direction-independent IP pair keeps all connections between two hosts together.
 */
import type { AppStream } from '../analyzers/index.js';
import { FtpSession, dataFields, type FtpOptions } from '../analyzers/ftp/session.js';
import { DataChannel, type DataChannelRegistry } from '../analyzers/ftp/dataChannels.js';
import { detectLineProtocolClient } from '../analyzers/smtp/detect.js';
import { SmtpSession, type SmtpOptions, type TlsUpgradeHooks } from '../analyzers/smtp/session.js';
import { StartTlsWatch } from './startTlsWatch.js';
import {
  Dir,
  type AnomalySink,
  type EndReason,
  type EventSink,
  type FlowCounters,
  type FlowHandler,
  type FlowInfo,
  type StreamSink,
  type Timestamp,
} from '../types.js';

/** App factory handed to makeTls: receives the TLS info and the TLS flow's event sink. */
export type TlsAppOverride = (info: unknown, events: EventSink) => AppStream;

export interface DispatchDeps {
  makeTls(flow: FlowInfo, app?: TlsAppOverride): FlowHandler;
  clearEvents: EventSink;
  anomalies: AnomalySink;
  dataChannels: DataChannelRegistry;
  /** Called once when the flow is recognised as nothing known. */
  onIgnored?(): void;
  options?: Partial<DispatchOptions>;
}

export interface DispatchOptions {
  smtpPorts: number[];
  smtpsPorts: number[];
  ftpPorts: number[];
  ftpsPorts: number[];
  /** TCP client port of active-mode data connections (RFC 959 L-1). */
  ftpDataPorts: number[];
  /** TCP server port of implicit-TLS data connections. */
  ftpsDataPorts: number[];
  /** Bytes (both directions together) looked at before giving up on detection. */
  sniffBytes: number;
  /** Server ports of clear-text protocols watched for a switch to TLS (rule 4). */
  startTlsPorts: number[];
  /** Clear-text bytes per direction a watched flow may show before its switch (rule 4). */
  startTlsWatchBytes: number;
  smtp: Partial<SmtpOptions>;
  ftp: Partial<FtpOptions>;
}

export const DEFAULT_DISPATCH_OPTIONS: DispatchOptions = {
  smtpPorts: [25, 587, 2525],
  smtpsPorts: [465],
  ftpPorts: [21],
  ftpsPorts: [990],
  ftpDataPorts: [20],
  ftpsDataPorts: [989],
  sniffBytes: 4096,
  // POP3, NNTP, IMAP, LDAP, SOCKS, MySQL, ManageSieve, PostgreSQL, XMPP client and server
  startTlsPorts: [110, 119, 143, 389, 1080, 3306, 4190, 5432, 5222, 5269],
  startTlsWatchBytes: 16384,
  smtp: {},
  ftp: {},
};

/** TLS record header: content type 20-24, major version 3, minor 0-4 (RFC 8446 Section 5.1). */
export function looksLikeTls(b: Buffer): boolean {
  return b.length >= 3 && b[0] >= 20 && b[0] <= 24 && b[1] === 3 && b[2] <= 4;
}

/** A TLS ClientHello record (handshake record whose first message is type 1). */
function looksLikeClientHello(b: Buffer): boolean {
  return b.length >= 6 && b[0] === 22 && b[1] === 3 && b[2] <= 4 && b[5] === 1;
}

export type Detected = 'tls' | 'smtp' | 'ftp' | 'unknown' | 'need_more';

const SMTP_STRONG = /\b(E?SMTP|LMTP)\b/i;
/** Rule 4 on any port: an IMAP or POP3 greeting; an XMPP stream header or an HTTP proxy's CONNECT. */
const STARTTLS_SERVER = /^(\* OK|\+OK)/;
const STARTTLS_CLIENT = /^(<\?xml|<stream:stream|CONNECT [!-~]+ HTTP\/1\.[01]\r?\n)/;
const FTP_STRONG = /FTP|Serv-U/i;
const SMTP_WEAK = /Postfix|Exim|Sendmail|Exchange|qmail|Haraka|smtpd|\bmail\b/i;

/**
 * Content-based detection from the first bytes of each direction (either may be empty).
 * Pure; 'need_more' when the bytes so far cannot decide.
 */
export function detectProtocol(client: Buffer, server: Buffer): Detected {
  if (looksLikeTls(client) || looksLikeTls(server)) return 'tls';
  const byClient = detectLineProtocolClient(client);
  if (byClient) return byClient;
  const s = server.subarray(0, 512).toString('latin1');
  const firstLineEnd = s.indexOf('\n');
  if (/^220[ -]/.test(s)) {
    const head = firstLineEnd < 0 ? s : s.slice(0, firstLineEnd);
    if (SMTP_STRONG.test(head)) return 'smtp';
    if (FTP_STRONG.test(head)) return 'ftp';
    if (SMTP_WEAK.test(head)) return 'smtp';
    if (firstLineEnd < 0 && s.length < 512) return 'need_more';
    // a neutral greeting: the client's first command decides
    if (client.length >= 5 || (client.length > 0 && client.includes(0x0a))) return 'unknown';
    return 'need_more';
  }
  if (/^(120|421|554)[ -]/.test(s) && firstLineEnd < 0 && s.length < 512) return 'need_more';
  if (s.length === 0 && client.length < 5 && !client.includes(0x0a)) return 'need_more';
  if (s.length > 0 && s.length < 4 && /^\d{0,3}$/.test(s) && client.length === 0) return 'need_more';
  if (client.length > 0 && client.length < 5 && !client.includes(0x0a) && s.length === 0) return 'need_more';
  return 'unknown';
}

/** Shared empty lists for flows past sniffing (nothing is added to them outside Mode.Sniff). */
/** What a direction that sent nothing yet holds (read only). */
const NO_BYTES = Buffer.alloc(0);
const NO_HELD: { dir: Dir; data: Buffer; ts: Timestamp }[] = [];
const NO_ENDS: { dir: Dir; reason: EndReason; ts: Timestamp }[] = [];

const optionsCache = new WeakMap<object, DispatchOptions>();
/** The merged options, one object per distinct `deps.options` (not one per flow). */
function dispatchOptionsOf(o: Partial<DispatchOptions> | undefined): DispatchOptions {
  if (!o) return DEFAULT_DISPATCH_OPTIONS;
  let r = optionsCache.get(o);
  if (!r) {
    r = { ...DEFAULT_DISPATCH_OPTIONS, ...o };
    optionsCache.set(o, r);
  }
  return r;
}

const other = (d: Dir): Dir => (d === Dir.ToServer ? Dir.ToClient : Dir.ToServer);

/** Forwards a stream with its directions swapped: the part SwappedFlow and SwappedApp share. */
abstract class SwappedStream<T extends StreamSink> implements StreamSink {
  constructor(protected readonly inner: T) {}
  onData(dir: Dir, data: Buffer, ts: Timestamp): void {
    this.inner.onData(other(dir), data, ts);
  }
  onGap(dir: Dir, length: number, ts: Timestamp): void {
    this.inner.onGap(other(dir), length, ts);
  }
  onEnd(dir: Dir, reason: EndReason, ts: Timestamp): void {
    this.inner.onEnd(other(dir), reason, ts);
  }
}

/** Presents a flow with its directions swapped (the TLS client is the TCP server). */
class SwappedFlow extends SwappedStream<FlowHandler> implements FlowHandler {
  onClose(reason: EndReason, counters: FlowCounters, ts: Timestamp): void {
    this.inner.onClose(reason, counters, ts);
  }
  settled(): boolean {
    return this.inner.settled?.() ?? false;
  }
}

/** The decrypted stream of a SwappedFlow, turned back into TCP directions. */
class SwappedApp extends SwappedStream<AppStream> implements AppStream {
  onClose(ts: Timestamp): void {
    this.inner.onClose(ts);
  }
  skippable(dir: Dir): number {
    return this.inner.skippable?.(other(dir)) ?? 0;
  }
  onSkipped(dir: Dir, length: number, ts: Timestamp): void {
    this.inner.onSkipped?.(other(dir), length, ts);
  }
}

const enum Mode {
  Sniff,
  Tls,
  /** A clear-text analyzer that may hand over to TLS. */
  Clear,
  /** FTP data connection (expected or orphan), clear bytes go to `channel`. */
  DataClear,
  /** Clear text watched for a switch to TLS (rule 4); `tls` exists once the client switched. */
  Watch,
  Ignored,
}

export class ProtocolDispatcher implements FlowHandler {
  private mode = Mode.Sniff;
  private readonly opts: DispatchOptions;
  private tls: FlowHandler | undefined;
  private clear: (AppStream & { decryptedStream(events: EventSink): AppStream }) | undefined;
  private channel: DataChannel | undefined;
  private channelProtected = false;
  private orphan = false;
  /** Events sink of the data connection's TLS handler (orphan events of TLS data connections). */
  private channelTlsEvents: EventSink | undefined;
  private held: { dir: Dir; data: Buffer; ts: Timestamp }[] = [];
  private heldEnds: { dir: Dir; reason: EndReason; ts: Timestamp }[] = NO_ENDS;
  private closed = false;
  /** Rule 4: the watch, and whether the server's TLS has started (the client's: `tls` is set). */
  private watch: StartTlsWatch | undefined;
  private serverSwitched = false;

  constructor(
    private readonly flow: FlowInfo,
    private readonly deps: DispatchDeps,
  ) {
    this.opts = dispatchOptionsOf(deps.options);
    const claim = deps.dataChannels.claim(flow, flow.start);
    if (claim) {
      this.channel = claim.channel;
      this.channelProtected = claim.protectedExpected;
      // its server port is an ephemeral one: the asset is the control connection's server
      if (claim.control) flow.assetServer = claim.control;
    } else if (this.opts.ftpDataPorts.includes(flow.clientPort) || this.opts.ftpsDataPorts.includes(flow.serverPort)) {
      this.channel = new DataChannel(flow);
      this.orphan = true;
      this.channelProtected = this.opts.ftpsDataPorts.includes(flow.serverPort);
    }
  }

  /** What the flow turned out to be (for stats and tests). */
  get kind(): string {
    if (this.channel) return this.orphan ? 'ftp-data-orphan' : 'ftp-data';
    switch (this.mode) {
      case Mode.Sniff:
        return 'undecided';
      case Mode.Tls:
        return this.clear ? 'tls-upgraded' : 'tls';
      case Mode.Clear:
        return this.clear instanceof SmtpSession ? 'smtp' : 'ftp';
      case Mode.DataClear:
        return 'ftp-data';
      case Mode.Watch:
        return this.tls ? 'tls-upgraded' : 'starttls-watch';
      default:
        return 'ignored';
    }
  }

  onData(dir: Dir, data: Buffer, ts: Timestamp): void {
    switch (this.mode) {
      case Mode.Tls:
        return this.tls!.onData(dir, data, ts);
      case Mode.Clear:
        return this.clear!.onData(dir, data, ts);
      case Mode.DataClear:
        return this.channel!.onData(dir, data, ts);
      case Mode.Watch:
        return this.watchData(dir, data, ts);
      case Mode.Ignored:
        return;
      case Mode.Sniff:
        break;
    }
    if (data.length === 0) return;
    // Held without a copy while deciding: most flows are decided by their first bytes, which are
    // then handed on at once (handlers copy what they keep); still undecided, the bytes are copied.
    const item = { dir, data, ts };
    this.held.push(item);
    this.decide(false);
    if (this.mode === Mode.Sniff && this.held.length > 0 && this.held[this.held.length - 1] === item) item.data = Buffer.from(data);
  }

  onGap(dir: Dir, length: number, ts: Timestamp): void {
    if (this.mode === Mode.Sniff) {
      // a gap before any byte (capture started mid-connection): keep sniffing what follows
      if (!this.held.length) return;
      this.decide(true);
    }
    switch (this.mode) {
      case Mode.Tls:
        return this.tls!.onGap(dir, length, ts);
      case Mode.Clear:
        return this.clear!.onGap(dir, length, ts);
      case Mode.DataClear:
        return this.channel!.onGap(dir, length, ts);
      case Mode.Watch:
        if (this.tls && (dir === Dir.ToServer || this.serverSwitched)) this.tls.onGap(dir, length, ts);
        return;
      default:
        return;
    }
  }

  onEnd(dir: Dir, reason: EndReason, ts: Timestamp): void {
    if (this.mode === Mode.Sniff) {
      // the other side may still speak (e.g. a server greeting after the client closed)
      if (this.heldEnds === NO_ENDS) this.heldEnds = [];
      this.heldEnds.push({ dir, reason, ts });
      if (this.heldEnds.length >= 2) this.decide(true);
      return;
    }
    this.forwardEnd(dir, reason, ts);
  }

  /**
   * Only plain TLS flows (HTTPS, implicit SMTPS/FTPS) with nothing held report at their end; clear
   * and STARTTLS sessions and FTP data connections (matched with their control session) keep the
   * closing timeout.
   */
  settled(): boolean {
    return this.mode === Mode.Tls && !this.clear && !this.channel && (this.tls!.settled?.() ?? false);
  }

  onClose(reason: EndReason, counters: FlowCounters, ts: Timestamp): void {
    if (this.closed) return;
    if (this.mode === Mode.Sniff) this.decide(true);
    this.closed = true;
    if (this.mode === Mode.Watch && !this.tls) this.giveUpWatch();
    if (this.tls) this.tls.onClose(reason, counters, ts);
    this.clear?.onClose(ts);
    if (this.channel) {
      this.channel.onClose(ts);
      if (this.orphan) this.emitOrphan(ts);
    }
  }

  private forwardEnd(dir: Dir, reason: EndReason, ts: Timestamp): void {
    switch (this.mode) {
      case Mode.Tls:
        return this.tls!.onEnd(dir, reason, ts);
      case Mode.Clear:
        return this.clear!.onEnd(dir, reason, ts);
      case Mode.DataClear:
        return this.channel!.onEnd(dir, reason, ts);
      case Mode.Watch:
        if (this.tls) this.tls.onEnd(dir, reason, ts);
        return;
      default:
        return;
    }
  }

  private heldOf(dir: Dir): Buffer {
    // A loop, not filter/map: decide() runs on a flow's first bytes, mostly before V8 has
    // optimised it; one chunk per direction (the usual case) is returned as it is.
    const held = this.held;
    let one: Buffer | undefined;
    let n = 0;
    for (let i = 0; i < held.length; i++) {
      if (held[i].dir !== dir) continue;
      one = held[i].data;
      n++;
    }
    if (n === 1) return one!;
    if (n === 0) return NO_BYTES;
    const parts: Buffer[] = [];
    for (let i = 0; i < held.length; i++) if (held[i].dir === dir) parts.push(held[i].data);
    return Buffer.concat(parts);
  }

  private decide(force: boolean): void {
    const client = this.heldOf(Dir.ToServer);
    const server = this.heldOf(Dir.ToClient);
    const p = this.flow.serverPort;
    const o = this.opts;
    if (this.channel) {
      if (!client.length && !server.length && !force) return;
      const tls = this.channelProtected
        ? looksLikeTls(client) || looksLikeTls(server)
        : looksLikeClientHello(client) || looksLikeClientHello(server);
      if (tls && !this.channelProtected && !this.orphan) this.deps.anomalies.anomaly('ftp_data_unexpected_tls');
      if (!tls && this.channelProtected && !this.orphan && (client.length || server.length)) {
        this.deps.anomalies.anomaly('ftp_data_expected_tls');
      }
      return tls ? this.startDataTls() : this.route(Mode.DataClear);
    }
    const det = detectProtocol(client, server);
    if (det === 'tls') {
      if (o.smtpsPorts.includes(p) || o.smtpPorts.includes(p)) return this.startImplicit('smtp');
      if (o.ftpsPorts.includes(p) || o.ftpPorts.includes(p)) return this.startImplicit('ftp');
      return this.startTlsDefault();
    }
    if (det === 'need_more' && !force && client.length + server.length < o.sniffBytes) {
      // well-known clear-text ports decide right away (the greeting is all we may ever get)
      if (o.smtpPorts.includes(p) && server.length >= 4 && /^\d{3}[ -]/.test(server.toString('latin1', 0, 4))) return this.startClear('smtp');
      if (o.ftpPorts.includes(p) && server.length >= 4 && /^\d{3}[ -]/.test(server.toString('latin1', 0, 4))) return this.startClear('ftp');
      return;
    }
    if (det === 'smtp') return this.startClear('smtp');
    if (det === 'ftp') return this.startClear('ftp');
    // unknown content: the port of a line protocol still wins when the bytes look like one
    const text = /^\d{3}[ -]/.test(server.toString('latin1', 0, 4)) || /^[A-Za-z]{3,8}( |\r?\n)/.test(client.toString('latin1', 0, 9));
    if (text && o.smtpPorts.includes(p)) return this.startClear('smtp');
    if (text && o.ftpPorts.includes(p)) return this.startClear('ftp');
    if (o.startTlsPorts.includes(p) || STARTTLS_SERVER.test(server.toString('latin1', 0, 5)) || STARTTLS_CLIENT.test(client.toString('latin1', 0, 300))) {
      return this.startWatch();
    }
    if (!force && client.length + server.length < o.sniffBytes && det === 'need_more') return;
    this.mode = Mode.Ignored;
    this.held = NO_HELD;
    this.deps.onIgnored?.();
  }

  /** Switches to `mode` and replays what was held, then held ends. */
  private route(mode: Mode): void {
    this.mode = mode;
    const held = this.held;
    this.held = NO_HELD;
    for (const h of held) this.onData(h.dir, h.data, h.ts);
    const ends = this.heldEnds;
    this.heldEnds = NO_ENDS;
    for (const e of ends) this.forwardEnd(e.dir, e.reason, e.ts);
  }

  /** Rule 4: clear text watched for its switch to TLS. */
  private startWatch(): void {
    this.watch = new StartTlsWatch(this.opts.startTlsWatchBytes);
    this.route(Mode.Watch);
  }

  private watchData(dir: Dir, data: Buffer, ts: Timestamp): void {
    const w = this.watch!;
    if (this.tls && (dir === Dir.ToServer || this.serverSwitched)) return this.tls.onData(dir, data, ts);
    if (w.exhausted(dir)) return;
    const at = w.find(dir, data);
    if (at >= 0) {
      if (dir === Dir.ToServer) this.tls = this.deps.makeTls(this.flow);
      else this.serverSwitched = true;
      this.tls!.onData(dir, at ? data.subarray(at) : data, ts);
      return;
    }
    if (!this.tls && w.exhausted(dir)) {
      this.giveUpWatch();
      this.mode = Mode.Ignored;
    }
  }

  /** A watched flow that never switched is one of the ignored flows. */
  private giveUpWatch(): void {
    if (this.watch === undefined) return;
    this.watch = undefined;
    this.deps.onIgnored?.();
  }

  private startTlsDefault(): void {
    this.tls = this.deps.makeTls(this.flow);
    this.route(Mode.Tls);
  }

  private newSession(proto: 'smtp' | 'ftp', events: EventSink, hooks: TlsUpgradeHooks | undefined, decrypted: boolean) {
    return proto === 'smtp'
      ? new SmtpSession(events, this.deps.anomalies, hooks, this.opts.smtp, decrypted)
      : new FtpSession(this.flow, events, this.deps.anomalies, this.deps.dataChannels, hooks, this.opts.ftp, decrypted);
  }

  /** Implicit TLS (SMTPS 465, FTPS 990): the protocol analyzer reads the decrypted stream. */
  private startImplicit(proto: 'smtp' | 'ftp'): void {
    this.tls = this.deps.makeTls(this.flow, (_info, events) => this.newSession(proto, events, undefined, true));
    this.route(Mode.Tls);
  }

  /** Clear text that may upgrade (STARTTLS / AUTH TLS). */
  private startClear(proto: 'smtp' | 'ftp'): void {
    const hooks: TlsUpgradeHooks = { startTls: (rest, ts) => this.upgrade(rest, ts) };
    this.clear = this.newSession(proto, this.deps.clearEvents, hooks, false);
    this.route(Mode.Clear);
  }

  private upgrade(rest: { dir: Dir; data: Buffer; ts: Timestamp }[], _ts: Timestamp): void {
    const session = this.clear!;
    this.tls = this.deps.makeTls(this.flow, (_info, events) => session.decryptedStream(events));
    this.mode = Mode.Tls;
    for (const r of rest) this.tls.onData(r.dir, r.data, r.ts);
  }

  private startDataTls(): void {
    const ch = this.channel!;
    ch.tls = true;
    // Active mode: the FTP server opened the connection (TCP client) but the FTP client is still
    // the TLS client (vsftpd accepts, ftplib connects), so the ClientHello comes from the TCP server. The TLS
    // handler expects the TLS client on the ToServer side: swap directions around it.
    const swapped = !looksLikeClientHello(this.heldOf(Dir.ToServer)) && looksLikeClientHello(this.heldOf(Dir.ToClient));
    const inner = this.deps.makeTls(this.flow, (_info, events) => {
      ch.decrypting = true;
      this.channelTlsEvents = events;
      return swapped ? new SwappedApp(ch) : ch;
    });
    this.tls = swapped ? new SwappedFlow(inner) : inner;
    this.route(Mode.Tls);
  }

  private emitOrphan(ts: Timestamp): void {
    const ch = this.channel!;
    const r = ch.result();
    // active mode from port 20: the TCP client is the FTP server
    const ftpServer = this.opts.ftpDataPorts.includes(this.flow.clientPort) ? this.flow.clientIp : this.flow.serverIp;
    const fields = { ftp: { data: { ...dataFields(r, ftpServer), orphan: true, reason: 'control_session_not_seen' } } };
    const sink = this.channelTlsEvents ?? this.deps.clearEvents;
    sink.emit('ftp', fields, this.flow.start ?? ts, r.decrypted);
  }
}
