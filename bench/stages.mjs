#!/usr/bin/env node
// Each pipeline stage alone, in one process, on the built dist/ code.
//
//   npm run build && node bench/stages.mjs [--seconds S]
//
// Inputs: the first 100,000 packets of .cache/bench/bulk.pcap (real curl/nginx TLS 1.3 bulk, MTU
// 1500; made by scripts/bench/make-bulk.sh) for decode and reassembly (falls back to the
// committed fixture tls13-64k-http11 when the cache is empty); records, secrets and HTTP messages
// are synthesised here with node:crypto (sealed the way the TLS sender does, so every record
// decrypts and authenticates). Every measurement repeats its loop for ~S seconds (default 1) and
// prints operations/s and, where it means something, MB/s (1 MB = 10^6 bytes) of input.
import { createCipheriv, createHmac, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { CACHE, ROOT, fmt, fmt0, needBuild, printMachine, waitQuiet } from './lib/common.mjs';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '1' } } });
const SECONDS = Number(values.seconds);
needBuild();
const d = (p) => import(new URL(`../dist/src/${p}`, import.meta.url).href);
const { CaptureReader } = await d('capture/index.js');
const { decodePacket, newDecodedPacket } = await d('decode/index.js');
const { TcpFlowTable } = await d('tcp/index.js');
const { suiteById } = await d('tls/crypto/suites.js');
const { RecordDecryptor } = await d('tls/crypto/recordDecryptor.js');
const { masterSecret12, extendedMasterSecret12, keyBlock12 } = await d('tls/crypto/prf.js');
const { trafficKeys13 } = await d('tls/crypto/keySchedule13.js');
const { Http1Analyzer } = await d('analyzers/http/http1.js');
const { HpackDecoder } = await d('analyzers/http/hpack.js');
const { DEFAULT_HTTP_OPTIONS } = await d('analyzers/http/index.js');

printMachine();
waitQuiet();

/** Runs fn (one call = `ops` operations over `bytes` input bytes) for ~SECONDS; prints the rate. */
function bench(name, fn, { ops = 1, bytes = 0, unit = 'ops' } = {}) {
  fn(); // warm-up / JIT
  let n = 0;
  const t0 = process.hrtime.bigint();
  const limit = BigInt(Math.round(SECONDS * 1e9));
  let el = 0n;
  do {
    fn();
    n++;
    el = process.hrtime.bigint() - t0;
  } while (el < limit && n < 1e7);
  const s = Number(el) / 1e9;
  const rate = (n * ops) / s;
  const per = (1e6 * s) / (n * ops);
  console.log(`  ${name.padEnd(46)} ${fmt0(rate).padStart(12)} ${unit}/s  ${fmt(per, 3).padStart(9)} us/${unit.replace(/s$/, '')}` +
    (bytes ? `  ${fmt((n * bytes) / s / 1e6, 1).padStart(8)} MB/s` : ''));
  return rate;
}

// ---------------------------------------------------------------- packets
const capPath = existsSync(`${CACHE}/bulk.pcap`) ? `${CACHE}/bulk.pcap` : `${ROOT}fixtures/https/tls13-64k-http11/capture.pcap`;
const packets = [];
{
  const buf = readFileSync(capPath);
  const sink = { packet(p) { if (packets.length < 100_000) packets.push({ ...p, ts: { ...p.ts } }); }, secrets() {}, anomaly() {} };
  const r = new CaptureReader(sink);
  for (let o = 0; o < buf.length && packets.length < 100_000; o += 1 << 20) r.push(buf.subarray(o, Math.min(buf.length, o + (1 << 20))));
}
const wire = packets.reduce((a, p) => a + p.origLen, 0);
console.log(`packet stages: ${packets.length} packets (${fmt(wire / 1e6, 1)} MB on the wire) from ${capPath.replace(ROOT, '')}`);
const dp = newDecodedPacket();
const ign = { anomaly() {} };
bench('decode (Ethernet/IPv4/TCP)', () => { for (const p of packets) decodePacket(p, dp, ign); }, { ops: packets.length, bytes: wire, unit: 'packets' });
const nullHandler = { onData() {}, onGap() {}, onEnd() {}, onClose() {} };
bench('decode + flow table + reassembly', () => {
  const t = new TcpFlowTable(() => nullHandler, ign, {});
  for (const p of packets) if (decodePacket(p, dp, ign) === 'tcp') t.processSegment(dp, p.ts);
  t.closeAll(packets[packets.length - 1].ts);
}, { ops: packets.length, bytes: wire, unit: 'packets' });

// ---------------------------------------------------------------- record decryption
console.log('record decryption (RecordDecryptor.decrypt, one record per call, fresh sequence numbers):');
const u64 = (n) => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(n)); return b; };
function sealer(suite, tls13) {
  const keys = { key: randomBytes(suite.keyLen), iv: randomBytes(tls13 ? 12 : suite.fixedIvLen), macKey: randomBytes(suite.macLen) };
  const aeadOpts = { authTagLength: suite.tagLen };
  return {
    keys,
    seal(seq, content) {
      if (suite.kind === 'cbc') { // TLS 1.2 MAC-then-encrypt, RFC 5246 §6.2.3.2
        const hdr = Buffer.from([23, 3, 3, content.length >> 8, content.length & 255]);
        const mac = createHmac(suite.macHash, keys.macKey).update(Buffer.concat([u64(seq), hdr])).update(content).digest();
        const padLen = 15 - ((content.length + mac.length) % 16);
        const pt = Buffer.concat([content, mac, Buffer.alloc(padLen + 1, padLen)]);
        const iv = randomBytes(16);
        const c = createCipheriv(suite.cipher, keys.key, iv); c.setAutoPadding(false);
        const frag = Buffer.concat([iv, c.update(pt), c.final()]);
        return [Buffer.from([23, 3, 3, frag.length >> 8, frag.length & 255]), frag];
      }
      if (tls13) { // RFC 8446 §5.2
        const inner = Buffer.concat([content, Buffer.from([23])]);
        const len = inner.length + suite.tagLen;
        const hdr = Buffer.from([23, 3, 3, len >> 8, len & 255]);
        const nonce = Buffer.from(keys.iv); const s = u64(seq); for (let i = 0; i < 8; i++) nonce[4 + i] ^= s[i];
        const c = createCipheriv(suite.cipher, keys.key, nonce, aeadOpts);
        if (suite.cipher.endsWith('ccm')) c.setAAD(hdr, { plaintextLength: inner.length }); else c.setAAD(hdr);
        const ct = Buffer.concat([c.update(inner), c.final()]);
        return [hdr, Buffer.concat([ct, c.getAuthTag()])];
      }
      // TLS 1.2 AEAD, RFC 5288: nonce = salt || explicit(seq)
      const explicit = u64(seq);
      const nonce = suite.explicitNonceLen ? Buffer.concat([keys.iv, explicit]) : (() => { const n = Buffer.from(keys.iv); for (let i = 0; i < 8; i++) n[4 + i] ^= explicit[i]; return n; })();
      const aad = Buffer.concat([u64(seq), Buffer.from([23, 3, 3, content.length >> 8, content.length & 255])]);
      const c = createCipheriv(suite.cipher, keys.key, nonce, aeadOpts);
      if (suite.cipher.endsWith('ccm')) c.setAAD(aad, { plaintextLength: content.length }); else c.setAAD(aad);
      const ct = Buffer.concat([c.update(content), c.final()]);
      const frag = Buffer.concat([suite.explicitNonceLen ? explicit : Buffer.alloc(0), ct, c.getAuthTag()]);
      return [Buffer.from([23, 3, 3, frag.length >> 8, frag.length & 255]), frag];
    },
  };
}
const SUITES = [
  [0x1301, true], [0x1302, true], [0x1303, true], [0x1304, true],
  [0xc02f, false], [0xcca8, false], [0xc027, false],
];
for (const size of [1400, 16384]) {
  for (const [id, tls13] of SUITES) {
    const suite = suiteById(id);
    const s = sealer(suite, tls13);
    const N = size > 4096 ? 64 : 512;
    const content = randomBytes(size);
    const recs = Array.from({ length: N }, (_, i) => s.seal(i, content));
    let ok = 0;
    bench(`${suite.name} ${size} B`, () => {
      const dec = new RecordDecryptor(suite, s.keys, { tls13, encryptThenMac: false });
      for (const [h, f] of recs) if (dec.decrypt(h, f).ok) ok++;
    }, { ops: N, bytes: N * size, unit: 'records' });
    if (ok === 0) console.log('    (!) no record decrypted: the benchmark sealer is wrong');
  }
}

// ---------------------------------------------------------------- key derivation
console.log('key derivation per session (secrets from a key log -> both directions\' record decryptors):');
{
  const s12 = suiteById(0xc02f);
  const pre = randomBytes(32), cr = randomBytes(32), sr = randomBytes(32), hash = randomBytes(32);
  bench('TLS 1.2 EMS master secret (PRF) + key block', () => { const ms = extendedMasterSecret12(s12, pre, hash); keyBlock12(s12, ms, cr, sr); }, { unit: 'sessions' });
  const master = randomBytes(48);
  bench('TLS 1.2 key block from CLIENT_RANDOM + 2 decryptors', () => {
    const kb = keyBlock12(s12, master, cr, sr);
    new RecordDecryptor(s12, kb.client, { tls13: false, encryptThenMac: false });
    new RecordDecryptor(s12, kb.server, { tls13: false, encryptThenMac: false });
  }, { unit: 'sessions' });
  void masterSecret12;
  const s13 = suiteById(0x1301);
  const secrets = [randomBytes(32), randomBytes(32), randomBytes(32), randomBytes(32)];
  bench('TLS 1.3 4 traffic secrets -> key/iv + 4 decryptors', () => {
    for (const sec of secrets) new RecordDecryptor(s13, trafficKeys13(s13, sec), { tls13: true, encryptThenMac: false });
  }, { unit: 'sessions' });
}

// ---------------------------------------------------------------- HTTP
console.log('HTTP:');
{
  const body = Buffer.alloc(2048, 0x61);
  const req = Buffer.from('GET /index.html?n=1 HTTP/1.1\r\nHost: www.tlsdecrypt.test\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\nAccept-Language: en\r\nCookie: a=b; c=d\r\n\r\n');
  const resp = Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sun, 22 Nov 2026 00:51:45 GMT\r\nContent-Type: text/html\r\nContent-Length: ${body.length}\r\nLast-Modified: Sun, 22 Nov 2026 00:51:34 GMT\r\nConnection: keep-alive\r\nETag: "6b023c96-82a"\r\nAccept-Ranges: bytes\r\n\r\n`), body]);
  let events = 0;
  const sink = { emit() { events++; } };
  const ts = { sec: 1, nsec: 0 };
  const N = 100;
  bench('HTTP/1.1 request+response (2 KB body), keep-alive', () => {
    const a = new Http1Analyzer(sink, ign, { ...DEFAULT_HTTP_OPTIONS, bodyCaptureBytes: 0 });
    for (let i = 0; i < N; i++) { a.onData(0, req, ts); a.onData(1, resp, ts); }
  }, { ops: N, bytes: N * (req.length + resp.length), unit: 'exchanges' });
  bench('  same with body capture (default options)', () => {
    const a = new Http1Analyzer(sink, ign, DEFAULT_HTTP_OPTIONS);
    for (let i = 0; i < N; i++) { a.onData(0, req, ts); a.onData(1, resp, ts); }
  }, { ops: N, bytes: N * (req.length + resp.length), unit: 'exchanges' });
  if (!events) console.log('    (!) no HTTP events: the benchmark input is wrong');

  // HPACK (RFC 7541): a browser-like request block; first block on a connection inserts every
  // field into the dynamic table (literal with incremental indexing, new name: §6.2.1), later
  // blocks on the connection are all indexed references (§6.1).
  const fields = [[':method', 'GET'], [':scheme', 'https'], [':authority', 'www.tlsdecrypt.test'], [':path', '/data.json?id=7'],
    ['user-agent', 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36'],
    ['accept', 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'], ['accept-language', 'en-US,en;q=0.9'],
    ['accept-encoding', 'gzip, deflate, br'], ['cookie', 'session=0123456789abcdef0123456789abcdef; theme=dark'], ['x-request-id', '5f0e6c2a-8d51-4a3c-9d2e-1b7f6a9c0e11']];
  const str = (s) => { const b = Buffer.from(s); if (b.length > 126) throw new Error('long'); return Buffer.concat([Buffer.from([b.length]), b]); };
  const first = Buffer.concat(fields.map(([n, v]) => Buffer.concat([Buffer.from([0x40]), str(n), str(v)])));
  const later = Buffer.from(fields.map((_, i) => 0x80 | (62 + fields.length - 1 - i))); // newest entry is 62
  let hn = 0;
  const onH = () => { hn++; };
  bench('HPACK first block (10 literal fields, indexing)', () => { new HpackDecoder().decode(first, onH); }, { bytes: first.length, unit: 'blocks' });
  const dec = new HpackDecoder();
  dec.decode(first, onH);
  bench('HPACK later block (10 indexed fields)', () => { if (dec.decode(later, onH)) throw new Error('hpack error'); }, { bytes: later.length, unit: 'blocks' });
}
