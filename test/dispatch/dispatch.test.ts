import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { detectProtocol, ProtocolDispatcher, type DispatchDeps, type TlsAppOverride } from '../../src/pipeline/dispatch.js';
import { DataChannelRegistry } from '../../src/analyzers/ftp/dataChannels.js';
import type { AppStream } from '../../src/analyzers/index.js';
import { Dir, type EndReason, type FlowCounters, type FlowHandler, type FlowInfo, type Timestamp } from '../../src/types.js';
import { Recorder, get, ts } from '../smtp/helpers.js';

const COUNTERS: FlowCounters = { clientBytes: 0, serverBytes: 0, clientPackets: 0, serverPackets: 0, gapBytes: 0, last: { sec: 0, nsec: 0 } };
let ids = 1;
function flow(serverPort: number, clientPort = 50000, clientIp = '10.0.0.1', serverIp = '10.0.0.2'): FlowInfo {
  return { id: ids++, clientIp, clientPort, serverIp, serverPort, ipVersion: 4, start: ts(), rolesFromHandshake: true, communityId: 'c' };
}

/** A stand-in TLS handler: records the ciphertext it gets and lets the test play "decrypted" data into the app. */
class FakeTls implements FlowHandler {
  bytes: [number, number] = [0, 0];
  first: Buffer[] = [];
  app: AppStream | undefined;
  closed = false;
  constructor(
    readonly override: TlsAppOverride | undefined,
    readonly events: Recorder,
  ) {}
  onData(dir: Dir, data: Buffer): void {
    this.bytes[dir] += data.length;
    if (this.first.length < 4) this.first.push(Buffer.from(data));
  }
  onGap(): void {}
  onEnd(): void {}
  onClose(_r: EndReason, _c: FlowCounters, t: Timestamp): void {
    this.closed = true;
    this.app?.onClose(t);
  }
  /** What the real handler does with plaintext: create the app lazily, feed it. */
  plain(dir: Dir, text: string | Buffer): void {
    this.app ??= this.override ? this.override({}, this.events) : undefined;
    this.app?.onData(dir, Buffer.isBuffer(text) ? text : Buffer.from(text), ts());
  }
}

function deps(registry = new DataChannelRegistry()) {
  const clear = new Recorder();
  const tlsEvents = new Recorder();
  const tls: FakeTls[] = [];
  let ignored = 0;
  const d: DispatchDeps = {
    makeTls: (_f, app) => {
      const t = new FakeTls(app, tlsEvents);
      tls.push(t);
      return t;
    },
    clearEvents: clear,
    anomalies: clear,
    dataChannels: registry,
    onIgnored: () => void ignored++,
  };
  return { d, clear, tlsEvents, tls, registry, ignored: () => ignored };
}

const send = (h: FlowHandler, dir: Dir, s: string | Buffer) => h.onData(dir, Buffer.isBuffer(s) ? s : Buffer.from(s, 'latin1'), ts());
const CH = Buffer.from([0x16, 0x03, 0x01, 0x00, 0x10, 0x01, 0, 0, 0x0c, 3, 3]);
const SH = Buffer.from([0x16, 0x03, 0x03, 0x00, 0x10, 0x02, 0, 0, 0x0c, 3, 3]);

describe('detectProtocol', () => {
  it('recognises TLS, SMTP and FTP from either direction', () => {
    expect(detectProtocol(CH, Buffer.alloc(0))).toBe('tls');
    expect(detectProtocol(Buffer.alloc(0), Buffer.from('220 mx.example.com ESMTP Postfix\r\n'))).toBe('smtp');
    expect(detectProtocol(Buffer.alloc(0), Buffer.from('220 (vsFTPd 3.0.3)\r\n'))).toBe('ftp');
    expect(detectProtocol(Buffer.alloc(0), Buffer.from('220 ProFTPD Server ready.\r\n'))).toBe('ftp');
    expect(detectProtocol(Buffer.from('EHLO me\r\n'), Buffer.from('220 hi\r\n'))).toBe('smtp');
    expect(detectProtocol(Buffer.from('USER anonymous\r\n'), Buffer.from('220 hi\r\n'))).toBe('ftp');
    expect(detectProtocol(Buffer.from('AUTH TLS\r\n'), Buffer.alloc(0))).toBe('ftp');
    expect(detectProtocol(Buffer.alloc(0), Buffer.from('220 hi\r\n'))).toBe('need_more');
    expect(detectProtocol(Buffer.from('GET / HTTP/1.1\r\n'), Buffer.alloc(0))).toBe('unknown');
  });
  it('never throws on random bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), fc.uint8Array({ maxLength: 600 }), (a, b) => void detectProtocol(Buffer.from(a), Buffer.from(b))), { numRuns: 500 });
  });
});

describe('ProtocolDispatcher routing', () => {
  it('465: TLS with the SMTP analyzer on the decrypted stream', () => {
    const x = deps();
    const h = new ProtocolDispatcher(flow(465), x.d);
    send(h, Dir.ToServer, CH);
    expect(x.tls).toHaveLength(1);
    expect(x.tls[0].override).toBeDefined();
    const t = x.tls[0];
    t.plain(Dir.ToClient, '220 mx ESMTP\r\n');
    t.plain(Dir.ToServer, 'EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n');
    t.plain(Dir.ToClient, '250 mx\r\n250 ok\r\n250 ok\r\n354 go\r\n');
    t.plain(Dir.ToServer, 'Subject: implicit\r\n\r\n.\r\n');
    t.plain(Dir.ToClient, '250 ok\r\n');
    h.onClose('fin', COUNTERS, ts());
    expect(x.tlsEvents.events).toHaveLength(1);
    expect(x.tlsEvents.events[0].decrypted).toBe(true);
    expect(get(x.tlsEvents.events[0].fields, 'email.subject')).toBe('implicit');
    expect(get(x.tlsEvents.events[0].fields, 'smtp.implicit_tls')).toBe(true);
    expect(h.kind).toBe('tls');
  });

  it('587: clear SMTP until 220 to STARTTLS, then exactly the following bytes go to TLS', () => {
    const x = deps();
    const h = new ProtocolDispatcher(flow(587), x.d);
    send(h, Dir.ToClient, '220 mx ESMTP\r\n');
    send(h, Dir.ToServer, 'EHLO c\r\n');
    send(h, Dir.ToClient, '250-mx\r\n250 STARTTLS\r\n');
    send(h, Dir.ToServer, 'STARTTLS\r\n');
    expect(x.tls).toHaveLength(0);
    send(h, Dir.ToClient, '220 ready\r\n');
    expect(x.tls).toHaveLength(1);
    send(h, Dir.ToServer, CH);
    send(h, Dir.ToClient, Buffer.from([0x16, 3, 3, 0, 1, 2]));
    expect(x.tls[0].bytes).toEqual([CH.length, 6]);
    expect(x.tls[0].first[0]).toEqual(CH);
    const t = x.tls[0];
    t.plain(Dir.ToServer, 'EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n');
    t.plain(Dir.ToClient, '250 mx\r\n250 ok\r\n250 ok\r\n354 go\r\n');
    t.plain(Dir.ToServer, 'Subject: after starttls\r\n\r\n.\r\n');
    t.plain(Dir.ToClient, '250 ok\r\n');
    h.onClose('fin', COUNTERS, ts());
    expect(x.clear.events).toHaveLength(0);
    expect(x.tlsEvents.events.map((e) => [get(e.fields, 'email.subject'), e.decrypted, get(e.fields, 'smtp.starttls')])).toEqual([
      ['after starttls', true, true],
    ]);
    expect(h.kind).toBe('tls-upgraded');
  });

  it('recognises SMTP and FTP on other ports by content', () => {
    const x = deps();
    const s = new ProtocolDispatcher(flow(2526), x.d);
    send(s, Dir.ToClient, '220 mail.example.com ESMTP\r\n');
    expect(s.kind).toBe('smtp');
    const f = new ProtocolDispatcher(flow(2121), x.d);
    send(f, Dir.ToClient, '220 Welcome\r\n');
    expect(f.kind).toBe('undecided');
    send(f, Dir.ToServer, 'USER bob\r\n');
    expect(f.kind).toBe('ftp');
    send(f, Dir.ToClient, '331 pw\r\n');
    f.onClose('fin', COUNTERS, ts());
    expect(x.clear.events.map((e) => get(e.fields, 'ftp.request.command'))).toEqual([undefined, 'USER']);
  });

  it('ignores unknown content once, and TLS on unknown ports goes to the default app factory', () => {
    const x = deps();
    const u = new ProtocolDispatcher(flow(8080), x.d);
    send(u, Dir.ToServer, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    send(u, Dir.ToServer, 'more');
    expect(u.kind).toBe('ignored');
    expect(x.ignored()).toBe(1);
    const t = new ProtocolDispatcher(flow(8443), x.d);
    send(t, Dir.ToServer, CH);
    expect(x.tls[0].override).toBeUndefined();
  });

  it('IMAP STARTTLS (no analyzer): the TLS flow starts at the ClientHello and, on the server side, at the ServerHello', () => {
    const x = deps();
    const f = new ProtocolDispatcher(flow(143), x.d);
    send(f, Dir.ToClient, '* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n');
    send(f, Dir.ToServer, 'a1 STARTTLS\r\n');
    expect(f.kind).toBe('starttls-watch');
    send(f, Dir.ToClient, 'a1 OK Begin TLS negotiation now\r\n');
    send(f, Dir.ToServer, CH);
    expect(f.kind).toBe('tls-upgraded');
    expect(x.tls).toHaveLength(1);
    expect(x.tls[0].override).toBeUndefined(); // the default app factory
    send(f, Dir.ToClient, Buffer.concat([Buffer.from('late clear text\r\n'), SH])); // ServerHello after a line end
    send(f, Dir.ToServer, 'ciphertext');
    expect(x.tls[0].first).toEqual([CH, SH, Buffer.from('ciphertext')]);
    f.onClose('fin', COUNTERS, ts());
    expect(x.tls[0].closed).toBe(true);
    expect(x.ignored()).toBe(0);
  });

  it('watches POP3 by its greeting on any port and PostgreSQL by its port (binary clear text)', () => {
    const x = deps();
    const pop = new ProtocolDispatcher(flow(1110), x.d);
    send(pop, Dir.ToClient, '+OK Dovecot ready.\r\n');
    send(pop, Dir.ToServer, 'STLS\r\n');
    send(pop, Dir.ToClient, '+OK Begin TLS negotiation now.\r\n');
    send(pop, Dir.ToServer, CH);
    expect(pop.kind).toBe('tls-upgraded');
    const pg = new ProtocolDispatcher(flow(5432), x.d);
    send(pg, Dir.ToServer, Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])); // SSLRequest
    send(pg, Dir.ToClient, 'S');
    send(pg, Dir.ToServer, CH);
    send(pg, Dir.ToClient, SH);
    expect(x.tls[1].first).toEqual([CH, SH]);
  });

  it('an HTTP proxy CONNECT on any port, and SOCKS on 1080, are watched; a plain HTTP request is not', () => {
    const x = deps();
    const c = new ProtocolDispatcher(flow(3128), x.d);
    send(c, Dir.ToServer, 'CONNECT www.example.com:443 HTTP/1.1\r\nHost: www.example.com:443\r\n\r\n');
    expect(c.kind).toBe('starttls-watch');
    send(c, Dir.ToClient, 'HTTP/1.1 200 Connection established\r\n\r\n');
    send(c, Dir.ToServer, CH);
    send(c, Dir.ToClient, SH);
    expect(x.tls[0].first).toEqual([CH, SH]);
    const socks = new ProtocolDispatcher(flow(1080), x.d);
    send(socks, Dir.ToServer, Buffer.from([5, 1, 0]));
    send(socks, Dir.ToClient, Buffer.from([5, 0]));
    send(socks, Dir.ToServer, Buffer.from([5, 1, 0, 3, 11, ...Buffer.from('example.com'), 1, 187]));
    send(socks, Dir.ToClient, Buffer.from([5, 0, 0, 1, 10, 0, 0, 2, 1, 187]));
    send(socks, Dir.ToServer, CH);
    expect(socks.kind).toBe('tls-upgraded');
    const plain = new ProtocolDispatcher(flow(3128), x.d);
    send(plain, Dir.ToServer, 'GET http://www.example.com/ HTTP/1.1\r\nHost: www.example.com\r\n\r\n');
    expect(plain.kind).toBe('ignored');
  });

  it('a ServerHello before the ClientHello, or a record that is no hello, does not switch; a watched flow that never switches is ignored once', () => {
    const x = deps();
    const f = new ProtocolDispatcher(flow(143), x.d);
    send(f, Dir.ToClient, Buffer.concat([Buffer.from('* OK\r\n'), SH]));
    send(f, Dir.ToServer, Buffer.from([0x16, 0x03, 0x01, 0x00, 0x10, 0x0b, 0, 0])); // a Certificate, not a ClientHello
    expect(f.kind).toBe('starttls-watch');
    send(f, Dir.ToServer, 'x'.repeat(16400)); // past startTlsWatchBytes
    expect(f.kind).toBe('ignored');
    send(f, Dir.ToServer, CH);
    expect(x.tls).toHaveLength(0);
    f.onClose('fin', COUNTERS, ts());
    expect(x.ignored()).toBe(1);
    const g = new ProtocolDispatcher(flow(110), x.d);
    send(g, Dir.ToClient, '+OK\r\n');
    g.onClose('fin', COUNTERS, ts());
    expect(x.ignored()).toBe(2);
  });

  it('routes an announced FTP data connection (clear) to its control session, and a port-20 stranger to an orphan event', () => {
    const x = deps();
    const ctl = new ProtocolDispatcher(flow(21, 40000), x.d);
    send(ctl, Dir.ToClient, '220 FTP ready\r\n');
    send(ctl, Dir.ToServer, 'EPSV\r\n');
    send(ctl, Dir.ToClient, '229 Entering Extended Passive Mode (|||40100|)\r\n');
    const data = new ProtocolDispatcher(flow(40100, 40001), x.d);
    send(ctl, Dir.ToServer, 'RETR a.txt\r\n');
    send(ctl, Dir.ToClient, '150 ok\r\n');
    send(data, Dir.ToClient, 'file content\n');
    data.onEnd(Dir.ToClient, 'fin', ts());
    data.onEnd(Dir.ToServer, 'fin', ts());
    data.onClose('fin', COUNTERS, ts());
    send(ctl, Dir.ToClient, '226 done\r\n');
    expect(data.kind).toBe('ftp-data');
    const retr = x.clear.events.find((e) => get(e.fields, 'ftp.request.command') === 'RETR')!;
    expect(get(retr.fields, 'ftp.data.bytes')).toBe(13);
    expect(get(retr.fields, 'file.size')).toBe(13);
    const orphan = new ProtocolDispatcher(flow(51000, 20, '10.0.0.2', '10.0.0.1'), x.d);
    send(orphan, Dir.ToServer, 'stray data');
    orphan.onClose('fin', COUNTERS, ts());
    const o = x.clear.events.find((e) => get(e.fields, 'ftp.data.orphan') === true)!;
    expect(get(o.fields, 'ftp.data.bytes')).toBe(10);
    expect(get(o.fields, 'ftp.data.transfer')).toBe('download');
    ctl.onClose('fin', COUNTERS, ts());
  });

  it('sends a protected (PROT P) data connection through TLS into the data channel', () => {
    const x = deps();
    const ctl = new ProtocolDispatcher(flow(21, 40000), x.d);
    send(ctl, Dir.ToClient, '220 FTP ready\r\n');
    send(ctl, Dir.ToServer, 'AUTH TLS\r\n');
    send(ctl, Dir.ToClient, '234 go\r\n');
    expect(x.tls).toHaveLength(1);
    const c = x.tls[0];
    c.plain(Dir.ToServer, 'PROT P\r\n');
    c.plain(Dir.ToClient, '200 ok\r\n');
    c.plain(Dir.ToServer, 'EPSV\r\n');
    c.plain(Dir.ToClient, '229 (|||40200|)\r\n');
    const data = new ProtocolDispatcher(flow(40200, 40002), x.d);
    send(data, Dir.ToServer, CH);
    expect(x.tls).toHaveLength(2);
    c.plain(Dir.ToServer, 'RETR s.bin\r\n');
    c.plain(Dir.ToClient, '150 ok\r\n');
    x.tls[1].plain(Dir.ToClient, Buffer.alloc(5000, 7));
    data.onClose('fin', COUNTERS, ts());
    c.plain(Dir.ToClient, '226 ok\r\n');
    ctl.onClose('fin', COUNTERS, ts());
    const retr = x.tlsEvents.events.find((e) => get(e.fields, 'ftp.request.command') === 'RETR')!;
    expect(get(retr.fields, 'ftp.data.tls')).toBe(true);
    expect(get(retr.fields, 'ftp.data.decrypted')).toBe(true);
    expect(get(retr.fields, 'ftp.data.bytes')).toBe(5000);
    expect(retr.decrypted).toBe(true);
  });

  it('recognises a control connection whose capture starts mid-stream (after a gap)', () => {
    const x = deps();
    const h = new ProtocolDispatcher(flow(21), x.d);
    h.onGap(Dir.ToServer, 1000, ts());
    h.onGap(Dir.ToClient, 1000, ts());
    send(h, Dir.ToServer, 'PWD\r\n');
    send(h, Dir.ToClient, '257 "/"\r\n');
    expect(h.kind).toBe('ftp');
  });

  it('never throws on random chunks on any port', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(21, 25, 465, 587, 990, 20, 989, 8080),
        fc.array(fc.tuple(fc.boolean(), fc.uint8Array({ maxLength: 300 }), fc.nat(4)), { maxLength: 30 }),
        (port, chunks) => {
          const x = deps();
          const h = new ProtocolDispatcher(flow(port, port === 20 ? 20 : 50000), x.d);
          for (const [toServer, bytes, k] of chunks) {
            const dir = toServer ? Dir.ToServer : Dir.ToClient;
            if (k === 4) h.onGap(dir, 5, ts());
            else if (k === 3) h.onEnd(dir, 'fin', ts());
            else h.onData(dir, Buffer.from(bytes), ts());
          }
          h.onClose('eof', COUNTERS, ts());
        },
      ),
      { numRuns: 300 },
    );
  });
});
