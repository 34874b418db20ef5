/**
 * Opportunistic TLS in clear-text protocols that have no analyzer here: IMAP STARTTLS (RFC 3501
 * Section 6.2.1), POP3 STLS (RFC 2595), NNTP, LDAP StartTLS (RFC 4511 Section 4.14), XMPP
 * (RFC 6120 Section 5), ManageSieve, PostgreSQL SSLRequest, MySQL SSL. Each of them ends its
 * clear-text part with a command and an answer, then the client sends a ClientHello and the server
 * a ServerHello. The watch finds those two points by content, not by parsing the protocol: a
 * handshake record (type 22, version 3.x, a plausible length) whose first message is a ClientHello
 * (client) or ServerHello (server, only after the client's), at the start of a segment's data or
 * right after a line end. What came before is the protocol's clear text and is not reported.
 */
import { Dir } from '../types.js';

/** Longest TLSPlaintext fragment (2^14) plus the most a TLS 1.2 record may grow (RFC 5246 6.2.3). */
const MAX_RECORD = 16384 + 2048;

/** Whether a handshake record starting at `i` begins with handshake message `type`. */
function helloAt(b: Buffer, i: number, type: number): boolean {
  if (i + 6 > b.length || b[i] !== 22 || b[i + 1] !== 3 || b[i + 2] > 4 || b[i + 5] !== type) return false;
  const len = (b[i + 3] << 8) | b[i + 4];
  return len >= 4 && len <= MAX_RECORD;
}

export class StartTlsWatch {
  private readonly scanned = [0, 0];
  /** The client sent its ClientHello (the server's switch is looked for only after it). */
  private clientSwitched = false;

  constructor(private readonly limit: number) {}

  /**
   * Where this direction's TLS starts in `data` (its next bytes in that direction), or -1. Once a
   * direction has switched the caller stops asking for it.
   */
  find(dir: Dir, data: Buffer): number {
    const d = dir === Dir.ToServer ? 0 : 1;
    if (d === 1 && !this.clientSwitched) {
      this.scanned[1] += data.length;
      return -1;
    }
    const type = d === 0 ? 1 : 2;
    let at = helloAt(data, 0, type) ? 0 : -1;
    for (let nl = data.indexOf(10); at < 0 && nl >= 0 && nl + 1 < data.length; nl = data.indexOf(10, nl + 1)) {
      if (helloAt(data, nl + 1, type)) at = nl + 1;
    }
    if (at < 0) this.scanned[d] += data.length;
    else if (d === 0) this.clientSwitched = true;
    return at;
  }

  /** The bytes a direction has shown without its switch exceed the limit: give up on it. */
  exhausted(dir: Dir): boolean {
    return this.scanned[dir === Dir.ToServer ? 0 : 1] > this.limit;
  }
}
