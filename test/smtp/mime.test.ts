import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { decodeEncodedWords, MessageParser, parseAddressList, parseHeaderParams } from '../../src/analyzers/smtp/mime.js';
import { LineReader } from '../../src/analyzers/lines.js';
import { cramUser, decodeBase64Strict, oauthUser, plainUser } from '../../src/analyzers/smtp/sasl.js';

function parse(msg: string) {
  const p = new MessageParser();
  const r = new LineReader(8192);
  r.push(Buffer.from(msg, 'utf8'), (l, f) => void p.line(l, f));
  if (r.partial) r.push(Buffer.from('\r\n'), (l, f) => void p.line(l, f));
  return p.finish();
}

describe('RFC 2047 encoded words', () => {
  it('decodes B and Q in utf-8 and iso-8859-1', () => {
    expect(decodeEncodedWords('=?UTF-8?B?w5xiZXJzaWNodA==?=')).toBe('Übersicht');
    expect(decodeEncodedWords('=?ISO-8859-1?Q?Caf=E9_au_lait?=')).toBe('Café au lait');
    expect(decodeEncodedWords('=?iso-8859-1?q?r=E9sum=E9?= ok')).toBe('résumé ok');
  });
  it('drops whitespace between adjacent encoded words, keeps it next to text', () => {
    expect(decodeEncodedWords('=?UTF-8?Q?a?= =?UTF-8?Q?b?=')).toBe('ab');
    expect(decodeEncodedWords('x =?UTF-8?Q?a?= y')).toBe('x a y');
  });
  it('joins a multi-byte character split across two words', () => {
    // "é" = C3 A9 split over two B words
    expect(decodeEncodedWords('=?UTF-8?B?w6==?= =?UTF-8?B?qQ==?=')).not.toContain('\uFFFD\uFFFD');
    expect(decodeEncodedWords('=?UTF-8?Q?=C3?= =?UTF-8?Q?=A9?=')).toBe('é');
  });
  it('leaves malformed words and unknown charsets as data', () => {
    expect(decodeEncodedWords('=?UTF-8?X?abc?=')).toBe('=?UTF-8?X?abc?=');
    let unknown = '';
    expect(decodeEncodedWords('=?x-nope?Q?abc?=', (cs) => (unknown = cs))).toBe('abc');
    expect(unknown).toBe('x-nope');
  });
});

describe('address lists', () => {
  it('handles display names, quoted commas, groups and comments', () => {
    expect(parseAddressList('Carol <carol@x.test>, "Doe, John" <john@x.test>, bare@x.test')).toEqual([
      'carol@x.test',
      'john@x.test',
      'bare@x.test',
    ]);
    expect(parseAddressList('team: a@x.test, b@x.test;')).toEqual(['a@x.test', 'b@x.test']);
    expect(parseAddressList('a@x.test (Alice)')).toEqual(['a@x.test']);
    expect(parseAddressList('undisclosed-recipients:;')).toEqual([]);
  });
});

describe('RFC 2231 parameters', () => {
  it('joins continuations and decodes the charset', () => {
    const p = parseHeaderParams("attachment; filename*0*=UTF-8''na%C3%AFve%20; filename*1*=notes.txt");
    expect(p.value).toBe('attachment');
    expect(p.params.get('filename')).toBe('naïve notes.txt');
  });
  it('prefers the extended form and reads quoted plain values', () => {
    const p = parseHeaderParams('attachment; filename="plain.txt"; filename*=iso-8859-1\'\'caf%E9.txt');
    expect(p.params.get('filename')).toBe('café.txt');
    expect(parseHeaderParams('text/plain; name="a \\"b\\".txt"').params.get('name')).toBe('a "b".txt');
  });
});

describe('MessageParser', () => {
  const msg = [
    'From: A <a@x.test>',
    'To: b@x.test',
    'Cc: Carol <carol@x.test>,',
    ' dave@x.test',
    'Subject: =?UTF-8?B?w5xiZXJzaWNodA==?=',
    'Message-ID: <id-1@x.test>',
    'Content-Type: multipart/mixed; boundary="outer"',
    '',
    'preamble',
    '--outer',
    'Content-Type: multipart/alternative; boundary=inner',
    '',
    '--inner',
    'Content-Type: text/plain',
    '',
    'hello',
    '--inner--',
    '--outer',
    'Content-Type: application/pdf; name="r.pdf"',
    'Content-Disposition: attachment; filename="report.pdf"',
    '',
    'AAAA',
    '--outer',
    'Content-Type: text/csv; name=data.csv',
    '',
    'a,b',
    '--outer--',
    'epilogue',
  ].join('\r\n');
  it('finds the top-level fields and the attachment names (disposition wins over name)', () => {
    const s = parse(msg);
    expect(s.subject).toBe('Übersicht');
    expect(s.messageId).toBe('id-1@x.test');
    expect(s.cc).toEqual(['carol@x.test', 'dave@x.test']);
    expect(s.attachments.map((a) => a.name)).toEqual(['report.pdf', 'data.csv']);
    expect(s.attachments[0].mimeType).toBe('application/pdf');
    expect(s.anomalies).toEqual([]);
  });
  it('reports an unterminated multipart and a header block over the limit', () => {
    expect(parse('Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx').anomalies).toContain('smtp_mime_unterminated');
    const p = new MessageParser({ maxHeaderBytes: 100, maxParts: 10, maxDepth: 5 });
    for (let i = 0; i < 20; i++) p.line(Buffer.from(`X-H${i}: ${'v'.repeat(20)}`));
    p.line(Buffer.alloc(0));
    expect(p.finish().anomalies).toContain('smtp_header_limit');
  });
  it('never throws on arbitrary lines', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 120 }), { maxLength: 60 }), (lines) => {
        const p = new MessageParser({ maxHeaderBytes: 512, maxParts: 4, maxDepth: 3 });
        for (const l of lines) p.line(Buffer.from(l));
        p.finish();
      }),
      { numRuns: 300 },
    );
  });
  it('header helpers never throw on arbitrary strings', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (s) => {
        decodeEncodedWords(s);
        parseAddressList(s);
        parseHeaderParams(s);
        decodeEncodedWords('=?utf-8?q?' + s + '?=');
        parseHeaderParams('a; filename*0*=' + s + '; filename*1=' + s);
      }),
      { numRuns: 500 },
    );
  });
});

describe('LineReader', () => {
  it('splits CRLF and LF lines across chunks and truncates long lines', () => {
    const r = new LineReader(8);
    const got: [string, number, boolean][] = [];
    const cb = (l: Buffer, f: number, t: boolean) => void got.push([l.toString(), f, t]);
    r.push(Buffer.from('ab'), cb);
    r.push(Buffer.from('c\r\nde\nlonglonglong\r\n'), cb);
    expect(got[0]).toEqual(['abc', 3, false]);
    expect(got[1]).toEqual(['de', 2, false]);
    expect(got[2][0]).toBe('longlong');
    expect(got[2][2]).toBe(true);
  });
  it('delivers the same lines however the input is chunked', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.array(fc.nat(300), { maxLength: 10 }), (bytes, cuts) => {
        const data = Buffer.from(bytes);
        const whole: string[] = [];
        new LineReader(64).push(data, (l) => void whole.push(l.toString('hex')));
        const r = new LineReader(64);
        const parts: string[] = [];
        const points = [...new Set(cuts.map((x) => x % (data.length + 1)))].sort((a, b) => a - b);
        let prev = 0;
        for (const p of [...points, data.length]) {
          r.push(data.subarray(prev, p), (l) => void parts.push(l.toString('hex')));
          prev = p;
        }
        expect(parts).toEqual(whole);
      }),
      { numRuns: 300 },
    );
  });
});

describe('SASL identities', () => {
  it('extracts the user of PLAIN, CRAM-MD5, XOAUTH2 and OAUTHBEARER', () => {
    expect(plainUser(Buffer.from('\0alice\0pw'))).toBe('alice');
    expect(plainUser(Buffer.from('admin\0\0pw'))).toBe('admin');
    expect(plainUser(Buffer.from('nonul'))).toBeUndefined();
    expect(cramUser(Buffer.from('bob 0123abcd'))).toBe('bob');
    expect(oauthUser(Buffer.from('user=carol@x\x01auth=Bearer tok\x01\x01'))).toBe('carol@x');
    expect(oauthUser(Buffer.from('n,a=dave@x,\x01auth=Bearer tok\x01\x01'))).toBe('dave@x');
    expect(decodeBase64Strict('=')).toEqual(Buffer.alloc(0));
    expect(decodeBase64Strict('not base64!')).toBeUndefined();
  });
  it('never throws on arbitrary input', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.string({ maxLength: 100 }), (b, s) => {
        const buf = Buffer.from(b);
        plainUser(buf);
        cramUser(buf);
        oauthUser(buf);
        decodeBase64Strict(s);
      }),
      { numRuns: 500 },
    );
  });
});
