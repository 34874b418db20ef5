// Do per-record AES-GCM contexts of node:crypto scale across the threads of one process as they do
// across processes? `node bench/crypto-contexts.mjs thread|proc N RECORD_BYTES [ecb]` (bench/RESULTS.md, "16 cores").
// N worker threads (or processes) each doing AES-128-GCM record decryptions in a loop for 3 s:
// does node:crypto's per-record context creation scale across threads of one process?
import { Worker, isMainThread, workerData, parentPort } from 'node:worker_threads';
import crypto from 'node:crypto';
const mode = process.argv[2] ?? 'thread', N = Number(process.argv[3] ?? 1), size = Number(process.argv[4] ?? 16384), reuse = process.argv[5] === 'ecb';
function work(ms) {
  const key = crypto.randomBytes(16), iv = crypto.randomBytes(12), pt = crypto.randomBytes(size);
  const c = crypto.createCipheriv('aes-128-gcm', key, iv); const ct = Buffer.concat([c.update(pt), c.final()]); const tag = c.getAuthTag();
  const ecb = crypto.createCipheriv('aes-128-ecb', key, null); ecb.setAutoPadding(false);
  const ctr = Buffer.alloc(size);
  let n = 0; const end = Date.now() + ms;
  while (Date.now() < end) for (let i = 0; i < 50; i++) {
    if (reuse) { ecb.update(ctr); } else { const d = crypto.createDecipheriv('aes-128-gcm', key, iv); d.setAuthTag(tag); d.update(ct); d.final(); }
    n++;
  }
  return n;
}
if (mode === 'child') { process.stdout.write(String(work(3000))); }
else if (isMainThread) {
  const t0 = Date.now(); let total = 0;
  if (mode === 'thread') {
    const rs = await Promise.all(Array.from({ length: N }, () => new Promise((res) => { const w = new Worker(new URL(import.meta.url), { workerData: 3000, argv: [mode, N, size, process.argv[5] ?? ''] }); w.on('message', res); })));
    total = rs.reduce((a, b) => a + b, 0);
  } else {
    const { spawn } = await import('node:child_process');
    const rs = await Promise.all(Array.from({ length: N }, () => new Promise((res) => { const p = spawn(process.execPath, [new URL(import.meta.url).pathname, 'child', N, size, process.argv[5] ?? '']); let o = ''; p.stdout.on('data', (d) => o += d); p.on('close', () => res(Number(o))); })));
    total = rs.reduce((a, b) => a + b, 0);
  }
  console.log(`${mode} x${N} ${size} B ${reuse ? 'ecb-reused' : 'gcm-ctx-per-record'}: ${(total / 3).toFixed(0)} records/s total, ${(total / 3 / N).toFixed(0)} per ${mode}, ${(total * size * 8 / 3 / 1e9).toFixed(2)} Gbps`);
} else { parentPort.postMessage(work(workerData)); }
