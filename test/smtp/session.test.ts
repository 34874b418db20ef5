import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SmtpSession } from '../../src/analyzers/smtp/session.js';
import { Dir, type Timestamp } from '../../src/types.js';
import { Recorder, c, sv, get, ts } from './helpers.js';

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

function session(hooks?: { startTls: (rest: { dir: Dir; data: Buffer; ts: Timestamp }[], ts: Timestamp) => void }) {
  const rec = new Recorder();
  const s = new SmtpSession(rec, rec, hooks);
  return { rec, s };
}

const MSG = ['From: a@x.test', 'To: b@x.test', 'Subject: hi', 'Message-ID: <m1@x.test>', '', 'body', '..dotted', '.'];

describe('SMTP commands and transactions', () => {
  it('emits one event per transaction with envelope, headers and the final reply (clear text: not decrypted)', () => {
    const { rec, s } = session();
    sv(s, '220 mx.test ESMTP ready');
    c(s, 'EHLO client.test');
    sv(s, '250-mx.test', '250-PIPELINING', '250 CHUNKING');
    c(s, 'MAIL FROM:<a@x.test> SIZE=100');
    sv(s, '250 ok');
    c(s, 'RCPT TO:<b@x.test>');
    sv(s, '250 ok');
    c(s, 'RCPT TO:<c@x.test>');
    sv(s, '550 no such user');
    c(s, 'DATA');
    sv(s, '354 go');
    c(s, ...MSG);
    sv(s, '250 2.0.0 queued as ABC');
    c(s, 'QUIT');
    sv(s, '221 bye');
    s.onClose(ts());
    expect(rec.events).toHaveLength(1);
    const e = rec.events[0];
    expect(e.decrypted).toBe(false);
    expect(get(e.fields, 'email.from.address')).toBe('a@x.test');
    expect(get(e.fields, 'email.to.address')).toEqual(['b@x.test', 'c@x.test']);
    expect(get(e.fields, 'smtp.rcpt_rejected')).toEqual(['c@x.test']);
    expect(get(e.fields, 'email.subject')).toBe('hi');
    expect(get(e.fields, 'email.message_id')).toBe('m1@x.test');
    expect(get(e.fields, 'smtp.helo')).toBe('client.test');
    expect(get(e.fields, 'smtp.response.code')).toBe(250);
    expect(get(e.fields, 'smtp.starttls')).toBe(false);
    expect(rec.anomalies).toEqual({});
  });

  it('pairs pipelined commands with their replies (RFC 2920)', () => {
    const { rec, s } = session();
    sv(s, '220 mx ESMTP');
    c(s, 'EHLO c');
    sv(s, '250-mx', '250 PIPELINING');
    // one segment: MAIL, two RCPT and DATA
    s.onData(Dir.ToServer, Buffer.from('MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nRCPT TO:<c@x>\r\nDATA\r\n'), ts());
    s.onData(Dir.ToClient, Buffer.from('250 ok\r\n250 ok\r\n450 later\r\n354 go\r\n'), ts());
    c(s, ...MSG);
    sv(s, '250 done');
    // second transaction in the same session, then one aborted by RSET
    s.onData(Dir.ToServer, Buffer.from('MAIL FROM:<d@x>\r\nRCPT TO:<e@x>\r\nDATA\r\n'), ts());
    s.onData(Dir.ToClient, Buffer.from('250 ok\r\n250 ok\r\n354 go\r\n'), ts());
    c(s, 'Subject: two', '', 'x', '.');
    sv(s, '250 done2');
    c(s, 'MAIL FROM:<z@x>', 'RCPT TO:<y@x>', 'RSET');
    sv(s, '250 ok', '250 ok', '250 reset');
    s.onClose(ts());
    expect(rec.events.map((e) => get(e.fields, 'email.subject'))).toEqual(['hi', 'two']);
    expect(get(rec.events[0].fields, 'smtp.rcpt_rejected')).toEqual(['c@x']);
    expect(get(rec.events[1].fields, 'smtp.transaction_index')).toBe(2);
    expect(get(rec.events[1].fields, 'smtp.response.message')).toBe('done2');
    expect(rec.anomalies).toEqual({});
  });

  it('takes an unreadable reply line as the reply of the oldest waiting command, also when pipelined', () => {
    const { rec, s } = session();
    sv(s, '220 mx ESMTP');
    c(s, 'EHLO c');
    sv(s, '250-mx', '250 PIPELINING');
    s.onData(Dir.ToServer, Buffer.from('MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nRCPT TO:<c@x>\r\nDATA\r\n'), ts());
    // the reply to MAIL is garbage: skipping it would give DATA the 250 of the end of data and
    // read the message as commands
    s.onData(Dir.ToClient, Buffer.from('\xde\xad~~?\r\n250 ok\r\n250 ok\r\n354 go\r\n', 'latin1'), ts());
    c(s, ...MSG);
    sv(s, '250 done');
    c(s, 'MAIL FROM:<d@x>', 'RCPT TO:<e@x>', 'DATA');
    sv(s, '250 ok', '250 ok', '354 go');
    c(s, 'Subject: two', '', 'x', '.');
    sv(s, '250 done2');
    s.onClose(ts());
    expect(rec.events.map((e) => [get(e.fields, 'email.subject'), get(e.fields, 'smtp.response.code')])).toEqual([['hi', 250], ['two', 250]]);
    expect(get(rec.events[0].fields, 'email.to.address')).toEqual(['b@x', 'c@x']);
    expect(rec.anomalies).toEqual({ smtp_reply_malformed: 1 });
  });

  it('reads BDAT chunks by size, including CRLF-dot lines that are data (RFC 3030)', () => {
    const { rec, s } = session();
    sv(s, '220 mx ESMTP');
    c(s, 'EHLO c');
    sv(s, '250-mx', '250 CHUNKING');
    const part1 = 'Subject: chunked\r\nMessage-ID: <b@x>\r\n\r\n.\r\n';
    const part2 = 'tail without dot handling\r\n';
    s.onData(Dir.ToServer, Buffer.from(`MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nBDAT ${part1.length}\r\n${part1}BDAT ${part2.length} LAST\r\n${part2}QUIT\r\n`), ts());
    s.onData(Dir.ToClient, Buffer.from('250 ok\r\n250 ok\r\n250 chunk\r\n250 message ok\r\n221 bye\r\n'), ts());
    s.onClose(ts());
    expect(rec.events).toHaveLength(1);
    expect(get(rec.events[0].fields, 'email.subject')).toBe('chunked');
    expect(get(rec.events[0].fields, 'smtp.chunking')).toBe(true);
    expect(get(rec.events[0].fields, 'smtp.response.message')).toBe('message ok');
    expect(get(rec.events[0].fields, 'smtp.message.bytes')).toBe(part1.length + part2.length);
  });

  it('reports the AUTH PLAIN and LOGIN user, never the password', () => {
    for (const [auth, cont] of [
      [`AUTH PLAIN ${b64('\0alice\0pw-PLAIN-1')}`, [] as string[]],
      ['AUTH PLAIN', [b64('authz\0alice\0pw-PLAIN-2')]],
      ['AUTH LOGIN', [b64('alice'), b64('pw-LOGIN-3')]],
      [`AUTH LOGIN ${b64('alice')}`, [b64('pw-LOGIN-4')]],
    ] as const) {
      const { rec, s } = session();
      sv(s, '220 mx ESMTP');
      c(s, 'EHLO c');
      sv(s, '250 AUTH PLAIN LOGIN');
      c(s, auth);
      for (const line of cont) {
        sv(s, '334 ');
        c(s, line);
      }
      sv(s, '235 ok');
      c(s, 'MAIL FROM:<a@x>', 'RCPT TO:<b@x>', 'DATA');
      sv(s, '250 ok', '250 ok', '354 go');
      c(s, 'Subject: s', '', '.');
      sv(s, '250 ok');
      s.onClose(ts());
      expect(get(rec.events[0].fields, 'smtp.auth.user')).toBe('alice');
      expect(get(rec.events[0].fields, 'smtp.auth.success')).toBe(true);
      expect(JSON.stringify(rec.events)).not.toMatch(/pw-|cHctL/);
    }
  });

  it('hands the bytes after the switch point to startTls on 220 and continues decrypted', () => {
    const calls: { rest: { dir: Dir; data: Buffer }[] }[] = [];
    const rec = new Recorder();
    const s = new SmtpSession(rec, rec, { startTls: (rest) => void calls.push({ rest }) });
    sv(s, '220 mx ESMTP');
    c(s, 'EHLO c');
    sv(s, '250-mx', '250 STARTTLS');
    // the client's ClientHello arrives before the server's 220 is processed (held)
    s.onData(Dir.ToServer, Buffer.from('STARTTLS\r\n\x16\x03\x01\x00\x05hello'), ts());
    s.onData(Dir.ToClient, Buffer.from('220 go ahead\r\n\x16\x03\x03'), ts());
    expect(calls).toHaveLength(1);
    const rest = calls[0].rest;
    expect(rest.find((r) => r.dir === Dir.ToClient)?.data).toEqual(Buffer.from('\x16\x03\x03', 'latin1'));
    expect(rest.find((r) => r.dir === Dir.ToServer)?.data).toEqual(Buffer.from('\x16\x03\x01\x00\x05hello', 'latin1'));
    // further clear bytes are ignored; the decrypted stream continues the session
    s.onData(Dir.ToServer, Buffer.from('garbage\r\n'), ts());
    const tlsRec = new Recorder();
    const d = s.decryptedStream(tlsRec);
    c(d, 'EHLO c2', 'MAIL FROM:<a@x>', 'RCPT TO:<b@x>', 'DATA');
    sv(d, '250 mx', '250 ok', '250 ok', '354 go');
    c(d, 'Subject: secret', '', '.');
    sv(d, '250 ok');
    d.onClose(ts());
    s.onClose(ts());
    expect(rec.events).toHaveLength(0);
    expect(tlsRec.events).toHaveLength(1);
    expect(tlsRec.events[0].decrypted).toBe(true);
    expect(get(tlsRec.events[0].fields, 'smtp.starttls')).toBe(true);
    expect(get(tlsRec.events[0].fields, 'smtp.helo')).toBe('c2');
  });

  it('stays in clear text when STARTTLS is refused', () => {
    let switched = false;
    const rec = new Recorder();
    const s = new SmtpSession(rec, rec, { startTls: () => void (switched = true) });
    sv(s, '220 mx ESMTP');
    c(s, 'EHLO c');
    sv(s, '250 mx');
    s.onData(Dir.ToServer, Buffer.from('STARTTLS\r\nMAIL FROM:<a@x>\r\n'), ts());
    sv(s, '454 TLS not available');
    c(s, 'RCPT TO:<b@x>', 'DATA');
    sv(s, '250 ok', '250 ok', '354 go');
    c(s, 'Subject: clear', '', '.');
    sv(s, '250 ok');
    s.onClose(ts());
    expect(switched).toBe(false);
    expect(rec.events).toHaveLength(1);
    expect(rec.events[0].decrypted).toBe(false);
    expect(get(rec.events[0].fields, 'smtp.starttls_refused_code')).toBe(454);
    expect(get(rec.events[0].fields, 'email.from.address')).toBe('a@x');
  });

  it('reports a transaction that failed at DATA with the DATA reply', () => {
    const { rec, s } = session();
    sv(s, '220 mx ESMTP');
    c(s, 'HELO c', 'MAIL FROM:<a@x>', 'RCPT TO:<b@x>', 'DATA', 'NOOP');
    sv(s, '250 mx', '250 ok', '550 no', '554 no valid recipients', '250 ok');
    s.onClose(ts());
    expect(rec.events).toHaveLength(1);
    expect(get(rec.events[0].fields, 'smtp.response.code')).toBe(554);
    expect(get(rec.events[0].fields, 'smtp.rcpt_rejected')).toEqual(['b@x']);
    expect(get(rec.events[0].fields, 'email.subject')).toBeUndefined();
  });

  it('emits a transaction cut by the end of the capture with an anomaly', () => {
    const { rec, s } = session();
    sv(s, '220 mx ESMTP');
    c(s, 'HELO c', 'MAIL FROM:<a@x>', 'RCPT TO:<b@x>', 'DATA');
    sv(s, '250 mx', '250 ok', '250 ok', '354 go');
    c(s, 'Subject: cut', '', 'partial body');
    s.onClose(ts());
    expect(rec.events).toHaveLength(1);
    expect(get(rec.events[0].fields, 'email.subject')).toBe('cut');
    expect(get(rec.events[0].fields, 'smtp.response')).toBeUndefined();
    expect(rec.anomalies.smtp_data_truncated).toBe(1);
  });

  it('recovers when the end-of-data dot is lost in a gap', () => {
    const { rec, s } = session();
    sv(s, '220 mx ESMTP');
    c(s, 'HELO c', 'MAIL FROM:<a@x>', 'RCPT TO:<b@x>', 'DATA');
    sv(s, '250 mx', '250 ok', '250 ok', '354 go');
    c(s, 'Subject: gap', '', 'x');
    s.onGap(Dir.ToServer, 100, ts());
    sv(s, '250 accepted');
    c(s, 'MAIL FROM:<n@x>', 'RCPT TO:<m@x>', 'DATA');
    sv(s, '250 ok', '250 ok', '354 go');
    c(s, 'Subject: next', '', '.');
    sv(s, '250 ok');
    s.onClose(ts());
    expect(rec.events.map((e) => get(e.fields, 'email.subject'))).toEqual(['gap', 'next']);
    expect(get(rec.events[0].fields, 'smtp.gap')).toBe(true);
    expect(rec.anomalies.smtp_gap).toBe(1);
  });

  it('gives up on a stream that is not SMTP', () => {
    const { rec, s } = session();
    for (let i = 0; i < 20; i++) c(s, `GET /${i} HTTP/1.1`);
    expect(rec.anomalies.smtp_not_smtp).toBe(1);
    expect(rec.events).toHaveLength(0);
  });
});

describe('SMTP robustness (property)', () => {
  const conversation = [
    [1, '220 mx ESMTP\r\n'],
    [0, 'EHLO c\r\n'],
    [1, '250-mx\r\n250 PIPELINING\r\n'],
    [0, `AUTH PLAIN ${b64('\0u\0p')}\r\n`],
    [1, '235 ok\r\n'],
    [0, 'MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n'],
    [1, '250 ok\r\n250 ok\r\n354 go\r\n'],
    [0, 'Subject: =?UTF-8?Q?x?=\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Disposition: attachment; filename=f.txt\r\n\r\nx\r\n--b--\r\n.\r\n'],
    [1, '250 ok\r\n'],
    [0, 'BDAT 5 LAST\r\nabcde'],
    [1, '250 ok\r\n'],
    [0, 'STARTTLS\r\n'],
    [1, '220 go\r\n'],
  ] as const;

  it('never throws on random bytes in both directions', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.uint8Array({ maxLength: 200 }), fc.nat(3)), { maxLength: 40 }), (chunks) => {
        const rec = new Recorder();
        const s = new SmtpSession(rec, rec, { startTls: () => {} }, { maxHoldBytes: 256, maxLineBytes: 64 });
        for (const [toServer, bytes, kind] of chunks) {
          const dir = toServer ? Dir.ToServer : Dir.ToClient;
          if (kind === 3) s.onGap(dir, bytes.length + 1, ts());
          else s.onData(dir, Buffer.from(bytes), ts());
        }
        s.onClose(ts());
      }),
      { numRuns: 300 },
    );
  });

  it('never throws on every prefix and every chunking of a real conversation', () => {
    const total = conversation.reduce((n, [, t]) => n + t.length, 0);
    fc.assert(
      fc.property(fc.nat(total), fc.integer({ min: 1, max: 17 }), (cut, step) => {
        const rec = new Recorder();
        const s = new SmtpSession(rec, rec, { startTls: () => {} });
        let left = cut;
        for (const [dir, text] of conversation) {
          const b = Buffer.from(text.slice(0, Math.max(0, left)));
          left -= text.length;
          for (let i = 0; i < b.length; i += step) s.onData(dir as Dir, b.subarray(i, i + step), ts());
          if (left <= 0) break;
        }
        s.onClose(ts());
        // a full run emits both transactions; chunking never changes the result
        if (cut === total) expect(rec.events).toHaveLength(2);
      }),
      { numRuns: 400 },
    );
  });
});
