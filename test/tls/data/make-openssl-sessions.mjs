// Records TLS sessions between `openssl s_client` and `openssl s_server` on 127.0.0.1 through a
// recording TCP proxy (for what Node's tls API cannot do: KeyUpdate, 0-RTT early data,
// renegotiation). Run once:
//   node test/tls/data/make-openssl-sessions.mjs [keyupdate|early|renegotiation]
// Output format as make-sessions.mjs; `request`/`response` hold the application bytes each side
// sent (the oracle), keylog is what s_client wrote with -keylogfile.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'tlsrec-'));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const opensslVersion = execFileSync('openssl', ['version']).toString().trim();

async function withProxy(serverPort, fn) {
  const chunks = [];
  const proxy = net.createServer((c) => {
    const u = net.connect(serverPort, '127.0.0.1');
    c.on('data', (d) => { chunks.push({ dir: 0, hex: d.toString('hex') }); u.write(d); });
    u.on('data', (d) => { chunks.push({ dir: 1, hex: d.toString('hex') }); c.write(d); });
    c.on('end', () => u.end()); u.on('end', () => c.end());
    c.on('error', () => {}); u.on('error', () => {});
  });
  await new Promise((r) => proxy.listen(0, '127.0.0.1', r));
  await fn(proxy.address().port);
  await sleep(200);
  proxy.close();
  return chunks;
}

function startServer(port, extra) {
  const s = spawn('openssl', ['s_server', '-accept', String(port), '-key', join(here, 'server.key'), '-cert', join(here, 'server.crt'),
    '-tls1_3', '-ign_eof', ...extra], { stdio: ['pipe', 'pipe', 'pipe'] });
  s.stdout.on('data', () => {}); s.stderr.on('data', () => {});
  return s;
}

async function keyUpdate() {
  const port = 20000 + Math.floor(Math.random() * 20000);
  const server = startServer(port, []);
  await sleep(500);
  const keylog = join(tmp, 'ku.keys');
  const request = 'hello one\nhello two\nhello three\n';
  const response = 'server one\nserver two\n';
  const chunks = await withProxy(port, async (p) => {
    const c = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${p}`, '-tls1_3', '-keylogfile', keylog, '-servername', 'test.example'], { stdio: ['pipe', 'pipe', 'pipe'] });
    c.stdout.on('data', () => {}); c.stderr.on('data', () => {});
    await sleep(700);
    c.stdin.write('hello one\n'); await sleep(300);
    server.stdin.write('server one\n'); await sleep(300);
    c.stdin.write('k\n'); await sleep(300);          // client KeyUpdate (update_not_requested)
    c.stdin.write('hello two\n'); await sleep(300);
    c.stdin.write('K\n'); await sleep(300);          // client KeyUpdate (update_requested): server updates too
    server.stdin.write('server two\n'); await sleep(300);
    c.stdin.write('hello three\n'); await sleep(300);
    c.stdin.write('Q\n'); await sleep(500);
    c.kill();
  });
  server.kill();
  writeFileSync(join(here, 'tls13-keyupdate.json'), JSON.stringify({
    description: 'TLS 1.3 with client KeyUpdate (k), client KeyUpdate requesting the server to update (K) and the server KeyUpdate; openssl s_client/s_server',
    tool: opensslVersion, chunks, keylog: readFileSync(keylog, 'latin1'), request, response }, null, 1) + '\n');
}

async function earlyData() {
  const port = 20000 + Math.floor(Math.random() * 20000);
  const server = startServer(port, ['-early_data']);
  await sleep(500);
  const sess = join(tmp, 'sess.pem');
  const keylog1 = join(tmp, 'ed1.keys');
  const keylog2 = join(tmp, 'ed2.keys');
  const early = join(tmp, 'early.txt');
  const earlyText = 'early data line\n';
  writeFileSync(early, earlyText);
  // First connection: get a ticket allowing early data.
  await withProxy(port, async (p) => {
    const c = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${p}`, '-tls1_3', '-sess_out', sess, '-keylogfile', keylog1], { stdio: ['pipe', 'pipe', 'pipe'] });
    c.stdout.on('data', () => {}); c.stderr.on('data', () => {});
    await sleep(800);
    c.stdin.write('first\n'); await sleep(300);
    c.stdin.write('Q\n'); await sleep(300); c.kill();
  });
  const request = earlyText + 'after handshake\n';
  const response = 'server reply\n';
  const chunks = await withProxy(port, async (p) => {
    const c = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${p}`, '-tls1_3', '-sess_in', sess, '-early_data', early, '-keylogfile', keylog2], { stdio: ['pipe', 'pipe', 'pipe'] });
    c.stdout.on('data', () => {}); c.stderr.on('data', () => {});
    await sleep(800);
    c.stdin.write('after handshake\n'); await sleep(300);
    server.stdin.write('server reply\n'); await sleep(300);
    c.stdin.write('Q\n'); await sleep(300); c.kill();
  });
  // Third connection reusing the same ticket: OpenSSL's anti-replay protection rejects the 0-RTT
  // data (the ticket was already used), the handshake falls back to 1-RTT.
  const keylog3 = join(tmp, 'ed3.keys');
  const chunks3 = await withProxy(port, async (p) => {
    const c = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${p}`, '-tls1_3', '-sess_in', sess, '-early_data', early, '-keylogfile', keylog3], { stdio: ['pipe', 'pipe', 'pipe'] });
    c.stdout.on('data', () => {}); c.stderr.on('data', () => {});
    await sleep(800);
    c.stdin.write('after handshake\n'); await sleep(300);
    server.stdin.write('server reply\n'); await sleep(300);
    c.stdin.write('Q\n'); await sleep(300); c.kill();
  });
  server.kill();
  writeFileSync(join(here, 'tls13-early-data-rejected.json'), JSON.stringify({
    description: 'TLS 1.3 PSK resumption whose 0-RTT data the server rejected (ticket replay): the early record is skipped',
    tool: opensslVersion, chunks: chunks3, keylog: readFileSync(keylog3, 'latin1'), request: 'after handshake\n', response }, null, 1) + '\n');
  writeFileSync(join(here, 'tls13-early-data.json'), JSON.stringify({
    description: 'TLS 1.3 PSK resumption with accepted 0-RTT early data (openssl s_client -sess_in -early_data; s_server -early_data)',
    tool: opensslVersion, chunks, keylog: readFileSync(keylog2, 'latin1'), request, response }, null, 1) + '\n');
}

async function renegotiation() {
  const port = 20000 + Math.floor(Math.random() * 20000);
  const s = spawn('openssl', ['s_server', '-accept', String(port), '-key', join(here, 'server.key'), '-cert', join(here, 'server.crt'),
    '-tls1_2', '-ign_eof', '-cipher', 'ECDHE-RSA-AES128-GCM-SHA256'], { stdio: ['pipe', 'pipe', 'pipe'] });
  s.stdout.on('data', () => {}); s.stderr.on('data', () => {});
  await sleep(500);
  const keylog = join(tmp, 'reneg.keys');
  const chunks = await withProxy(port, async (p) => {
    const c = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${p}`, '-tls1_2', '-keylogfile', keylog], { stdio: ['pipe', 'pipe', 'pipe'] });
    c.stdout.on('data', () => {}); c.stderr.on('data', () => {});
    await sleep(700);
    c.stdin.write('before renegotiation\n'); await sleep(300);
    s.stdin.write('server before\n'); await sleep(300);
    s.stdin.write('R\n'); await sleep(800);           // server-initiated renegotiation (HelloRequest)
    c.stdin.write('after renegotiation\n'); await sleep(300);
    s.stdin.write('server after\n'); await sleep(300);
    c.stdin.write('Q\n'); await sleep(300); c.kill();
  });
  s.kill();
  writeFileSync(join(here, 'tls12-renegotiation.json'), JSON.stringify({
    description: 'TLS 1.2 ECDHE-RSA-AES128-GCM-SHA256 with a server-initiated secure renegotiation (s_server R) between application data',
    tool: opensslVersion, chunks, keylog: readFileSync(keylog, 'latin1'),
    request: 'before renegotiation\nafter renegotiation\n', response: 'server before\nserver after\n' }, null, 1) + '\n');
}

const only = process.argv[2];
if (!only || only === 'keyupdate') await keyUpdate();
if (!only || only === 'early') await earlyData();
if (!only || only === 'renegotiation') await renegotiation();
