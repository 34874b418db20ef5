#!/usr/bin/env node
// Why the packets publishers reuse record buffers (src/kafka/formats.ts BufferPool): 300 MiB
// written to a local TCP sink (another process) as 512 KiB buffers, either a fresh
// Buffer.allocUnsafe per write (above glibc's mmap threshold: a fresh mapping whose pages fault
// when filled, unmapped when the GC frees it) or the same buffer again. CPU of this process.
//
//   node bench/buffer-reuse.mjs            (runs fresh, reuse, fresh, reuse)
import net from 'node:net';
import { fork } from 'node:child_process';

if (process.argv[2] === 'sink') {
  const srv = net.createServer((s) => {
    let n = 0;
    s.on('data', (d) => (n += d.length));
    s.on('end', () => process.send(n));
  });
  srv.listen(0, '127.0.0.1', () => process.send({ port: srv.address().port }));
} else {
  for (const mode of ['fresh', 'reuse', 'fresh', 'reuse']) {
    const child = fork(process.argv[1], ['sink']);
    const port = await new Promise((r) => child.once('message', (m) => r(m.port)));
    const s = net.connect(port, '127.0.0.1');
    await new Promise((r) => s.once('connect', r));
    const reuse = Buffer.allocUnsafe(512 * 1024).fill(7);
    const c0 = process.cpuUsage();
    for (let i = 0; i < 600; i++) {
      const b = mode === 'fresh' ? Buffer.allocUnsafe(512 * 1024).fill(i) : reuse;
      s.write(b);
      if (s.writableLength > 4 << 20) await new Promise((r) => s.once('drain', r));
    }
    s.end();
    await new Promise((r) => child.once('message', r));
    const c = process.cpuUsage(c0);
    console.log(`${mode}: user ${(c.user / 1e3).toFixed(0)} ms, system ${(c.system / 1e3).toFixed(0)} ms for 300 MiB`);
    child.kill();
  }
}
