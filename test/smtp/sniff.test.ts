import { describe, expect, it } from 'vitest';
import { createAppAnalyzer } from '../../src/analyzers/index.js';
import { Recorder, c, sv, get, ts } from './helpers.js';

describe('app-analyzer sniffing of decrypted streams without ALPN', () => {
  it('hands SMTP (greeting first, then EHLO) to the SMTP analyzer, tagged decrypted', () => {
    const rec = new Recorder();
    const a = createAppAnalyzer(undefined, rec, rec);
    sv(a, '220 mx ESMTP');
    a.onData(0, Buffer.from('EH'), ts());
    c(a, 'LO c', 'MAIL FROM:<a@x>', 'RCPT TO:<b@x>', 'DATA');
    sv(a, '250 mx', '250 ok', '250 ok', '354 go');
    c(a, 'Subject: over tls', '', '.');
    sv(a, '250 ok');
    a.onClose(ts());
    expect(rec.events).toHaveLength(1);
    expect(rec.events[0].decrypted).toBe(true);
    expect(get(rec.events[0].fields, 'email.subject')).toBe('over tls');
  });
  it('hands FTP to the FTP analyzer', () => {
    const rec = new Recorder();
    const a = createAppAnalyzer(undefined, rec, rec);
    sv(a, '220 hello');
    c(a, 'USER anonymous');
    sv(a, '230 ok');
    a.onClose(ts());
    expect(rec.events.map((e) => get(e.fields, 'ftp.request.command'))).toEqual([undefined, 'USER']);
  });
});
