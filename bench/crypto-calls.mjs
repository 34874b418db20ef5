#!/usr/bin/env node
// node:crypto calls per TLS session: one replay of a capture with node:crypto's context-making
// and one-shot functions counted (patched before the engine's modules load), divided by the
// sessions. Each createDecipheriv / createHash / createHmac is a new OpenSSL context; `hash` is
// the one-shot digest (no context object).
//
//   npm run build && node bench/crypto-calls.mjs [--capture NAME]   (.cache/bench/NAME.pcap + NAME.keys.log; default nosni)
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { parseArgs } from 'node:util';
import { CACHE, need, needBuild } from './lib/common.mjs';

const { values } = parseArgs({ options: { capture: { type: 'string', default: 'nosni' } } });
needBuild();
const capture = `${CACHE}/${values.capture}.pcap`, keylog = `${CACHE}/${values.capture}.keys.log`;
need(capture, 'make it with scripts/bench/make-bulk.sh');
const crypto = createRequire(import.meta.url)('node:crypto');
const counts = {};
for (const name of ['createDecipheriv', 'createCipheriv', 'createHash', 'createHmac', 'hash', 'hkdfSync', 'createSecretKey', 'X509Certificate']) {
  const orig = crypto[name];
  if (typeof orig !== 'function') continue;
  crypto[name] = function counted(...a) {
    const k = typeof a[0] === 'string' ? `${name} ${a[0]}` : name;
    counts[k] = (counts[k] ?? 0) + 1;
    return new.target ? new orig(...a) : orig.apply(this, a);
  };
}
syncBuiltinESMExports(); // the engine's `import { createDecipheriv } from 'node:crypto'` see the counters
const dist = new URL('../dist/src/', import.meta.url);
const { replay } = await import(new URL('pipeline/replay.js', dist).href);
const { NdjsonWriter } = await import(new URL('pipeline/output.js', dist).href);
const out = await NdjsonWriter.toFile('/dev/null');
const stats = await replay({ capture, keylogs: [keylog], rsaKeys: [], engine: {} }, out);
await out.close();
console.log(`${values.capture}: ${stats.tlsFlows} TLS sessions, ${out.count} events, ${stats.decryptedBytes} bytes decrypted`);
for (const [k, v] of Object.entries(counts).sort((a, b) => b[1] - a[1])) {
  console.log(`${String(v).padStart(9)} = ${(v / stats.tlsFlows).toFixed(2).padStart(6)} per session  ${k}`);
}
