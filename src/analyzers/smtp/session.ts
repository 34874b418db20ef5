/**
 * SMTP analyzer (RFC 5321) for one TCP connection, clear text and/or decrypted:
 *
 * - commands and replies paired FIFO, which also covers PIPELINING (RFC 2920): replies come in
 *   command order; multi-line replies `250-...` / `250 ...` (RFC 5321 Section 4.2.1);
 * - mail transactions: MAIL, RCPT..., then DATA (354, dot-stuffed content ended by `.`, RFC 5321
 *   Section 4.5.2) or BDAT chunks (CHUNKING, RFC 3030); RSET and a new MAIL discard an open
 *   transaction; one `smtp` event per transaction whose content was sent, at its final reply;
 * - AUTH (RFC 4954) with PLAIN, LOGIN, CRAM-MD5, XOAUTH2/OAUTHBEARER: the user name only;
 * - STARTTLS (RFC 3207): on the 220 reply the analyzer hands the bytes after the switch point of
 *   each direction to `hooks.startTls` and stops; the dispatcher continues the session on the
 *   decrypted stream through `decryptedStream(events)` (state reset as RFC 3207 Section 4.2
 *   demands, events from then on tagged decrypted). A refused STARTTLS (454, 5xx) stays clear.
 *
 * The client direction is held (bounded) after commands whose reply decides how the following
 * client bytes are read (DATA, STARTTLS, AUTH and SASL continuations), so out-of-order delivery
 * between the two directions cannot misparse the content. Message content is parsed for headers
 * and MIME part headers only (mime.ts); bodies are counted.
 */
import type { AnomalySink, EndReason, EventSink, EcsFields, Timestamp } from '../../types.js';
import { Dir } from '../../types.js';
import type { AppStream } from '../../types.js';
import { LineReader, lineText } from '../lines.js';
import { DEFAULT_MIME_LIMITS, MessageParser, type MessageSummary, type MimeLimits } from './mime.js';
import { cramUser, decodeBase64Strict, cleanIdentity, oauthUser, plainUser } from './sasl.js';

export interface SmtpOptions {
  /** Longest command/reply line kept (RFC 5321 Section 4.5.3.1.4 says 512; real clients exceed it). */
  maxLineBytes: number;
  /** Longest message content line kept for header parsing (longer lines are counted, truncated). */
  maxDataLineBytes: number;
  /** Client bytes held while waiting for the reply that decides how to read them. */
  maxHoldBytes: number;
  /** Commands awaiting replies (pipelining depth). */
  maxPendingCommands: number;
  /** Consecutive unrecognised commands before the stream is declared not SMTP. */
  maxUnknownCommands: number;
  mime: MimeLimits;
}

export const DEFAULT_SMTP_OPTIONS: SmtpOptions = {
  maxLineBytes: 4096,
  maxDataLineBytes: 8192,
  maxHoldBytes: 64 * 1024,
  maxPendingCommands: 1000,
  maxUnknownCommands: 8,
  mime: DEFAULT_MIME_LIMITS,
};

/** Where an analyzer that can switch to TLS reports the switch (see pipeline/dispatch.ts). */
export interface TlsUpgradeHooks {
  /**
   * The server accepted the upgrade. `rest` holds the bytes of each direction received from the
   * switch point on (TLS records), in arrival order. After this call the analyzer expects no more
   * clear-text bytes: the caller routes the rest of the flow to a TLS handler.
   */
  startTls(rest: { dir: Dir; data: Buffer; ts: Timestamp }[], ts: Timestamp): void;
}

/** SMTP verbs known to RFC 5321 and extensions; anything else counts towards "not SMTP". */
const KNOWN_COMMANDS = new Set([
  'HELO', 'EHLO', 'LHLO', 'MAIL', 'RCPT', 'DATA', 'BDAT', 'RSET', 'NOOP', 'QUIT', 'VRFY', 'EXPN', 'HELP',
  'STARTTLS', 'AUTH', 'TURN', 'ETRN', 'ATRN', 'XCLIENT', 'XFORWARD', 'SEND', 'SOML', 'SAML', 'VERB', 'ONEX', 'XEXCH50', 'X-EXPS',
]);

const enum CMode {
  Cmd,
  /** Waiting for the reply to `holdFor`; bytes kept in `held`. */
  Hold,
  Data,
  Bdat,
  /** Next client line is a SASL response (after 334). */
  AuthCont,
  Done,
}

interface Tx {
  index: number;
  ts: Timestamp;
  from: string;
  mailParams: string;
  rcpts: { addr: string; code?: number }[];
  mailCode?: number;
  parser?: MessageParser;
  summary?: MessageSummary;
  bdat: boolean;
  gap: boolean;
  emitted: boolean;
}

interface Pending {
  verb: string;
  arg: string;
  ts: Timestamp;
  tx?: Tx;
  /** BDAT ... LAST or the end-of-data dot: the reply completes the transaction. */
  final?: boolean;
  rcptIndex?: number;
}

function resolve(o?: Partial<SmtpOptions>): SmtpOptions {
  return { ...DEFAULT_SMTP_OPTIONS, ...(o ?? {}), mime: { ...DEFAULT_MIME_LIMITS, ...(o?.mime ?? {}) } };
}

function angleAddr(arg: string): { addr: string; params: string } {
  const m = /^\s*<([^>]*)>\s*(.*)$/.exec(arg);
  if (m) return { addr: m[1].trim(), params: m[2].trim() };
  const sp = arg.trim().split(/\s+/);
  return { addr: (sp[0] ?? '').replace(/^<|>$/g, ''), params: sp.slice(1).join(' ') };
}

export class SmtpSession implements AppStream {
  private readonly opts: SmtpOptions;
  private events: EventSink;
  private decrypted: boolean;
  private cmode = CMode.Cmd;
  private cReader: LineReader;
  private dReader: LineReader;
  private sReader: LineReader;
  private held: { data: Buffer; ts: Timestamp }[] = [];
  private heldBytes = 0;
  private holdFor: Pending | undefined;
  private pending: Pending[] = [];
  private greeted = false;
  private replyLines: string[] = [];
  private tx: Tx | undefined;
  private dataTx: Tx | undefined;
  private bdatRemaining = 0;
  private bdatLast = false;
  private txCount = 0;
  private unknownRun = 0;
  private opaque = false;
  private closed = false;
  private switched = false;
  /** Session facts copied onto every transaction event. */
  private helo: string | undefined;
  private authUser: string | undefined;
  private authMech: string | undefined;
  private authSuccess: boolean | undefined;
  private authStep = 0;
  private starttls = false;
  private readonly implicitTls: boolean;
  private starttlsRefusedCode: number | undefined;
  private extensions = new Set<string>();
  private greeting: string | undefined;
  private lastClientTs: Timestamp = { sec: 0, nsec: 0 };

  constructor(
    events: EventSink,
    private readonly anomalies: AnomalySink,
    private readonly hooks: TlsUpgradeHooks | undefined,
    opts?: Partial<SmtpOptions>,
    /** True when the stream is already decrypted (SMTPS on 465: implicit TLS). */
    decrypted = false,
  ) {
    this.opts = resolve(opts);
    this.events = events;
    this.decrypted = decrypted;
    this.implicitTls = decrypted;
    this.cReader = new LineReader(this.opts.maxLineBytes);
    this.dReader = new LineReader(this.opts.maxDataLineBytes);
    this.sReader = new LineReader(this.opts.maxLineBytes);
  }

  /**
   * Continues this session on the decrypted stream after STARTTLS (called from the TLS handler's
   * app factory with the TLS flow's event sink). Per RFC 3207 Section 4.2 the SMTP state is
   * discarded: the client starts again with EHLO; no greeting follows.
   */
  decryptedStream(events: EventSink): AppStream {
    this.events = events;
    this.decrypted = true;
    this.starttls = true;
    this.cmode = CMode.Cmd;
    this.pending = [];
    this.held = [];
    this.heldBytes = 0;
    this.holdFor = undefined;
    this.replyLines = [];
    this.cReader.reset();
    this.dReader.reset();
    this.sReader.reset();
    this.tx = undefined;
    this.dataTx = undefined;
    this.greeted = true;
    this.switched = false;
    this.extensions.clear();
    return this;
  }

  onData(dir: Dir, data: Buffer, ts: Timestamp): void {
    if (this.opaque || this.switched || this.closed || data.length === 0) return;
    if (dir === Dir.ToServer) {
      this.lastClientTs = ts;
      this.clientData(data, ts);
    } else this.serverData(data, ts);
  }

  onGap(dir: Dir, length: number, ts: Timestamp): void {
    if (this.opaque || this.switched || this.closed) return;
    this.anomalies.anomaly('smtp_gap');
    if (dir === Dir.ToServer) {
      if (this.cmode === CMode.Data && this.dataTx) {
        this.dataTx.gap = true;
        this.dReader.reset();
      } else if (this.cmode === CMode.Bdat && this.dataTx) {
        this.dataTx.gap = true;
        const skip = Math.min(length, this.bdatRemaining);
        this.bdatRemaining -= skip;
        if (this.bdatRemaining === 0) this.endBdatChunk();
      } else if (this.cmode === CMode.Hold) {
        this.heldBytes = this.opts.maxHoldBytes + 1; // cannot replay a stream with a hole: give up holding
        this.held = [];
        this.cmode = CMode.Cmd;
        this.holdFor = undefined;
      } else this.cReader.reset();
    } else {
      this.sReader.reset();
      this.replyLines = [];
    }
    void ts;
  }

  onEnd(_dir: Dir, _reason: EndReason, _ts: Timestamp): void {
    /* replies may still come from the other side; everything is settled at onClose */
  }

  onClose(ts: Timestamp): void {
    if (this.closed) return;
    this.closed = true;
    // transactions whose content was sent but whose final reply never came
    const open = new Set<Tx>();
    for (const p of this.pending) if (p.tx && p.final) open.add(p.tx);
    if (this.dataTx && !this.dataTx.emitted) {
      this.anomalies.anomaly('smtp_data_truncated');
      this.dataTx.summary ??= this.dataTx.parser?.finish();
      open.add(this.dataTx);
    }
    for (const t of open) {
      if (t.emitted) continue;
      this.anomalies.anomaly('smtp_reply_missing');
      this.emitTx(t, undefined, undefined, ts);
    }
    this.pending = [];
  }

  // ------------------------------------------------------------------ client

  private clientData(data: Buffer, ts: Timestamp): void {
    let off = 0;
    while (off < data.length && !this.opaque && !this.switched) {
      const rest = off === 0 ? data : data.subarray(off);
      switch (this.cmode) {
        case CMode.Hold:
          this.hold(rest, ts);
          return;
        case CMode.Cmd:
        case CMode.AuthCont:
          off += this.cReader.push(rest, (line, full, trunc) => this.clientLine(line, full, trunc, ts));
          break;
        case CMode.Data:
          off += this.dReader.push(rest, (line, full) => this.dataLine(line, full, ts));
          break;
        case CMode.Bdat: {
          const n = Math.min(this.bdatRemaining, rest.length);
          const chunk = rest.subarray(0, n);
          const p = this.dataTx?.parser;
          if (p) this.dReader.push(chunk, (line, full) => void p.line(line, full));
          this.bdatRemaining -= n;
          off += n;
          if (this.bdatRemaining === 0) this.endBdatChunk();
          break;
        }
        case CMode.Done:
          return;
      }
    }
  }

  private hold(data: Buffer, ts: Timestamp): void {
    this.heldBytes += data.length;
    if (this.heldBytes > this.opts.maxHoldBytes) {
      // the deciding reply never came (lost, or a server that does not answer): decide alone
      this.anomalies.anomaly('smtp_reply_missing');
      const p = this.holdFor;
      this.held.push({ data: Buffer.from(data), ts });
      const held = this.held;
      this.held = [];
      this.heldBytes = 0;
      this.holdFor = undefined;
      if (p?.verb === 'STARTTLS' && held.length && held[0].data[0] === 0x16) {
        this.doStartTls(held.map((h) => ({ dir: Dir.ToServer, data: h.data, ts: h.ts })), ts);
        return;
      }
      this.cmode = p?.verb === 'DATA' ? CMode.Data : CMode.Cmd;
      if (this.cmode === CMode.Data && p?.tx) this.beginData(p.tx);
      for (const h of held) this.clientData(h.data, h.ts);
      return;
    }
    this.held.push({ data: Buffer.from(data), ts });
  }

  private release(mode: CMode): void {
    this.cmode = mode;
    this.holdFor = undefined;
    const held = this.held;
    this.held = [];
    this.heldBytes = 0;
    for (const h of held) {
      if (this.switched || this.opaque) return;
      this.clientData(h.data, h.ts);
    }
  }

  private startHold(p: Pending): void {
    this.cmode = CMode.Hold;
    this.holdFor = p;
    this.held = [];
    this.heldBytes = 0;
  }

  private queue(p: Pending): void {
    if (this.pending.length >= this.opts.maxPendingCommands) {
      this.anomalies.anomaly('smtp_pending_limit');
      this.pending.shift();
    }
    this.pending.push(p);
  }

  /** Returns false when the line changed how the following bytes are read. */
  private clientLine(line: Buffer, _full: number, truncated: boolean, ts: Timestamp): boolean {
    if (truncated) this.anomalies.anomaly('smtp_line_too_long');
    if (this.cmode === CMode.AuthCont) {
      const p: Pending = { verb: 'AUTH_DATA', arg: '', ts };
      this.saslResponse(lineText(line).trim());
      this.queue(p);
      this.startHold(p);
      return false;
    }
    const text = lineText(line);
    const sp = text.indexOf(' ');
    const verb = (sp < 0 ? text : text.slice(0, sp)).toUpperCase();
    const arg = sp < 0 ? '' : text.slice(sp + 1);
    if (!KNOWN_COMMANDS.has(verb)) {
      if (text.length === 0) return true;
      this.anomalies.anomaly('smtp_unknown_command');
      if (++this.unknownRun >= this.opts.maxUnknownCommands) {
        this.anomalies.anomaly('smtp_not_smtp');
        this.opaque = true;
        return false;
      }
      this.queue({ verb, arg, ts });
      return true;
    }
    this.unknownRun = 0;
    const p: Pending = { verb, arg, ts };
    switch (verb) {
      case 'HELO':
      case 'EHLO':
      case 'LHLO':
        this.helo = arg.trim().slice(0, 256) || this.helo;
        break;
      case 'MAIL': {
        // a new MAIL while an accepted transaction is open (no RSET): the old one is abandoned
        if (this.tx && !this.tx.emitted && !this.tx.parser && this.tx.mailCode !== undefined && this.tx.mailCode < 300) {
          this.anomalies.anomaly('smtp_transaction_aborted');
        }
        const m = /^FROM:\s*(.*)$/i.exec(arg);
        if (!m) this.anomalies.anomaly('smtp_mail_malformed');
        const a = angleAddr(m ? m[1] : arg);
        this.tx = { index: ++this.txCount, ts, from: a.addr, mailParams: a.params, rcpts: [], bdat: false, gap: false, emitted: false };
        p.tx = this.tx;
        break;
      }
      case 'RCPT': {
        const m = /^TO:\s*(.*)$/i.exec(arg);
        if (!m) this.anomalies.anomaly('smtp_rcpt_malformed');
        if (!this.tx) {
          this.anomalies.anomaly('smtp_rcpt_without_mail');
          break;
        }
        p.tx = this.tx;
        p.rcptIndex = this.tx.rcpts.length;
        this.tx.rcpts.push({ addr: angleAddr(m ? m[1] : arg).addr });
        break;
      }
      case 'DATA':
        p.tx = this.tx;
        this.queue(p);
        this.startHold(p);
        return false;
      case 'BDAT': {
        const m = /^(\d{1,15})(\s+LAST)?\s*$/i.exec(arg.trim());
        if (!m) {
          this.anomalies.anomaly('smtp_bdat_malformed');
          break; // cannot know how many bytes follow: read on as commands
        }
        if (!this.tx) {
          this.anomalies.anomaly('smtp_data_without_mail');
          this.tx = { index: ++this.txCount, ts, from: '', mailParams: '', rcpts: [], bdat: false, gap: false, emitted: false };
        }
        const tx = this.tx;
        tx.bdat = true;
        if (!tx.parser) tx.parser = new MessageParser(this.opts.mime);
        this.dataTx = tx;
        this.dReader.reset();
        p.tx = tx;
        p.final = m[2] !== undefined;
        this.queue(p);
        this.bdatRemaining = Number(m[1]);
        this.bdatLast = p.final;
        if (this.bdatRemaining === 0) this.endBdatChunk();
        else this.cmode = CMode.Bdat;
        return false;
      }
      case 'RSET':
        // RFC 5321 4.1.1.5: the open transaction is discarded (a completed one is already queued)
        this.tx = undefined;
        if (this.cmode === CMode.Cmd) this.dataTx = undefined;
        break;
      case 'STARTTLS':
        if (this.tx) this.anomalies.anomaly('smtp_starttls_in_transaction');
        this.queue(p);
        this.startHold(p);
        return false;
      case 'AUTH': {
        const parts = arg.trim().split(/\s+/);
        this.authMech = (parts[0] ?? '').toUpperCase().slice(0, 32);
        this.authUser = undefined;
        this.authSuccess = undefined;
        this.authStep = 0;
        if (parts[1] !== undefined) this.saslResponse(parts[1]);
        this.queue(p);
        this.startHold(p);
        return false;
      }
      default:
        break;
    }
    this.queue(p);
    return true;
  }

  /** One SASL client response (base64); extracts the user, never keeps a secret. */
  private saslResponse(b64: string): void {
    const step = this.authStep++;
    if (b64 === '*') return; // cancelled (RFC 4954 Section 4)
    const raw = decodeBase64Strict(b64);
    if (!raw) {
      this.anomalies.anomaly('smtp_auth_bad_base64');
      return;
    }
    switch (this.authMech) {
      case 'PLAIN':
        if (step === 0) this.authUser = plainUser(raw) ?? this.authUser;
        break;
      case 'LOGIN':
        if (step === 0) this.authUser = cleanIdentity(raw); // the second response is the password
        break;
      case 'CRAM-MD5':
        if (step === 0) this.authUser = cramUser(raw);
        break;
      case 'XOAUTH2':
      case 'OAUTHBEARER':
        if (step === 0) this.authUser = oauthUser(raw);
        break;
      default:
        break;
    }
    raw.fill(0);
  }

  private beginData(tx: Tx | undefined): void {
    let t = tx;
    if (!t) {
      this.anomalies.anomaly('smtp_data_without_mail');
      t = { index: ++this.txCount, ts: this.lastClientTs, from: '', mailParams: '', rcpts: [], bdat: false, gap: false, emitted: false };
    }
    t.parser = new MessageParser(this.opts.mime);
    this.dataTx = t;
    this.dReader.reset();
  }

  private dataLine(line: Buffer, full: number, ts: Timestamp): boolean {
    const tx = this.dataTx;
    if (line.length === 1 && line[0] === 0x2e && full === 1) {
      // end of data (RFC 5321 Section 4.1.1.4)
      if (tx) {
        tx.summary = tx.parser?.finish();
        this.queue({ verb: '.', arg: '', ts, tx, final: true });
        if (this.tx === tx) this.tx = undefined;
      }
      this.dataTx = undefined;
      this.cmode = CMode.Cmd;
      return false;
    }
    // transparency: a leading dot was doubled by the client (RFC 5321 Section 4.5.2)
    if (line.length && line[0] === 0x2e) tx?.parser?.line(line.subarray(1), full - 1);
    else tx?.parser?.line(line, full);
    return true;
  }

  private endBdatChunk(): void {
    this.cmode = CMode.Cmd;
    const tx = this.dataTx;
    if (this.bdatLast && tx) {
      // a last line without CRLF still counts
      if (this.dReader.partial) this.dReader.push(Buffer.from('\r\n'), (l, f) => void tx.parser?.line(l, f));
      tx.summary = tx.parser?.finish();
      if (this.tx === tx) this.tx = undefined;
      this.dataTx = undefined;
    }
  }

  // ------------------------------------------------------------------ server

  private serverData(data: Buffer, ts: Timestamp): void {
    const used = this.sReader.push(data, (line, _full, truncated) => this.serverLine(line, truncated, ts));
    if (this.switchPending) {
      // 220 to STARTTLS: the server's next byte after that line and the client's next byte after
      // its STARTTLS line (held since) are the first TLS bytes (RFC 3207 Section 4).
      this.switchPending = false;
      const rest: { dir: Dir; data: Buffer; ts: Timestamp }[] = [];
      if (used < data.length) rest.push({ dir: Dir.ToClient, data: Buffer.from(data.subarray(used)), ts });
      for (const h of this.held) rest.push({ dir: Dir.ToServer, data: h.data, ts: h.ts });
      this.held = [];
      this.heldBytes = 0;
      this.holdFor = undefined;
      this.doStartTls(rest, ts);
    }
  }

  private serverLine(line: Buffer, truncated: boolean, ts: Timestamp): boolean {
    if (truncated) this.anomalies.anomaly('smtp_line_too_long');
    const text = lineText(line);
    const m = /^(\d{3})([ -]?)(.*)$/.exec(text);
    if (!m) {
      this.anomalies.anomaly('smtp_reply_malformed');
      if (!this.greeted && ++this.unknownRun >= this.opts.maxUnknownCommands) {
        this.anomalies.anomaly('smtp_not_smtp');
        this.opaque = true;
        return false;
      }
      this.garbledReply(ts);
      return true;
    }
    this.replyLines.push(m[3]);
    if (m[2] === '-') {
      if (this.replyLines.length > 1000) this.replyLines.shift();
      return true;
    }
    const code = Number(m[1]);
    const lines = this.replyLines;
    this.replyLines = [];
    return this.reply(code, lines, ts);
  }

  /**
   * An unreadable line where a reply is due (not inside a multi-line reply). Replies come in
   * command order (also when pipelined), so skipping the line would hand every later reply to the
   * command before its own (a DATA answered by the 250 of the end of data, the message then read
   * as commands). The line is taken as the reply, code unknown, of the oldest waiting command;
   * a command whose reply decides what the client stream is (DATA, STARTTLS, AUTH: held) is left
   * waiting.
   */
  private garbledReply(ts: Timestamp): void {
    const p = this.pending[0];
    if (!this.greeted || !p || this.replyLines.length || this.holdFor === p) return;
    this.pending.shift();
    if ((p.verb === '.' || (p.verb === 'BDAT' && p.final)) && p.tx) this.emitTx(p.tx, undefined, undefined, ts);
  }

  /** A complete reply. Returns false when the server stream switched to TLS. */
  private reply(code: number, lines: string[], ts: Timestamp): boolean {
    if (!this.greeted && this.pending.length === 0) {
      this.greeted = true;
      this.greeting = lines[0]?.slice(0, 256);
      return true;
    }
    this.greeted = true;
    const p = this.pending.shift();
    if (!p) {
      if (this.cmode === CMode.Data && this.dataTx?.gap) {
        // the end-of-data line was lost in a gap: this is its reply
        const tx = this.dataTx;
        tx.summary = tx.parser?.finish();
        this.dataTx = undefined;
        this.cmode = CMode.Cmd;
        this.emitTx(tx, code, lines[lines.length - 1], ts);
        return true;
      }
      if (code !== 421) this.anomalies.anomaly('smtp_unsolicited_reply');
      return true;
    }
    const positive = code >= 200 && code < 400;
    switch (p.verb) {
      case 'EHLO':
        if (code === 250) {
          this.extensions.clear();
          for (const l of lines.slice(1)) this.extensions.add(l.trim().split(/\s+/)[0]?.toUpperCase() ?? '');
        }
        break;
      case 'MAIL':
        if (p.tx) p.tx.mailCode = code;
        break;
      case 'RCPT':
        if (p.tx && p.rcptIndex !== undefined) p.tx.rcpts[p.rcptIndex].code = code;
        break;
      case 'DATA':
        if (code !== 354 && p.tx && !p.tx.emitted) {
          // the transaction failed at DATA (e.g. 554 no valid recipients): report the attempt
          this.emitTx(p.tx, code, lines[lines.length - 1], ts);
          if (this.tx === p.tx) this.tx = undefined;
        }
        if (this.holdFor === p) {
          if (code === 354) {
            this.beginData(p.tx);
            this.release(CMode.Data);
          } else this.release(CMode.Cmd);
        }
        break;
      case '.':
        if (p.tx) this.emitTx(p.tx, code, lines[lines.length - 1], ts);
        break;
      case 'BDAT':
        if (p.final && p.tx) this.emitTx(p.tx, code, lines[lines.length - 1], ts);
        break;
      case 'AUTH':
      case 'AUTH_DATA':
        if (code === 334) {
          if (this.holdFor === p) this.release(CMode.AuthCont);
        } else {
          this.authSuccess = code === 235 || (positive && code !== 334);
          if (this.holdFor === p) this.release(CMode.Cmd);
        }
        break;
      case 'STARTTLS':
        if (code === 220) {
          this.starttls = true;
          this.switchPending = true;
          return false; // the rest of this server chunk is TLS: serverData hands it over
        }
        this.starttlsRefusedCode = code;
        if (this.holdFor === p) this.release(CMode.Cmd);
        break;
      default:
        break;
    }
    return true;
  }

  private switchPending = false;

  private doStartTls(rest: { dir: Dir; data: Buffer; ts: Timestamp }[], ts: Timestamp): void {
    this.switched = true;
    this.cmode = CMode.Done;
    if (this.tx && !this.tx.emitted) this.tx = undefined;
    if (!this.hooks) {
      this.anomalies.anomaly('smtp_starttls_unsupported');
      return;
    }
    this.hooks.startTls(rest, ts);
  }

  // ------------------------------------------------------------------ events

  private emitTx(tx: Tx, code: number | undefined, message: string | undefined, ts: Timestamp): void {
    if (tx.emitted) return;
    tx.emitted = true;
    const s = tx.summary ?? tx.parser?.finish();
    if (s) for (const a of s.anomalies) this.anomalies.anomaly(a);
    const to = tx.rcpts.map((r) => r.addr);
    const rejected = tx.rcpts.filter((r) => r.code !== undefined && r.code >= 400).map((r) => r.addr);
    const email: Record<string, unknown> = {
      from: { address: tx.from || s?.from[0] || '' },
      to: { address: to },
    };
    if (s) {
      if (s.cc.length) email.cc = { address: s.cc };
      if (s.replyTo.length) email.reply_to = { address: s.replyTo };
      if (s.subject !== undefined) email.subject = s.subject;
      if (s.messageId !== undefined) email.message_id = s.messageId;
      if (s.contentType !== undefined) email.content_type = s.contentType;
      if (s.xMailer !== undefined) email.x_mailer = s.xMailer;
      if (s.date !== undefined) {
        const d = Date.parse(s.date);
        if (!Number.isNaN(d)) email.origination_timestamp = new Date(d).toISOString();
      }
      if (s.attachments.length) {
        email.attachments = s.attachments.map((a) => ({ file: a.mimeType ? { name: a.name, mime_type: a.mimeType } : { name: a.name } }));
      }
    }
    const smtp: Record<string, unknown> = {
      transaction_index: tx.index,
      mail_from: tx.from,
      rcpt_to: to,
      starttls: this.starttls,
    };
    if (this.implicitTls) smtp.implicit_tls = true;
    if (this.helo !== undefined) smtp.helo = this.helo;
    if (this.greeting !== undefined) smtp.greeting = this.greeting;
    if (this.starttlsRefusedCode !== undefined) smtp.starttls_refused_code = this.starttlsRefusedCode;
    if (this.authMech !== undefined) {
      const auth: Record<string, unknown> = { mechanism: this.authMech };
      if (this.authUser !== undefined) auth.user = this.authUser;
      if (this.authSuccess !== undefined) auth.success = this.authSuccess;
      smtp.auth = auth;
    }
    if (code !== undefined) smtp.response = { code, message: (message ?? '').slice(0, 512) };
    if (rejected.length) smtp.rcpt_rejected = rejected;
    if (tx.bdat) smtp.chunking = true;
    if (tx.gap) smtp.gap = true;
    if (s) {
      smtp.message = { bytes: s.bytes, header_bytes: s.headerBytes, parts: s.parts };
      const header: Record<string, unknown> = {};
      if (s.from.length) header.from = s.from;
      if (s.to.length) header.to = s.to;
      if (Object.keys(header).length) smtp.header = header;
    }
    const fields: EcsFields = { email, smtp };
    this.events.emit('smtp', fields, tx.ts, this.decrypted);
  }
}
