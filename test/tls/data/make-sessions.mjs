// Records small real TLS sessions between Node's tls client and server (OpenSSL underneath) on
// 127.0.0.1 through a recording TCP proxy, for the tests in test/tls/. Run once:
//   node test/tls/data/make-sessions.mjs            (TLS 1.2/1.3 sessions)
//   node test/tls/data/make-sessions.mjs legacy     (TLS 1.0/1.1 sessions only)
// Output: one JSON file per session: { description, tool, chunks: [{ dir: 0 (client->server) | 1, hex }],
//   keylog (client's SSLKEYLOGFILE lines), request, response }. server.key / server.crt are a
//   throw-away RSA-2048 test key and self-signed certificate (made with openssl req, see below).
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const keyPath = join(here, 'server.key');
const crtPath = join(here, 'server.crt');
if (!existsSync(keyPath)) {
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyPath, '-out', crtPath,
    '-days', '36500', '-subj', '/CN=test.example', '-addext', 'subjectAltName=DNS:test.example,DNS:www.test.example']);
}
const key = readFileSync(keyPath);
// One ticket key for all servers, so the resumed session's ticket is accepted by the second server.
const ticketKeys = randomBytes(48);
const cert = readFileSync(crtPath);

const REQUEST = 'GET /hello HTTP/1.1\r\nHost: test.example\r\n\r\n';
const BODY = 'x'.repeat(3000) + '\n';
const RESPONSE = `HTTP/1.1 200 OK\r\nContent-Length: ${BODY.length}\r\n\r\n${BODY}`;

async function record(name, description, serverOpts, clientOpts, extra = {}) {
  const chunks = [];
  const keylog = [];
  const server = tls.createServer({ key, cert, ticketKeys, ...serverOpts }, (s) => {
    let got = '';
    s.on('data', (d) => {
      got += d.toString('latin1');
      if (got.includes('\r\n\r\n')) {
        s.write(RESPONSE);
        s.end();
      }
    });
    s.on('error', () => {});
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const proxy = net.createServer((c) => {
    const u = net.connect(server.address().port, '127.0.0.1');
    c.on('data', (d) => { chunks.push({ dir: 0, hex: d.toString('hex') }); u.write(d); });
    u.on('data', (d) => { chunks.push({ dir: 1, hex: d.toString('hex') }); c.write(d); });
    c.on('end', () => u.end());
    u.on('end', () => c.end());
    c.on('error', () => {}); u.on('error', () => {});
  });
  await new Promise((r) => proxy.listen(0, '127.0.0.1', r));
  let session;
  const response = await new Promise((resolve, reject) => {
    const s = tls.connect({ port: proxy.address().port, host: '127.0.0.1', servername: 'test.example', rejectUnauthorized: false, ...clientOpts });
    s.on('keylog', (l) => keylog.push(l.toString('latin1').trim()));
    s.on('session', (sess) => { session = sess; });
    let resp = '';
    s.on('secureConnect', () => s.write(REQUEST));
    s.on('data', (d) => { resp += d.toString('latin1'); });
    s.on('end', () => { s.end(); resolve(resp); });
    s.on('error', reject);
  });
  await new Promise((r) => setTimeout(r, 50));
  proxy.close();
  server.close();
  const out = { description, tool: `node ${process.version} (OpenSSL ${process.versions.openssl}) tls client/server via recording proxy`,
    chunks, keylog: keylog.join('\n') + '\n', request: REQUEST, response, ...extra };
  if (name) writeFileSync(join(here, name + '.json'), JSON.stringify(out, null, 1) + '\n');
  return session;
}

const only = process.argv[2];
if (only !== 'legacy') {
await record('tls13-aes128gcm', 'TLS 1.3, TLS_AES_128_GCM_SHA256, ALPN http/1.1, one request/response',
  { minVersion: 'TLSv1.3', ALPNProtocols: ['http/1.1'] , ciphers: 'TLS_AES_128_GCM_SHA256' },
  { minVersion: 'TLSv1.3', ALPNProtocols: ['http/1.1'], ciphers: 'TLS_AES_128_GCM_SHA256' });
await record('tls13-chacha-hrr', 'TLS 1.3, TLS_CHACHA20_POLY1305_SHA256, HelloRetryRequest (server only accepts P-384, client key share X25519)',
  { minVersion: 'TLSv1.3', ecdhCurve: 'P-384', ciphers: 'TLS_CHACHA20_POLY1305_SHA256' },
  { minVersion: 'TLSv1.3', ecdhCurve: 'X25519:P-384', ciphers: 'TLS_CHACHA20_POLY1305_SHA256' });
await record('tls12-ecdhe-gcm', 'TLS 1.2, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 (extended master secret), ALPN h2 not offered',
  { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES256-GCM-SHA384' },
  { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES256-GCM-SHA384' });
const sess = await record('tls12-rsa-cbc', 'TLS 1.2, TLS_RSA_WITH_AES_128_CBC_SHA (RSA key exchange, encrypt-then-MAC, extended master secret); decrypt with server.key',
  { maxVersion: 'TLSv1.2', ciphers: 'AES128-SHA:@SECLEVEL=0' },
  { maxVersion: 'TLSv1.2', ciphers: 'AES128-SHA:@SECLEVEL=0' });
await record('tls12-rsa-cbc-resumed', 'TLS 1.2 abbreviated handshake resuming tls12-rsa-cbc.json (session ticket); decrypt with the session cache filled by tls12-rsa-cbc.json',
  { maxVersion: 'TLSv1.2', ciphers: 'AES128-SHA:@SECLEVEL=0' },
  { maxVersion: 'TLSv1.2', ciphers: 'AES128-SHA:@SECLEVEL=0', session: sess });
}
if (!only || only === 'legacy') {
  await record('tls10-ecdhe-cbc', 'TLS 1.0, TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA (implicit CBC IV chaining, MD5/SHA-1 PRF)',
    { minVersion: 'TLSv1', maxVersion: 'TLSv1', ciphers: 'ECDHE-RSA-AES128-SHA:@SECLEVEL=0' },
    { minVersion: 'TLSv1', maxVersion: 'TLSv1', ciphers: 'ECDHE-RSA-AES128-SHA:@SECLEVEL=0' });
  await record('tls11-rsa-cbc', 'TLS 1.1, TLS_RSA_WITH_AES_256_CBC_SHA (explicit CBC IV); decrypt with server.key',
    { minVersion: 'TLSv1.1', maxVersion: 'TLSv1.1', ciphers: 'AES256-SHA:@SECLEVEL=0' },
    { minVersion: 'TLSv1.1', maxVersion: 'TLSv1.1', ciphers: 'AES256-SHA:@SECLEVEL=0' });
}
