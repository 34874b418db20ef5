// Writes synthetic.pcapng: one frame per encapsulation the decoder supports, built with the test
// builders (compiled to plain JS by make-synthetic.sh, whose output directory is argv[2]), so that
// tshark can serve as the independent oracle for how each frame must be read.
import { writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';

const dir = process.argv[2];
const out = process.argv[3];
const b = await import(pathToFileURL(join(dir, 'test/decode/builders.js')).href);
const h = await import(pathToFileURL(join(dir, 'test/capture/helpers.js')).href);

const payload = Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
const t4 = (sport = 40000, o = {}) => b.ipv4('10.0.0.1', '10.0.0.2', b.tcp(sport, 443, payload, o));
const t6 = (sport = 40000) => b.ipv6('fd00::1', 'fd00::2', b.tcp(sport, 443, payload));
const eth4 = (p, vlans) => b.ethernet(b.ETH_IPV4, p, vlans);
const eth6 = (p) => b.ethernet(b.ETH_IPV6, p);
const outer4 = (g, proto = 47) => eth4(b.ipv4('192.0.2.1', '192.0.2.2', g, { proto }));

/** [linktype, frame] */
const frames = [
  [1, eth4(t4(1), [{ tpid: 0x88a8, vid: 100 }, { tpid: 0x8100, vid: 200 }, { tpid: 0x9100, vid: 300 }])],
  [1, eth4(b.ipv4('192.0.2.1', '192.0.2.2', b.udp(5555, 4789, b.vxlan(42, eth6(t6(2)))), { proto: 17 }))],
  [1, outer4(b.gre(0x0800, t4(3)))],
  [1, outer4(b.gre(0x86dd, t6(4), { checksum: true, key: 7, seq: 9 }))],
  [1, eth6(b.ipv6('2001:db8::1', '2001:db8::2', b.gre(0x6558, eth4(t4(5), [{ tpid: 0x8100, vid: 33 }]), { key: 1 }), 47))],
  [1, outer4(b.gre(0x88be, eth4(t4(6))))],
  [1, outer4(b.gre(0x88be, b.erspan2(eth4(t4(7))), { seq: 1 }))],
  [1, outer4(b.gre(0x22eb, b.erspan3(eth4(t4(8))), { seq: 2 }))],
  [1, outer4(b.gre(0x22eb, b.erspan3(eth4(t4(9)), { subheader: true }), { seq: 3 }))],
  [1, outer4(t4(10), 4)],
  [1, outer4(t6(11), 41)],
  [1, eth6(b.ipv6('2001:db8::1', '2001:db8::2', t4(12), 4))],
  [1, eth6(b.ipv6('2001:db8::1', '2001:db8::2', b.tcp(13, 443, payload), 6,
    [b.extGeneric(0), b.extGeneric(43, 1), b.extGeneric(60), b.extAh(), b.extFragment(0, false)]))],
  [1, eth4(t4(14, { seq: 0xfffffff0, ack: 0x80000001, flags: 0xc2, options: Buffer.from('020405b40101080a0000000100000002', 'hex') }))],
  [1, Buffer.concat([eth4(b.ipv4('10.0.0.1', '10.0.0.2', b.tcp(15, 443, Buffer.alloc(0), { flags: 0x10 }))), Buffer.alloc(6)])],
  [1, b.ethernet(0x8847, b.mpls([100, 200], t4(24)))],
  [1, b.ethernet(0x8847, b.mpls([300], t6(25)))],
  [1, b.ethernet(0x8847, b.mpls([16, 17], Buffer.concat([Buffer.from('001b21000001001b21000002', 'hex'), eth4(t4(26)).subarray(12)])))],
  [1, eth4(b.ipv4('192.0.2.1', '192.0.2.2', b.udp(5555, 6081, b.geneve(0x6558, eth4(t4(27)), 2)), { proto: 17 }))],
  [1, eth6(b.ipv6('2001:db8::1', '2001:db8::2', b.udp(5555, 6081, b.geneve(0x0800, t4(28))), 17))],
  [1, b.ethernet(0x8864, b.pppoe(0x0021, t4(29)))],
  [1, b.ethernet(0x8864, b.pppoe(0x0057, t6(30)))],
  [113, b.sll(b.ETH_IPV4, t4(16))],
  [276, b.sll2(b.ETH_IPV6, t6(17))],
  [101, t6(18)],
  [0, b.bsdNull(2, t4(19), true)],
  [0, b.bsdNull(30, t6(20), true)],
  [108, b.bsdNull(24, t6(21), false)],
  [228, t4(22)],
  [229, t6(23)],
];

const linktypes = [...new Set(frames.map(([lt]) => lt))];
const blocks = [h.shb(true), ...linktypes.map((lt) => h.idb(true, lt))];
let ts = 1_700_000_000_000_000n;
for (const [lt, f] of frames) blocks.push(h.epb(true, linktypes.indexOf(lt), ts++, f));
writeFileSync(out, Buffer.concat(blocks));
