/** Small frame builders for decoder tests: each writes one header in front of a payload. */

export const ETH_IPV4 = 0x0800;
export const ETH_IPV6 = 0x86dd;

export function ip4(a: string): Buffer {
  return Buffer.from(a.split('.').map(Number));
}

/** Expands an IPv6 text address (with at most one "::") into 16 bytes. */
export function ip6(a: string): Buffer {
  const [head, tail] = a.includes('::') ? a.split('::') : [a, undefined];
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), 2 * i));
  return b;
}

export function ethernet(type: number, payload: Buffer, vlans: { tpid: number; vid: number }[] = []): Buffer {
  const h = Buffer.alloc(12 + 4 * vlans.length + 2);
  Buffer.from('020000000001020000000002', 'hex').copy(h, 0);
  let o = 12;
  for (const v of vlans) {
    h.writeUInt16BE(v.tpid, o);
    h.writeUInt16BE(v.vid | 0x2000, o + 2); // priority bits set: must be masked off
    o += 4;
  }
  h.writeUInt16BE(type, o);
  return Buffer.concat([h, payload]);
}

export interface Ip4Opts {
  proto?: number;
  flagsFrag?: number;
  totalLength?: number;
  options?: Buffer;
}

export function ipv4(src: string, dst: string, payload: Buffer, o: Ip4Opts = {}): Buffer {
  const opts = o.options ?? Buffer.alloc(0);
  const ihl = 20 + opts.length;
  const h = Buffer.alloc(20);
  h[0] = 0x40 | (ihl / 4);
  h.writeUInt16BE(o.totalLength ?? ihl + payload.length, 2);
  h.writeUInt16BE(o.flagsFrag ?? 0x4000, 6); // DF
  h[8] = 64;
  h[9] = o.proto ?? 6;
  ip4(src).copy(h, 12);
  ip4(dst).copy(h, 16);
  return Buffer.concat([h, opts, payload]);
}

/** IPv6 with optional extension headers, each given as [type, body-after-next-and-len] */
export function ipv6(src: string, dst: string, payload: Buffer, proto = 6, ext: { type: number; bytes: Buffer }[] = []): Buffer {
  const chain: Buffer[] = [];
  for (let i = 0; i < ext.length; i++) {
    const next = i + 1 < ext.length ? ext[i + 1].type : proto;
    const b = Buffer.from(ext[i].bytes);
    b[0] = next;
    chain.push(b);
  }
  const rest = Buffer.concat([...chain, payload]);
  const h = Buffer.alloc(40);
  h[0] = 0x60;
  h.writeUInt16BE(rest.length, 4);
  h[6] = ext.length > 0 ? ext[0].type : proto;
  h[7] = 64;
  ip6(src).copy(h, 8);
  ip6(dst).copy(h, 24);
  return Buffer.concat([h, rest]);
}

/** A generic extension header of 8*(n+1) bytes (hop-by-hop, routing, destination options). */
export function extGeneric(type: number, units = 0): { type: number; bytes: Buffer } {
  const b = Buffer.alloc(8 * (units + 1));
  b[1] = units;
  return { type, bytes: b };
}

export function extFragment(offset: number, more: boolean): { type: number; bytes: Buffer } {
  const b = Buffer.alloc(8);
  b.writeUInt16BE((offset << 3) | (more ? 1 : 0), 2);
  return { type: 44, bytes: b };
}

/** AH (RFC 4302): payload length in 4-octet units minus 2; 12 bytes header + 12 bytes ICV. */
export function extAh(): { type: number; bytes: Buffer } {
  const b = Buffer.alloc(24);
  b[1] = 24 / 4 - 2;
  return { type: 51, bytes: b };
}

export interface TcpOpts {
  seq?: number;
  ack?: number;
  flags?: number;
  window?: number;
  options?: Buffer;
  dataOffset?: number;
}

export function tcp(sport: number, dport: number, payload: Buffer, o: TcpOpts = {}): Buffer {
  const opts = o.options ?? Buffer.alloc(0);
  const h = Buffer.alloc(20);
  h.writeUInt16BE(sport, 0);
  h.writeUInt16BE(dport, 2);
  h.writeUInt32BE(o.seq ?? 1000, 4);
  h.writeUInt32BE(o.ack ?? 2000, 8);
  h[12] = (o.dataOffset ?? (20 + opts.length) / 4) << 4;
  h[13] = o.flags ?? 0x18;
  h.writeUInt16BE(o.window ?? 512, 14);
  return Buffer.concat([h, opts, payload]);
}

export function udp(sport: number, dport: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(sport, 0);
  h.writeUInt16BE(dport, 2);
  h.writeUInt16BE(8 + payload.length, 4);
  return Buffer.concat([h, payload]);
}

export function vxlan(vni: number, frame: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h[0] = 0x08;
  h.writeUIntBE(vni, 4, 3);
  return Buffer.concat([h, frame]);
}

export function gre(proto: number, payload: Buffer, o: { checksum?: boolean; key?: number; seq?: number } = {}): Buffer {
  let flags = 0;
  const words: Buffer[] = [];
  if (o.checksum) {
    flags |= 0x8000;
    words.push(Buffer.alloc(4, 0xcc));
  }
  if (o.key !== undefined) {
    flags |= 0x2000;
    const k = Buffer.alloc(4);
    k.writeUInt32BE(o.key);
    words.push(k);
  }
  if (o.seq !== undefined) {
    flags |= 0x1000;
    const s = Buffer.alloc(4);
    s.writeUInt32BE(o.seq);
    words.push(s);
  }
  const h = Buffer.alloc(4);
  h.writeUInt16BE(flags, 0);
  h.writeUInt16BE(proto, 2);
  return Buffer.concat([h, ...words, payload]);
}

export function erspan2(frame: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(0x1000 | 10, 0); // version 1, VLAN 10
  h.writeUInt16BE(0x0123, 2); // session id
  return Buffer.concat([h, frame]);
}

export function erspan3(frame: Buffer, o: { subheader?: boolean; frameType?: number } = {}): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(0x2000 | 10, 0); // version 2, VLAN 10
  h.writeUInt32BE(0xdeadbeef, 4); // timestamp
  h.writeUInt16BE(((o.frameType ?? 0) << 10) | (0x15 << 4), 10); // FT, HW id
  if (o.subheader) h[11] |= 1;
  return Buffer.concat([h, o.subheader ? Buffer.alloc(8, 0xee) : Buffer.alloc(0), frame]);
}

export function sll(proto: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt16BE(0, 0); // to us
  h.writeUInt16BE(1, 2); // ARPHRD_ETHER
  h.writeUInt16BE(6, 4);
  h.writeUInt16BE(proto, 14);
  return Buffer.concat([h, payload]);
}

export function sll2(proto: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt16BE(proto, 0);
  h.writeUInt32BE(3, 4); // interface index
  h.writeUInt16BE(1, 8);
  h[11] = 6;
  return Buffer.concat([h, payload]);
}

export function bsdNull(family: number, payload: Buffer, le: boolean): Buffer {
  const h = Buffer.alloc(4);
  if (le) h.writeUInt32LE(family);
  else h.writeUInt32BE(family);
  return Buffer.concat([h, payload]);
}

/** MPLS label stack (RFC 3032): the last label gets the bottom-of-stack bit. */
export function mpls(labels: number[], payload: Buffer): Buffer {
  const h = Buffer.alloc(4 * labels.length);
  labels.forEach((l, i) => h.writeUInt32BE(((l << 12) | (i === labels.length - 1 ? 0x100 : 0) | 64) >>> 0, 4 * i));
  return Buffer.concat([h, payload]);
}

/** Geneve (RFC 8926) with `optWords` 4-byte words of options. */
export function geneve(proto: number, payload: Buffer, optWords = 0): Buffer {
  const h = Buffer.alloc(8 + 4 * optWords);
  h[0] = optWords;
  h.writeUInt16BE(proto, 2);
  h.writeUIntBE(77, 4, 3);
  if (optWords > 0) {
    h.writeUInt16BE(0x0108, 8); // option class
    h[10] = 1; // type
    h[11] = optWords - 1; // length in words
  }
  return Buffer.concat([h, payload]);
}

/** PPPoE session header (RFC 2516) plus the PPP protocol field. */
export function pppoe(pppProto: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h[0] = 0x11;
  h.writeUInt16BE(0x1234, 2);
  h.writeUInt16BE(payload.length + 2, 4);
  h.writeUInt16BE(pppProto, 6);
  return Buffer.concat([h, payload]);
}
