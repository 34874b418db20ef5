#!/usr/bin/env node
// A Geneve tunnel endpoint in user space, for kernels without the geneve device (like this
// project's build machines): reads the pcap stream of `tcpdump -U -w -` on stdin and sends each
// captured frame as a Geneve datagram (RFC 8926: version 0, one non-critical option, Protocol
// Type 0x6558 = Ethernet, VNI given) to HOST:PORT, as AWS Gateway Load Balancer does with one
// TLV option of its own class. Used by test/mirror/mirror-netns.test.ts when
// `ip link add ... type geneve` is not available.
//
//   tcpdump -U -w - -i IF | node geneve-encap.mjs HOST PORT VNI
import { createSocket } from 'node:dgram';

const [host, port, vni] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
const sock = createSocket('udp4');
// 8-byte base header + one 8-byte option (class 0x0108, type 0x01 non-critical, 1 word of data)
const header = Buffer.from([0x02, 0x00, 0x65, 0x58, (vni >> 16) & 0xff, (vni >> 8) & 0xff, vni & 0xff, 0, 0x01, 0x08, 0x01, 0x01, 0xde, 0xad, 0xbe, 0xef]);

let buf = Buffer.alloc(0);
let le = true;
let global = false;
process.stdin.on('data', (chunk) => {
  buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
  let off = 0;
  if (!global) {
    if (buf.length < 24) return;
    const magic = buf.readUInt32LE(0);
    le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
    global = true;
    off = 24;
  }
  for (;;) {
    if (buf.length - off < 16) break;
    const incl = le ? buf.readUInt32LE(off + 8) : buf.readUInt32BE(off + 8);
    if (buf.length - off < 16 + incl) break;
    const frame = buf.subarray(off + 16, off + 16 + incl);
    sock.send(Buffer.concat([header, frame]), port, host);
    off += 16 + incl;
  }
  buf = buf.subarray(off);
});
process.stdin.on('end', () => setTimeout(() => sock.close(), 100));
process.on('SIGTERM', () => process.exit(0));
