/**
 * FTP control-connection analyzer (RFC 959), clear text and/or decrypted, with FTPS (RFC 4217):
 *
 * - one `ftp` event per command with its final reply; preliminary 1xx replies are remembered,
 *   multi-line replies (`123-first ... 123 last`, RFC 959 Section 4.2) are joined;
 * - AUTH TLS / AUTH SSL (RFC 2228/4217): on 234 (or the historic 334) the analyzer hands the bytes
 *   after the switch point of each direction to `hooks.startTls` and stops; the dispatcher
 *   continues the same session on the decrypted stream via `decryptedStream(events)`;
 * - PBSZ/PROT: the data protection level; PASV (227), EPSV (229), PORT, EPRT (RFC 2428): an
 *   expectation in the engine's DataChannelRegistry; the next transfer command (LIST, NLST, MLSD,
 *   RETR, STOR, STOU, APPE) is paired with the data connection that fulfils it. Its event is
 *   emitted when both the final reply and the data connection are complete; a data connection
 *   not seen by the final reply is reported as such at once; an open one is waited for, bounded:
 *   until the next command's final reply, `maxDataWaitSeconds` of capture time, or the close of
 *   the control connection, then the event carries what is known;
 * - PASS arguments (and ACCT) are redacted; the user name (USER) is kept.
 */
import type { AnomalySink, EcsFields, EndReason, EventSink, FlowInfo, Timestamp } from '../../types.js';
import { Dir, tsSeconds } from '../../types.js';
import type { AppStream } from '../../types.js';
import { LineReader, lineText, textOf } from '../lines.js';
import type { TlsUpgradeHooks } from '../smtp/session.js';
import { DataChannel, canonicalIp, type DataChannelRegistry, type DataChannelResult, type Expectation } from './dataChannels.js';

export interface FtpOptions {
  maxLineBytes: number;
  /** Client bytes held while waiting for the reply to AUTH. */
  maxHoldBytes: number;
  maxPendingCommands: number;
  /** Lines kept of a multi-line reply (the rest are counted). */
  maxReplyLines: number;
  /** ftp.response.message length cap. */
  maxMessageBytes: number;
  /** Capture-time seconds a transfer's event waits for its data connection after the final reply. */
  maxDataWaitSeconds: number;
  maxUnknownCommands: number;
}

export const DEFAULT_FTP_OPTIONS: FtpOptions = {
  maxLineBytes: 4096,
  maxHoldBytes: 64 * 1024,
  maxPendingCommands: 256,
  maxReplyLines: 200,
  maxMessageBytes: 2048,
  maxDataWaitSeconds: 10,
  maxUnknownCommands: 8,
};

export const REDACTED = '<redacted>';

/** RFC 959, RFC 2228, RFC 2389, RFC 2428, RFC 3659, RFC 4217 and common extensions. */
const KNOWN_COMMANDS = new Set([
  'USER', 'PASS', 'ACCT', 'CWD', 'CDUP', 'SMNT', 'REIN', 'QUIT', 'PORT', 'PASV', 'TYPE', 'STRU', 'MODE', 'RETR', 'STOR',
  'STOU', 'APPE', 'ALLO', 'REST', 'RNFR', 'RNTO', 'ABOR', 'DELE', 'RMD', 'MKD', 'PWD', 'LIST', 'NLST', 'SITE', 'SYST',
  'STAT', 'HELP', 'NOOP', 'AUTH', 'ADAT', 'PROT', 'PBSZ', 'CCC', 'MIC', 'CONF', 'ENC', 'FEAT', 'OPTS', 'EPRT', 'EPSV',
  'LPRT', 'LPSV', 'MDTM', 'SIZE', 'MLST', 'MLSD', 'LANG', 'HOST', 'CLNT', 'XCWD', 'XCUP', 'XPWD', 'XMKD', 'XRMD',
  'MFMT', 'MFCT', 'MFF', 'AVBL', 'CSID', 'DSIZ', 'RMDA', 'THMB', 'XCRC', 'XMD5', 'XSHA1', 'XSHA256', 'HASH',
]);

const TRANSFER = new Set(['LIST', 'NLST', 'MLSD', 'RETR', 'STOR', 'STOU', 'APPE']);
const NAMED_TRANSFER = new Set(['RETR', 'STOR', 'STOU', 'APPE']);

const enum CMode {
  Cmd,
  Hold,
  Done,
}

/** A data connection announced by PASV/EPSV/PORT/EPRT, waiting for its transfer command. */
interface Slot {
  expectation: Expectation;
  channel?: DataChannel;
  cmd?: Cmd;
}

interface Cmd {
  index: number;
  verb: string;
  arg: string;
  ts: Timestamp;
  preliminary: number[];
  code?: number;
  message?: string;
  replyTs?: Timestamp;
  slot?: Slot;
  restOffset?: number;
  emitted: boolean;
  /** Decryption state when the command was sent. */
  decrypted: boolean;
  /** An unreadable line came where this command's reply was due (see serverLine). */
  garbled?: boolean;
}

function resolve(o?: Partial<FtpOptions>): FtpOptions {
  return { ...DEFAULT_FTP_OPTIONS, ...(o ?? {}) };
}

/** PASV reply h1,h2,h3,h4,p1,p2 (RFC 959 Section 4.1.2; position varies between servers). */
export function parsePasv(msg: string): { ip: string; port: number } | undefined {
  const m = /(\d{1,3}),\s*(\d{1,3}),\s*(\d{1,3}),\s*(\d{1,3}),\s*(\d{1,3}),\s*(\d{1,3})/.exec(msg);
  if (!m) return undefined;
  const n = m.slice(1).map(Number);
  if (n.some((x) => x > 255)) return undefined;
  const port = n[4] * 256 + n[5];
  if (port === 0) return undefined;
  return { ip: `${n[0]}.${n[1]}.${n[2]}.${n[3]}`, port };
}

/** EPSV reply `(|||port|)` (RFC 2428 Section 3; any delimiter 33-126). */
export function parseEpsv(msg: string): number | undefined {
  const m = /\(([!-~])\1\1(\d{1,5})\1\)/.exec(msg);
  if (!m) return undefined;
  const p = Number(m[2]);
  return p > 0 && p < 65536 ? p : undefined;
}

/** EPRT argument `|proto|addr|port|` (RFC 2428 Section 2). */
export function parseEprt(arg: string): { ip: string; port: number } | undefined {
  const d = arg.trim()[0];
  if (d === undefined || d.charCodeAt(0) < 33 || d.charCodeAt(0) > 126) return undefined;
  const parts = arg.trim().split(d);
  if (parts.length !== 5 || parts[0] !== '' || parts[4] !== '') return undefined;
  const [, proto, addr, port] = parts;
  const p = Number(port);
  if (!/^\d{1,5}$/.test(port) || p <= 0 || p > 65535) return undefined;
  if (proto === '1' && /^\d{1,3}(\.\d{1,3}){3}$/.test(addr)) return { ip: addr, port: p };
  if (proto === '2' && /^[0-9A-Fa-f:.]+$/.test(addr)) return { ip: addr, port: p };
  return undefined;
}

export class FtpSession implements AppStream {
  private readonly opts: FtpOptions;
  private events: EventSink;
  private decrypted: boolean;
  private cmode = CMode.Cmd;
  private cReader: LineReader;
  private sReader: LineReader;
  private held: { data: Buffer; ts: Timestamp }[] = [];
  private heldBytes = 0;
  private pending: Cmd[] = [];
  private greeted = false;
  /** Multi-line reply under construction. */
  private multiCode: string | undefined;
  private multiLines: string[] = [];
  private multiCount = 0;
  private cmdCount = 0;
  private unknownRun = 0;
  private opaque = false;
  private closed = false;
  private switched = false;
  private switchPending = false;
  /** Session facts. */
  private user: string | undefined;
  private authTls: string | undefined;
  private prot: string | undefined;
  private restOffset: number | undefined;
  private currentSlot: Slot | undefined;
  private readonly slots = new Set<Slot>();
  /** Transfer commands whose event waits for their data connection. */
  private waiting: Cmd[] = [];
  private lastTs: Timestamp = { sec: 0, nsec: 0 };

  constructor(
    /** The control connection (undefined when only the decrypted stream is known). */
    private readonly flow: FlowInfo | undefined,
    events: EventSink,
    private readonly anomalies: AnomalySink,
    private readonly registry: DataChannelRegistry | undefined,
    private readonly hooks: TlsUpgradeHooks | undefined,
    opts?: Partial<FtpOptions>,
    /** True for implicit FTPS (990): the stream is decrypted from the first byte. */
    decrypted = false,
  ) {
    this.opts = resolve(opts);
    this.events = events;
    this.decrypted = decrypted;
    if (decrypted) this.authTls = 'implicit';
    this.cReader = new LineReader(this.opts.maxLineBytes);
    this.sReader = new LineReader(this.opts.maxLineBytes);
  }

  /** Continues this session on the decrypted stream after AUTH TLS/SSL was accepted. */
  decryptedStream(events: EventSink): AppStream {
    this.events = events;
    this.decrypted = true;
    this.cmode = CMode.Cmd;
    this.held = [];
    this.heldBytes = 0;
    this.cReader.reset();
    this.sReader.reset();
    this.multiCode = undefined;
    this.multiLines = [];
    this.switched = false;
    return this;
  }

  onData(dir: Dir, data: Buffer, ts: Timestamp): void {
    if (this.opaque || this.switched || this.closed || data.length === 0) return;
    this.lastTs = ts;
    if (dir === Dir.ToServer) this.clientData(data, ts);
    else this.serverData(data, ts);
    this.checkWaiting(ts);
  }

  onGap(dir: Dir, _length: number, ts: Timestamp): void {
    if (this.opaque || this.switched || this.closed) return;
    this.anomalies.anomaly('ftp_gap');
    if (dir === Dir.ToServer) {
      if (this.cmode === CMode.Hold) {
        this.held = [];
        this.heldBytes = 0;
        this.cmode = CMode.Cmd;
      }
      this.cReader.reset();
    } else {
      this.sReader.reset();
      this.multiCode = undefined;
      this.multiLines = [];
    }
    this.checkWaiting(ts);
  }

  onEnd(_dir: Dir, _reason: EndReason, _ts: Timestamp): void {
    /* settled at onClose */
  }

  onClose(ts: Timestamp): void {
    if (this.closed) return;
    this.closed = true;
    // commands without a final reply, then transfers still waiting for data: emit what is known
    for (const c of this.pending) {
      if (c.emitted) continue;
      this.anomalies.anomaly('ftp_reply_missing');
      this.emitCmd(c, ts);
    }
    this.pending = [];
    for (const c of this.waiting.splice(0)) this.emitCmd(c, ts);
    // data connections announced and opened but never used by a transfer command
    for (const s of this.slots) {
      if (s.channel && !s.cmd) this.emitUnusedChannel(s.channel, ts);
      this.registry?.cancel(s.expectation);
    }
    this.slots.clear();
  }

  // ------------------------------------------------------------------ client

  private clientData(data: Buffer, ts: Timestamp): void {
    if (this.cmode === CMode.Hold) return this.hold(data, ts);
    if (this.cmode === CMode.Done) return;
    const used = this.cReader.push(data, (line, _f, truncated) => this.clientLine(line, truncated, ts));
    if (used < data.length && (this.cmode as CMode) === CMode.Hold) this.hold(data.subarray(used), ts);
  }

  private hold(data: Buffer, ts: Timestamp): void {
    this.heldBytes += data.length;
    this.held.push({ data: Buffer.from(data), ts });
    if (this.heldBytes > this.opts.maxHoldBytes) {
      this.anomalies.anomaly('ftp_reply_missing');
      const held = this.held;
      this.held = [];
      this.heldBytes = 0;
      if (held[0].data[0] === 0x16) {
        // the client went on with a TLS handshake: the server must have accepted AUTH
        this.doStartTls(held.map((h) => ({ dir: Dir.ToServer, data: h.data, ts: h.ts })), ts);
        return;
      }
      this.cmode = CMode.Cmd;
      for (const h of held) this.clientData(h.data, h.ts);
    }
  }

  private release(): void {
    this.cmode = CMode.Cmd;
    const held = this.held;
    this.held = [];
    this.heldBytes = 0;
    for (const h of held) {
      if (this.switched || this.opaque) return;
      this.clientData(h.data, h.ts);
    }
  }

  private clientLine(line: Buffer, truncated: boolean, ts: Timestamp): boolean {
    if (truncated) this.anomalies.anomaly('ftp_line_too_long');
    // Telnet IAC sequences (IP, DM before ABOR, RFC 959 Section 4.1.3) are dropped
    let text = lineText(line.includes(0xff) ? Buffer.from(line.filter((b, i, a) => b !== 0xff && (i === 0 || a[i - 1] !== 0xff))) : line);
    text = text.replace(/^\s+/, '');
    if (!text.length) return true;
    const sp = text.indexOf(' ');
    const verb = (sp < 0 ? text : text.slice(0, sp)).toUpperCase();
    let arg = sp < 0 ? '' : text.slice(sp + 1);
    if (!KNOWN_COMMANDS.has(verb)) {
      this.anomalies.anomaly('ftp_unknown_command');
      if (++this.unknownRun >= this.opts.maxUnknownCommands) {
        this.anomalies.anomaly('ftp_not_ftp');
        this.opaque = true;
        return false;
      }
    } else this.unknownRun = 0;
    if (verb === 'PASS' || verb === 'ACCT') arg = arg.length ? REDACTED : '';
    else arg = textOf(Buffer.from(arg, 'latin1')).slice(0, 1024);
    const c: Cmd = { index: ++this.cmdCount, verb: verb.slice(0, 16), arg, ts, preliminary: [], emitted: false, decrypted: this.decrypted };
    if (this.pending.length >= this.opts.maxPendingCommands) {
      this.anomalies.anomaly('ftp_pending_limit');
      const old = this.pending.shift()!;
      this.emitCmd(old, ts);
    }
    this.pending.push(c);
    switch (verb) {
      case 'USER':
        this.user = arg.slice(0, 256);
        break;
      case 'REST':
        if (/^\d{1,15}$/.test(arg.trim())) this.restOffset = Number(arg.trim());
        break;
      case 'AUTH':
        // the reply decides whether the next client byte is TLS: hold until it comes
        this.cmode = CMode.Hold;
        return false;
      default:
        if (TRANSFER.has(verb)) {
          c.restOffset = this.restOffset;
          this.restOffset = undefined;
          const s = this.currentSlot;
          if (s && !s.cmd) {
            s.cmd = c;
            c.slot = s;
            this.currentSlot = undefined;
          }
        }
        break;
    }
    return true;
  }

  // ------------------------------------------------------------------ server

  private serverData(data: Buffer, ts: Timestamp): void {
    const used = this.sReader.push(data, (line, _f, truncated) => this.serverLine(line, truncated, ts));
    if (this.switchPending) {
      this.switchPending = false;
      const rest: { dir: Dir; data: Buffer; ts: Timestamp }[] = [];
      if (used < data.length) rest.push({ dir: Dir.ToClient, data: Buffer.from(data.subarray(used)), ts });
      for (const h of this.held) rest.push({ dir: Dir.ToServer, data: h.data, ts: h.ts });
      this.held = [];
      this.heldBytes = 0;
      this.doStartTls(rest, ts);
    }
  }

  private serverLine(line: Buffer, truncated: boolean, ts: Timestamp): boolean {
    if (truncated) this.anomalies.anomaly('ftp_line_too_long');
    const text = textOf(line);
    if (this.multiCode !== undefined) {
      // RFC 959 4.2: the reply ends with a line starting with the same code and a space
      if (text.startsWith(this.multiCode) && (text.length === 3 || text[3] === ' ')) {
        this.multiLines.push(text.slice(4));
        const code = Number(this.multiCode);
        const lines = this.multiLines;
        this.multiCode = undefined;
        this.multiLines = [];
        return this.reply(code, lines, ts);
      }
      if (++this.multiCount <= this.opts.maxReplyLines) {
        this.multiLines.push(text.startsWith(this.multiCode + '-') ? text.slice(4) : text);
      }
      return true;
    }
    const m = /^([1-5]\d\d)([ -]?)(.*)$/.exec(text);
    if (!m) {
      this.anomalies.anomaly('ftp_reply_malformed');
      if (!this.greeted && ++this.unknownRun >= this.opts.maxUnknownCommands) {
        this.anomalies.anomaly('ftp_not_ftp');
        this.opaque = true;
        return false;
      }
      this.garbledReply(ts);
      return true;
    }
    if (m[2] === '-') {
      this.multiCode = m[1];
      this.multiLines = [m[3]];
      this.multiCount = 1;
      return true;
    }
    return this.reply(Number(m[1]), [m[3]], ts);
  }

  /**
   * An unreadable line where a reply is due. Replies come in command order, so skipping the line
   * would hand every later reply to the command before its own. The line is taken as the reply of
   * the oldest command still waiting for its first reply: a transfer command's first reply is its
   * preliminary 1xx (the final one still follows), any other command is answered with an unknown
   * code. AUTH is left waiting (its reply decides whether the client switches to TLS).
   */
  private garbledReply(ts: Timestamp): void {
    const c = this.pending[0];
    if (!this.greeted || !c || c.garbled || c.preliminary.length || c.verb === 'AUTH') return;
    c.garbled = true;
    if (TRANSFER.has(c.verb)) return;
    this.pending.shift();
    c.replyTs = ts;
    for (const w of this.waiting.splice(0)) this.emitCmd(w, ts);
    this.emitCmd(c, ts);
  }

  private reply(code: number, lines: string[], ts: Timestamp): boolean {
    const message = lines.join('\n').slice(0, this.opts.maxMessageBytes);
    if (!this.greeted && this.pending.length === 0) {
      if (code !== 120) this.greeted = true; // 120 "ready in n minutes" precedes the 220
      this.emitGreeting(code, message, ts);
      return true;
    }
    this.greeted = true;
    const c = this.pending[0];
    if (!c) {
      if (code !== 421) this.anomalies.anomaly('ftp_unsolicited_reply');
      return true;
    }
    if (code < 200) {
      c.preliminary.push(code);
      if (!c.message) c.message = message;
      return true;
    }
    this.pending.shift();
    c.code = code;
    c.message = message;
    c.replyTs = ts;
    let switching = false;
    switch (c.verb) {
      case 'AUTH':
        if (code === 234 || code === 334) {
          this.authTls = c.arg.trim().toUpperCase() || 'TLS';
          this.switchPending = true;
          switching = true;
        } else this.release();
        break;
      case 'PROT':
        if (code === 200) this.prot = c.arg.trim().toUpperCase().slice(0, 1);
        break;
      case 'PASV':
        if (code === 227) {
          const p = parsePasv(message);
          if (p) {
            // behind NAT the address in the reply is the private one: expect both
            this.expectData(p.ip, p.port, ts);
            if (this.flow && p.ip !== this.flow.serverIp) this.expectData(this.flow.serverIp, p.port, ts, this.currentSlot);
          } else this.anomalies.anomaly('ftp_pasv_malformed');
        }
        break;
      case 'EPSV':
        if (code === 229) {
          const port = parseEpsv(message);
          if (port !== undefined && this.flow) this.expectData(this.flow.serverIp, port, ts);
          else this.anomalies.anomaly('ftp_epsv_malformed');
        }
        break;
      case 'PORT':
        if (code === 200) {
          const p = parsePasv(c.arg);
          if (p) {
            this.expectData(p.ip, p.port, ts);
            if (this.flow && p.ip !== this.flow.clientIp) this.expectData(this.flow.clientIp, p.port, ts, this.currentSlot);
          } else this.anomalies.anomaly('ftp_port_malformed');
        }
        break;
      case 'EPRT':
        if (code === 200) {
          const p = parseEprt(c.arg);
          if (p) {
            this.expectData(p.ip, p.port, ts);
            if (this.flow && p.ip !== this.flow.clientIp) this.expectData(this.flow.clientIp, p.port, ts, this.currentSlot);
          } else this.anomalies.anomaly('ftp_eprt_malformed');
        }
        break;
      case 'REIN':
        if (code >= 200 && code < 300) {
          this.user = undefined;
          this.prot = undefined;
        }
        break;
      default:
        break;
    }
    // a later final reply bounds the wait of earlier transfers
    for (const w of this.waiting.splice(0)) this.emitCmd(w, ts);
    // wait (bounded) only for a data connection that is open; one that never showed up by the
    // final reply is reported as not seen right away
    const ch = c.slot?.channel;
    if (ch && !ch.complete && code < 400) {
      this.waiting.push(c);
      ch.whenDone(() => this.settle(c));
    } else this.emitCmd(c, ts);
    return !switching;
  }

  /** Registers an expected data connection; a second call for the same slot adds an alias. */
  private expectData(ip: string, port: number, ts: Timestamp, alias?: Slot): void {
    if (!this.registry) return;
    const slot: Slot = alias ?? ({} as Slot);
    const e: Expectation = {
      ip,
      port,
      ts,
      protectedExpected: this.prot === 'P',
      control: this.flow ? { ip: this.flow.serverIp, port: this.flow.serverPort } : undefined,
      attach: (flow) => this.attachChannel(slot, flow),
    };
    if (!alias) {
      slot.expectation = e;
      // an announced but unused data connection is superseded by a new announcement
      if (this.currentSlot && !this.currentSlot.cmd && !this.currentSlot.channel) {
        this.registry.cancel(this.currentSlot.expectation);
        this.slots.delete(this.currentSlot);
      }
      this.currentSlot = slot;
      this.slots.add(slot);
    } else {
      const first = slot.expectation;
      // claiming one alias cancels the other
      const orig = first.attach;
      first.attach = (flow, t) => {
        this.registry?.cancel(e);
        return orig(flow, t);
      };
      e.attach = (flow) => {
        this.registry?.cancel(first);
        return this.attachChannel(slot, flow);
      };
    }
    this.registry.expect(e);
  }

  private attachChannel(slot: Slot, flow: FlowInfo): DataChannel {
    const ch = new DataChannel(flow);
    slot.channel = ch;
    if (slot.cmd) {
      const c = slot.cmd;
      ch.whenDone(() => this.settle(c));
    }
    return ch;
  }

  /** A transfer's data connection completed: emit its event if the final reply is in. */
  private settle(c: Cmd): void {
    if (c.emitted || c.code === undefined) return;
    const i = this.waiting.indexOf(c);
    if (i >= 0) this.waiting.splice(i, 1);
    this.emitCmd(c, c.replyTs ?? this.lastTs);
  }

  private checkWaiting(ts: Timestamp): void {
    if (!this.waiting.length) return;
    const now = tsSeconds(ts);
    for (const w of [...this.waiting]) {
      if (now - tsSeconds(w.replyTs ?? w.ts) > this.opts.maxDataWaitSeconds) {
        this.anomalies.anomaly('ftp_data_wait_timeout');
        this.waiting.splice(this.waiting.indexOf(w), 1);
        this.emitCmd(w, ts);
      }
    }
  }

  private doStartTls(rest: { dir: Dir; data: Buffer; ts: Timestamp }[], ts: Timestamp): void {
    this.switched = true;
    this.cmode = CMode.Done;
    if (!this.hooks) {
      this.anomalies.anomaly('ftp_auth_tls_unsupported');
      return;
    }
    this.hooks.startTls(rest, ts);
  }

  // ------------------------------------------------------------------ events

  private common(): Record<string, unknown> {
    const ftp: Record<string, unknown> = {};
    if (this.user !== undefined) ftp.user = this.user;
    if (this.authTls !== undefined) ftp.tls = this.authTls === 'implicit' ? 'implicit' : 'explicit';
    if (this.prot !== undefined) ftp.data_protection = this.prot;
    return ftp;
  }

  private emitGreeting(code: number, message: string, ts: Timestamp): void {
    const ftp = this.common();
    ftp.response = { code, message };
    ftp.greeting = true;
    this.events.emit('ftp', { ftp }, ts, this.decrypted);
  }

  private emitCmd(c: Cmd, _ts: Timestamp): void {
    if (c.emitted) return;
    c.emitted = true;
    const ftp = this.common();
    ftp.request = c.arg.length ? { command: c.verb, arg: c.arg } : { command: c.verb };
    ftp.command_index = c.index;
    if (c.code !== undefined) ftp.response = { code: c.code, message: c.message ?? '' };
    else if (c.garbled) ftp.response = { malformed: true };
    if (c.preliminary.length) ftp.response_preliminary = c.preliminary;
    const fields: EcsFields = { ftp };
    let decrypted = c.decrypted || this.decrypted;
    if (TRANSFER.has(c.verb)) {
      const ch = c.slot?.channel;
      if (!c.slot) ftp.data = { seen: false, reason: 'no_data_connection_announced' };
      else if (!ch) ftp.data = { seen: false, reason: 'data_connection_not_seen' };
      else {
        const r = ch.result();
        Object.assign(ftp, { data: dataFields(r, this.flow?.serverIp) });
        const readable = !r.tls || r.decrypted;
        if (r.decrypted) decrypted = true;
        // the sender's side of the data connection did not end with a FIN: reset (and the server
        // does not confirm the transfer with 2xx) or never seen to end: the bytes are a prefix
        const truncated =
          r.complete && r.endReason !== 'fin' && !(r.endReason === 'rst' && c.code !== undefined && c.code >= 200 && c.code < 300);
        if (truncated) {
          (ftp.data as Record<string, unknown>).truncated = true;
          this.anomalies.anomaly('ftp_data_truncated');
        }
        if (NAMED_TRANSFER.has(c.verb) && c.arg) {
          const file: Record<string, unknown> = { name: c.arg.replace(/^.*\//, '') || c.arg, path: c.arg };
          if (readable && r.magic) file.magic = r.magic;
          if (readable && r.complete && !truncated && !r.gap && c.restOffset === undefined) {
            file.size = r.bytes;
            if (r.sha256) file.hash = { sha256: r.sha256 };
          }
          fields.file = file;
        }
        if (c.restOffset !== undefined) (ftp.data as Record<string, unknown>).offset = c.restOffset;
      }
    }
    this.events.emit('ftp', fields, c.ts, decrypted);
  }

  /** A data connection that fulfilled an announcement but no transfer command used it. */
  private emitUnusedChannel(ch: DataChannel, ts: Timestamp): void {
    const ftp = this.common();
    ftp.data = { ...dataFields(ch.result(), this.flow?.serverIp), orphan: true, reason: 'no_transfer_command' };
    this.events.emit('ftp', { ftp }, ts, this.decrypted || ch.decrypting);
  }
}

/**
 * ftp.data.* of a data connection's result. `ftpServerIp` (the control connection's server) turns
 * the TCP direction into the FTP one: in active mode the FTP server is the TCP client.
 */
export function dataFields(r: DataChannelResult, ftpServerIp?: string): Record<string, unknown> {
  const readable = !r.tls || r.decrypted;
  const d: Record<string, unknown> = {
    seen: true,
    tls: r.tls,
    decrypted: r.decrypted,
    complete: r.complete,
    direction: r.dir === Dir.ToClient ? 'tcp_server_to_client' : 'tcp_client_to_server',
    connection: { source: { ip: r.clientIp, port: r.clientPort }, destination: { ip: r.serverIp, port: r.serverPort } },
  };
  if (readable) d.bytes = r.bytes;
  if (readable && r.sha256 && !r.gap) d.sha256 = r.sha256;
  if (r.gap) d.gap = true;
  if (ftpServerIp !== undefined) {
    const sender = r.dir === Dir.ToClient ? r.serverIp : r.clientIp;
    d.transfer = canonicalIp(sender) === canonicalIp(ftpServerIp) ? 'download' : 'upload';
  }
  return d;
}
