#!/usr/bin/env node
// The floor of Node's dgram receive path: a UDP socket whose 'message' handler only counts, fed
// with the same VXLAN datagrams as bench/mirror.mjs --sender own. Prints, every 2 s, the datagrams
// received and this process's CPU per datagram (what any receiver in Node 20 pays before its own
// work: recvmsg, a Buffer per datagram, the event).
//
//   sudo bash test/mirror/netns.sh up h13b
//   node bench/udp-floor.mjs [HOST] [PORT] &      (default 10.93.2.2 4789)
//   ip netns exec h13bsrv .cache/bench/vxlan-send .cache/bench/mirror-1400.pcap 10.93.2.2 4789 600 4 42 10.93.2.1
import { createSocket } from 'node:dgram';

const host = process.argv[2] ?? '10.93.2.2';
const port = Number(process.argv[3] ?? 4789);
const s = createSocket({ type: 'udp4', recvBufferSize: 32 << 20 });
let n = 0;
s.on('message', () => {
  n++;
});
process.on('SIGINT', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
s.bind(port, host, () => console.log(`listening on ${host}:${port}, SO_RCVBUF ${s.getRecvBufferSize()}`));
let c0 = process.cpuUsage();
let n0 = 0;
setInterval(() => {
  const c = process.cpuUsage(c0);
  if (n > n0) console.log(`${n - n0} datagrams, ${((c.user + c.system) / (n - n0)).toFixed(2)} us CPU per datagram (user ${(c.user / 1e6).toFixed(2)} s, system ${(c.system / 1e6).toFixed(2)} s)`);
  c0 = process.cpuUsage();
  n0 = n;
}, 2000);
