import type { AnomalySink, DecodedPacket, RawPacket } from '../types.js';

/**
 * Link / IP / tunnel / TCP decoding down to the innermost TCP segment.
 *
 * Design (after gopacket): each layer is a function chosen from a table keyed by link type,
 * EtherType or IP protocol, so adding an encapsulation is one table entry. The caller owns the
 * DecodedPacket and reuses it; the only allocation per packet is the payload view into the frame.
 * The addresses are copied into the DecodedPacket's own address views (addrScratch, set by
 * newDecodedPacket; without it they are two more views into the frame): either way they are only
 * valid until the next decode.
 *
 * Tunnels (out.tunnels, outermost first): 'vxlan', 'geneve', 'gre', 'erspan' (after 'gre'),
 * 'ipip' (IPv4 or IPv6 in IPv4 or IPv6), 'mpls'. The addresses, ports and payload are always those
 * of the innermost packet.
 *
 * Outcomes: 'tcp' means `out` holds a TCP segment. The other outcomes are why not; only input that
 * is truly malformed or cut short is also reported to the AnomalySink (ordinary non-TCP traffic is
 * not an anomaly).
 */
export type DecodeOutcome =
  | 'tcp'
  /** `out` holds a UDP datagram (not a tunnel carrier): ports, payload (as captured) and payloadLen (UDP length - 8). */
  | 'udp'
  /** Not IP at all (ARP, LLDP, 802.3/LLC, PPTP's enhanced GRE, ...). */
  | 'not_ip'
  /** IP but neither TCP nor UDP (ICMP, ESP, ...); out.protocol says which. */
  | 'not_tcp'
  /** An IP fragment (not an atomic one): `out.frag` describes it, for src/decode/ipReassembly.ts. */
  | 'fragment'
  /** A header is cut short by the capture. */
  | 'truncated'
  /** A header is inconsistent, or tunnels nest too deep. */
  | 'malformed'
  /** A link type this decoder does not know. */
  | 'unsupported_link';

export interface DecodeOptions {
  /** Encapsulations followed before giving up; each name pushed on out.tunnels counts 1. */
  maxTunnelDepth: number;
  /** VLAN tags followed in one Ethernet header before giving up (real stacks have 1 or 2). */
  maxVlanTags: number;
  /** IPv6 extension headers followed before giving up. */
  maxIpv6ExtensionHeaders: number;
  /** UDP destination ports carrying VXLAN (RFC 7348 section 5: IANA port 4789). */
  vxlanPorts: readonly number[];
  /** UDP destination ports carrying Geneve (RFC 8926 section 3.3: IANA port 6081). */
  genevePorts: readonly number[];
}

export const DEFAULT_DECODE_OPTIONS: Readonly<DecodeOptions> = {
  maxTunnelDepth: 8,
  maxVlanTags: 8,
  maxIpv6ExtensionHeaders: 16,
  vxlanPorts: [4789],
  genevePorts: [6081],
};

/** Per-call state passed down the layers (one module-level object: decoding is synchronous). */
interface Ctx {
  out: DecodedPacket;
  an: AnomalySink;
  opts: Readonly<DecodeOptions>;
  depth: number;
}

/**
 * A layer decoder: the layer starts at buf[off]; `end` is where its captured bytes end (already
 * limited by every enclosing length field: IP total length, UDP length, PPPoE length).
 */
type Layer = (buf: Buffer, off: number, end: number, ctx: Ctx) => DecodeOutcome;
/**
 * A decoder for an IP payload: like Layer, plus `wireLen`, the payload length the IP header
 * announces (larger than end - off when the frame was snapped), from which TCP's payloadLen comes.
 */
type L4 = (buf: Buffer, off: number, end: number, wireLen: number, ctx: Ctx) => DecodeOutcome;

const ctx: Ctx = {
  out: undefined as unknown as DecodedPacket,
  an: undefined as unknown as AnomalySink,
  opts: DEFAULT_DECODE_OPTIONS,
  depth: 0,
};

/**
 * Decodes one captured frame down to TCP, filling the caller-owned `out` (tunnels and vlans are
 * reset to length 0 first; protocol and ports to 0). Never throws on any input. On outcomes other
 * than 'tcp', `out` holds whatever was decoded before stopping (e.g. addresses and protocol of a
 * UDP packet) and must not be used as a segment.
 */
export function decodePacket(
  pkt: RawPacket,
  out: DecodedPacket,
  anomalies: AnomalySink,
  opts: Readonly<DecodeOptions> = DEFAULT_DECODE_OPTIONS,
): DecodeOutcome {
  const data = pkt.data;
  return decodeFrame(pkt.linktype, data, 0, data.length, out, anomalies, opts);
}

/**
 * decodePacket for a frame that lies at buf[off, end) (a capture record in a read chunk:
 * CaptureSink.packetAt), without a RawPacket or a view of the frame made for it.
 */
export function decodeFrame(
  linktype: number,
  buf: Buffer,
  off: number,
  end: number,
  out: DecodedPacket,
  anomalies: AnomalySink,
  opts: Readonly<DecodeOptions> = DEFAULT_DECODE_OPTIONS,
): DecodeOutcome {
  // (setting an array's length is a runtime call even when it is already 0: most packets have no
  // tunnels or VLAN tags)
  if (out.tunnels.length !== 0) out.tunnels.length = 0;
  if (out.vlans.length !== 0) out.vlans.length = 0;
  out.protocol = 0;
  out.srcPort = 0;
  out.dstPort = 0;
  const link = LINK_TYPES.get(linktype);
  if (link === undefined) return 'unsupported_link';
  ctx.out = out;
  ctx.an = anomalies;
  ctx.opts = opts;
  ctx.depth = 0;
  return link(buf, off, end, ctx);
}

/** Tunnel bookkeeping: records the name and enforces the nesting limit. */
function enterTunnel(name: string, c: Ctx): boolean {
  if (++c.depth > c.opts.maxTunnelDepth) {
    c.an.anomaly('tunnel_too_deep', name);
    return false;
  }
  c.out.tunnels.push(name);
  return true;
}

// ---------------------------------------------------------------------------------------------
// Link layers (https://www.tcpdump.org/linktypes.html)

/** Ethernet II (IEEE 802.3): destination, source, EtherType; VLAN tags are EtherTypes too. */
const ethernet: Layer = (buf, off, end, c) => {
  if (end - off < 14) {
    c.an.anomaly('ethernet_truncated');
    return 'truncated';
  }
  return etherType((buf[off + 12] << 8) | buf[off + 13], buf, off + 14, end, c);
};

/**
 * Dispatches on an EtherType. Values below 0x0600 are 802.3 lengths (LLC follows): not IP.
 * 802.1Q (0x8100), 802.1ad (0x88a8) and the pre-standard QinQ 0x9100 tags (IEEE 802.1Q section
 * 9.6: TCI with the 12-bit VLAN id, then the next EtherType) are followed in a loop.
 */
function etherType(type: number, buf: Buffer, off: number, end: number, c: Ctx): DecodeOutcome {
  let tags = 0;
  while (type === 0x8100 || type === 0x88a8 || type === 0x9100) {
    if (++tags > c.opts.maxVlanTags) {
      c.an.anomaly('vlan_too_many_tags');
      return 'malformed';
    }
    if (end - off < 4) {
      c.an.anomaly('vlan_truncated');
      return 'truncated';
    }
    c.out.vlans.push(((buf[off] << 8) | buf[off + 1]) & 0x0fff);
    type = (buf[off + 2] << 8) | buf[off + 3];
    off += 4;
  }
  const next = ETHER_TYPES.get(type);
  return next === undefined ? 'not_ip' : next(buf, off, end, c);
}

/** Linux cooked capture v1 (LINKTYPE_LINUX_SLL): 16-byte header, protocol (EtherType) last. */
const linuxSll: Layer = (buf, off, end, c) => {
  if (end - off < 16) {
    c.an.anomaly('sll_truncated');
    return 'truncated';
  }
  return etherType((buf[off + 14] << 8) | buf[off + 15], buf, off + 16, end, c);
};

/** Linux cooked capture v2 (LINKTYPE_LINUX_SLL2): 20-byte header, protocol (EtherType) first. */
const linuxSll2: Layer = (buf, off, end, c) => {
  if (end - off < 20) {
    c.an.anomaly('sll_truncated');
    return 'truncated';
  }
  return etherType((buf[off] << 8) | buf[off + 1], buf, off + 20, end, c);
};

/** Raw IP (LINKTYPE_RAW and DLT 12/14): the version nibble says IPv4 or IPv6. */
const rawIp: Layer = (buf, off, end, c) => {
  if (end - off < 1) {
    c.an.anomaly('ip_truncated');
    return 'truncated';
  }
  const v = buf[off] >> 4;
  if (v === 4) return ipv4(buf, off, end, c);
  if (v === 6) return ipv6(buf, off, end, c);
  return 'not_ip';
};

/**
 * BSD loopback: LINKTYPE_NULL has the 4-byte address family in the writer's byte order,
 * LINKTYPE_LOOP in network order — and files exist with either, so both are accepted: a value
 * above 0xffff read little-endian must be big-endian. AF_INET is 2 everywhere; AF_INET6 is 24
 * (NetBSD/OpenBSD), 28 (FreeBSD) or 30 (macOS).
 */
const bsdLoopback: Layer = (buf, off, end, c) => {
  if (end - off < 4) {
    c.an.anomaly('loopback_truncated');
    return 'truncated';
  }
  let family = buf.readUInt32LE(off);
  if (family > 0xffff) family = buf.readUInt32BE(off);
  if (family === 2) return ipv4(buf, off + 4, end, c);
  if (family === 24 || family === 28 || family === 30) return ipv6(buf, off + 4, end, c);
  return 'not_ip';
};

const ipv4Link: Layer = (buf, off, end, c) => ipv4(buf, off, end, c);
const ipv6Link: Layer = (buf, off, end, c) => ipv6(buf, off, end, c);

// ---------------------------------------------------------------------------------------------
// IP

/**
 * IPv4 (RFC 791 section 3.1). The packet ends at the smaller of the total length and the captured
 * bytes (Ethernet pads short frames; snap lengths cut long ones); a total length of 0 is how
 * captures of TCP segmentation offload show up, and then the captured length counts.
 * A fragment (offset or MF set) is described in out.frag and not decoded further (reassembly is
 * src/decode/ipReassembly.ts's, which needs state across packets).
 */
function ipv4(buf: Buffer, off: number, end: number, c: Ctx): DecodeOutcome {
  if (end - off < 20) {
    c.an.anomaly('ipv4_truncated');
    return 'truncated';
  }
  const vihl = buf[off];
  const ihl = (vihl & 0x0f) * 4;
  let total = (buf[off + 2] << 8) | buf[off + 3];
  if (vihl >> 4 !== 4 || ihl < 20 || (total !== 0 && total < ihl)) {
    c.an.anomaly('ipv4_bad_header');
    return 'malformed';
  }
  if (end - off < ihl) {
    c.an.anomaly('ipv4_truncated');
    return 'truncated';
  }
  if (total === 0) total = end - off; // TSO: the length field is not filled in yet
  const out = c.out;
  out.ipVersion = 4;
  const sc = out.addrScratch;
  if (sc !== undefined) {
    const sa = sc.src4;
    const da = sc.dst4;
    sa[0] = buf[off + 12];
    sa[1] = buf[off + 13];
    sa[2] = buf[off + 14];
    sa[3] = buf[off + 15];
    da[0] = buf[off + 16];
    da[1] = buf[off + 17];
    da[2] = buf[off + 18];
    da[3] = buf[off + 19];
    out.srcAddr = sa;
    out.dstAddr = da;
  } else {
    out.srcAddr = buf.subarray(off + 12, off + 16);
    out.dstAddr = buf.subarray(off + 16, off + 20);
  }
  const proto = buf[off + 9];
  out.protocol = proto;
  const frag = (buf[off + 6] << 8) | buf[off + 7];
  const capEnd = Math.min(end, off + total);
  if ((frag & 0x3fff) !== 0) {
    out.frag = {
      ipVersion: 4,
      id: (buf[off + 4] << 8) | buf[off + 5],
      offset: (frag & 0x1fff) * 8,
      more: (frag & 0x2000) !== 0,
      nextHeader: proto,
      header: buf.subarray(off, off + ihl),
      data: buf.subarray(off + ihl, capEnd),
    };
    return 'fragment';
  }
  const next = IP_PROTOCOLS[proto];
  return next === undefined ? 'not_tcp' : next(buf, off + ihl, capEnd, total - ihl, c);
}

/**
 * IPv6 (RFC 8200 section 3) and its extension headers (section 4): hop-by-hop (0), routing (43),
 * destination options (60) share the (next, length in 8-octet units beyond the first) layout; the
 * fragment header (44) is 8 bytes; AH (51, RFC 4302 section 2.2) counts 4-octet units minus 2.
 * ESP (50) and no-next-header (59) end decoding. A payload length of 0 (jumbogram or offload) means
 * the captured bytes count.
 */
function ipv6(buf: Buffer, off: number, end: number, c: Ctx): DecodeOutcome {
  if (end - off < 40) {
    c.an.anomaly('ipv6_truncated');
    return 'truncated';
  }
  if (buf[off] >> 4 !== 6) {
    c.an.anomaly('ipv6_bad_header');
    return 'malformed';
  }
  let wire = (buf[off + 4] << 8) | buf[off + 5];
  if (wire === 0) wire = end - off - 40;
  const out = c.out;
  out.ipVersion = 6;
  const sc = out.addrScratch;
  if (sc !== undefined) {
    const sa = sc.src6;
    const da = sc.dst6;
    for (let i = 0; i < 16; i++) {
      sa[i] = buf[off + 8 + i];
      da[i] = buf[off + 24 + i];
    }
    out.srcAddr = sa;
    out.dstAddr = da;
  } else {
    out.srcAddr = buf.subarray(off + 8, off + 24);
    out.dstAddr = buf.subarray(off + 24, off + 40);
  }
  let next = buf[off + 6];
  let p = off + 40;
  const capEnd = Math.min(end, p + wire);
  const wireEnd = p + wire;
  for (let n = 0; ; n++) {
    out.protocol = next;
    let hlen: number;
    if (next === 0 || next === 43 || next === 60) {
      if (capEnd - p < 2) return ipv6ExtTruncated(c);
      hlen = (buf[p + 1] + 1) * 8;
    } else if (next === 44) {
      if (capEnd - p < 8) return ipv6ExtTruncated(c);
      // Fragment offset (13 bits) and M flag: an atomic fragment (both zero) is a whole packet.
      const fo = (buf[p + 2] << 8) | buf[p + 3];
      if ((fo & 0xfff9) !== 0) {
        out.frag = {
          ipVersion: 6,
          id: buf.readUInt32BE(p + 4),
          offset: fo & 0xfff8,
          more: (fo & 1) !== 0,
          nextHeader: buf[p],
          header: buf.subarray(off, off + 40),
          data: buf.subarray(p + 8, capEnd),
        };
        return 'fragment';
      }
      hlen = 8;
    } else if (next === 51) {
      if (capEnd - p < 2) return ipv6ExtTruncated(c);
      hlen = (buf[p + 1] + 2) * 4;
    } else {
      break;
    }
    if (n >= c.opts.maxIpv6ExtensionHeaders) {
      c.an.anomaly('ipv6_too_many_extension_headers');
      return 'malformed';
    }
    if (p + hlen > wireEnd) {
      c.an.anomaly('ipv6_bad_extension_header');
      return 'malformed';
    }
    if (p + hlen > capEnd) return ipv6ExtTruncated(c);
    next = buf[p];
    p += hlen;
  }
  const l4 = IP_PROTOCOLS[next];
  return l4 === undefined ? 'not_tcp' : l4(buf, p, capEnd, wireEnd - p, c);
}

function ipv6ExtTruncated(c: Ctx): DecodeOutcome {
  c.an.anomaly('ipv6_truncated');
  return 'truncated';
}

// ---------------------------------------------------------------------------------------------
// Transport and tunnels

/**
 * TCP (RFC 9293 section 3.1). The payload is what was captured; payloadLen what the IP header says
 * was on the wire, so a snapped segment shows payload.length < payloadLen.
 */
const tcp: L4 = (buf, off, end, wireLen, c) => {
  if (end - off < 20) {
    c.an.anomaly('tcp_truncated');
    return 'truncated';
  }
  const doff = (buf[off + 12] >> 4) * 4;
  if (doff < 20 || doff > wireLen) {
    c.an.anomaly('tcp_bad_header');
    return 'malformed';
  }
  if (end - off < doff) {
    c.an.anomaly('tcp_truncated');
    return 'truncated';
  }
  const out = c.out;
  out.protocol = 6;
  out.srcPort = (buf[off] << 8) | buf[off + 1];
  out.dstPort = (buf[off + 2] << 8) | buf[off + 3];
  out.seq = ((buf[off + 4] << 24) | (buf[off + 5] << 16) | (buf[off + 6] << 8) | buf[off + 7]) >>> 0;
  out.ack = ((buf[off + 8] << 24) | (buf[off + 9] << 16) | (buf[off + 10] << 8) | buf[off + 11]) >>> 0;
  out.flags = buf[off + 13];
  out.window = (buf[off + 14] << 8) | buf[off + 15];
  out.payload = buf.subarray(off + doff, end);
  out.payloadLen = wireLen - doff;
  return 'tcp';
};

/** UDP (RFC 768): the carrier of VXLAN / Geneve, else a datagram for the UDP flow table (QUIC). */
const udp: L4 = (buf, off, end, wireLen, c) => {
  if (end - off < 8) {
    c.an.anomaly('udp_truncated');
    return 'truncated';
  }
  const out = c.out;
  out.srcPort = (buf[off] << 8) | buf[off + 1];
  out.dstPort = (buf[off + 2] << 8) | buf[off + 3];
  if (c.opts.vxlanPorts.includes(out.dstPort)) {
    const ulen = (buf[off + 4] << 8) | buf[off + 5];
    const capEnd = ulen >= 8 ? Math.min(end, off + ulen) : end;
    return vxlan(buf, off + 8, capEnd, c);
  }
  if (c.opts.genevePorts.includes(out.dstPort)) {
    const ulen = (buf[off + 4] << 8) | buf[off + 5];
    const capEnd = ulen >= 8 ? Math.min(end, off + ulen) : end;
    return geneve(buf, off + 8, capEnd, c);
  }
  // RFC 768: the length field covers header and data; a value below 8 or beyond the IP payload is
  // malformed (the IP layer already limited `end`), and the wire length comes from it.
  const ulen = (buf[off + 4] << 8) | buf[off + 5];
  if (ulen < 8 || ulen > wireLen) {
    c.an.anomaly('udp_bad_length');
    return 'malformed';
  }
  out.payload = buf.subarray(off + 8, Math.min(end, off + ulen));
  out.payloadLen = ulen - 8;
  return 'udp';
};

/** VXLAN (RFC 7348 section 5): an 8-byte header (flags, VNI), then an Ethernet frame. */
function vxlan(buf: Buffer, off: number, end: number, c: Ctx): DecodeOutcome {
  if (end - off < 8) {
    c.an.anomaly('vxlan_truncated');
    return 'truncated';
  }
  if (!enterTunnel('vxlan', c)) return 'malformed';
  return ethernet(buf, off + 8, end, c);
}

/**
 * Geneve (RFC 8926 section 3.4): an 8-byte header whose 6-bit Opt Len counts 4-byte words of
 * options that follow, and a Protocol Type (an EtherType; 0x6558 for Ethernet). Used e.g. by
 * AWS Gateway Load Balancer to hand mirrored traffic to appliances.
 */
function geneve(buf: Buffer, off: number, end: number, c: Ctx): DecodeOutcome {
  if (end - off < 8) {
    c.an.anomaly('geneve_truncated');
    return 'truncated';
  }
  if (buf[off] >> 6 !== 0) return 'not_ip'; // only version 0 is defined
  const hlen = 8 + (buf[off] & 0x3f) * 4;
  if (end - off < hlen) {
    c.an.anomaly('geneve_truncated');
    return 'truncated';
  }
  const proto = (buf[off + 2] << 8) | buf[off + 3];
  if (!enterTunnel('geneve', c)) return 'malformed';
  if (proto === 0x6558) return ethernet(buf, off + hlen, end, c);
  return etherType(proto, buf, off + hlen, end, c);
}

/**
 * MPLS label stack (RFC 3032 section 2.1): 4-byte entries until the bottom-of-stack bit. What
 * follows is not announced. A first nibble of 4 or 6 is IP. Otherwise it is an Ethernet
 * pseudowire (RFC 4448), with a 4-byte control word (RFC 4385 section 3, first nibble 0) or
 * without; a MAC address may start with a 0 nibble too, so when it does, the EtherType position
 * of both readings decides (Wireshark guesses from the OUI database instead).
 */
const mpls: Layer = (buf, off, end, c) => {
  for (;;) {
    if (end - off < 4) {
      c.an.anomaly('mpls_truncated');
      return 'truncated';
    }
    const bottom = (buf[off + 2] & 0x01) !== 0;
    off += 4;
    if (bottom) break;
  }
  if (!enterTunnel('mpls', c)) return 'malformed';
  if (end - off < 1) {
    c.an.anomaly('mpls_truncated');
    return 'truncated';
  }
  const nibble = buf[off] >> 4;
  if (nibble === 4) return ipv4(buf, off, end, c);
  if (nibble === 6) return ipv6(buf, off, end, c);
  if (nibble === 0) {
    // Either reading needs 18 bytes before any IP header could follow.
    if (end - off < 18) {
      c.an.anomaly('mpls_truncated');
      return 'truncated';
    }
    if (!knownEtherType(buf, off + 12) && knownEtherType(buf, off + 16)) return ethernet(buf, off + 4, end, c);
  }
  return ethernet(buf, off, end, c);
};

function knownEtherType(buf: Buffer, at: number): boolean {
  const t = (buf[at] << 8) | buf[at + 1];
  return ETHER_TYPES.has(t) || t === 0x8100 || t === 0x88a8 || t === 0x9100;
}

/**
 * PPPoE session stage (RFC 2516 section 4): a 6-byte header, then the PPP protocol field
 * (RFC 1661 section 2): 0x0021 IPv4, 0x0057 IPv6. Not a tunnel: the access link of DSL networks.
 */
const pppoe: Layer = (buf, off, end, c) => {
  if (end - off < 8) {
    c.an.anomaly('pppoe_truncated');
    return 'truncated';
  }
  const proto = (buf[off + 6] << 8) | buf[off + 7];
  const plen = (buf[off + 4] << 8) | buf[off + 5];
  const inner = Math.min(end, off + 6 + plen);
  if (proto === 0x0021) return ipv4(buf, off + 8, inner, c);
  if (proto === 0x0057) return ipv6(buf, off + 8, inner, c);
  return 'not_ip';
};

/**
 * GRE version 0 (RFC 2784 section 2, key and sequence number from RFC 2890 section 2): flags
 * C (checksum + reserved, 4 bytes), K (key, 4), S (sequence, 4) add optional words. The RFC 1701
 * routing bit (R) and version 1 (PPTP, RFC 2637) carry no Ethernet or IP we can follow.
 */
const gre: L4 = (buf, off, end, _wireLen, c) => {
  if (end - off < 4) {
    c.an.anomaly('gre_truncated');
    return 'truncated';
  }
  const flags = (buf[off] << 8) | buf[off + 1];
  const proto = (buf[off + 2] << 8) | buf[off + 3];
  if ((flags & 0x0007) !== 0 || (flags & 0x4000) !== 0) return 'not_ip';
  const seq = (flags & 0x1000) !== 0;
  const hlen = 4 + ((flags & 0x8000) !== 0 ? 4 : 0) + ((flags & 0x2000) !== 0 ? 4 : 0) + (seq ? 4 : 0);
  if (end - off < hlen) {
    c.an.anomaly('gre_truncated');
    return 'truncated';
  }
  const p = off + hlen;
  switch (proto) {
    case 0x0800:
      return enterTunnel('gre', c) ? ipv4(buf, p, end, c) : 'malformed';
    case 0x86dd:
      return enterTunnel('gre', c) ? ipv6(buf, p, end, c) : 'malformed';
    case 0x6558: // Transparent Ethernet Bridging
      return enterTunnel('gre', c) ? ethernet(buf, p, end, c) : 'malformed';
    case 0x88be: // ERSPAN type II (8-byte header), or type I (no header) when S is clear
      if (!enterTunnel('gre', c) || !enterTunnel('erspan', c)) return 'malformed';
      if (!seq) return ethernet(buf, p, end, c);
      if (end - p < 8) {
        c.an.anomaly('erspan_truncated');
        return 'truncated';
      }
      return ethernet(buf, p + 8, end, c);
    case 0x22eb:
      if (!enterTunnel('gre', c) || !enterTunnel('erspan', c)) return 'malformed';
      return erspan3(buf, p, end, c);
    default:
      return 'not_ip';
  }
};

/**
 * ERSPAN type III (draft-foschiano-erspan section 4.3): a 12-byte header; the O bit (last bit)
 * announces an 8-byte platform-specific subheader. The frame type FT (5 bits of byte 10) is
 * 0 for Ethernet and 2 for an IP packet.
 */
function erspan3(buf: Buffer, off: number, end: number, c: Ctx): DecodeOutcome {
  if (end - off < 12) {
    c.an.anomaly('erspan_truncated');
    return 'truncated';
  }
  const ft = (buf[off + 10] >> 2) & 0x1f;
  const hlen = (buf[off + 11] & 0x01) !== 0 ? 20 : 12;
  if (end - off < hlen) {
    c.an.anomaly('erspan_truncated');
    return 'truncated';
  }
  if (ft === 0) return ethernet(buf, off + hlen, end, c);
  if (ft === 2) return rawIp(buf, off + hlen, end, c);
  return 'not_ip';
}

/** IP in IP (RFC 2003, protocol 4) and IPv6 in IP (RFC 4213 / RFC 2473, protocol 41). */
const ipInIp4: L4 = (buf, off, end, _wireLen, c) =>
  enterTunnel('ipip', c) ? ipv4(buf, off, end, c) : 'malformed';
const ipInIp6: L4 = (buf, off, end, _wireLen, c) =>
  enterTunnel('ipip', c) ? ipv6(buf, off, end, c) : 'malformed';

// ---------------------------------------------------------------------------------------------
// Tables

/** Link types (LINKTYPE_* values) this decoder understands. */
export const LINK_TYPES: ReadonlyMap<number, Layer> = new Map<number, Layer>([
  [0, bsdLoopback], // LINKTYPE_NULL
  [1, ethernet], // LINKTYPE_ETHERNET
  [12, rawIp], // DLT_RAW on some BSDs
  [14, rawIp], // DLT_RAW on OpenBSD
  [101, rawIp], // LINKTYPE_RAW
  [108, bsdLoopback], // LINKTYPE_LOOP
  [113, linuxSll], // LINKTYPE_LINUX_SLL
  [228, ipv4Link], // LINKTYPE_IPV4
  [229, ipv6Link], // LINKTYPE_IPV6
  [276, linuxSll2], // LINKTYPE_LINUX_SLL2
]);

/** EtherTypes beyond the VLAN tags handled inline. */
const ETHER_TYPES: ReadonlyMap<number, Layer> = new Map<number, Layer>([
  [0x0800, ipv4Link],
  [0x86dd, ipv6Link],
  [0x8847, mpls], // MPLS unicast
  [0x8848, mpls], // MPLS multicast
  [0x8864, pppoe], // PPPoE session
]);

/** IP protocol numbers (IANA) decoded further; everything else is 'not_tcp'. */
const IP_PROTOCOLS: (L4 | undefined)[] = new Array<L4 | undefined>(256).fill(undefined);
IP_PROTOCOLS[4] = ipInIp4;
IP_PROTOCOLS[6] = tcp;
IP_PROTOCOLS[17] = udp;
IP_PROTOCOLS[41] = ipInIp6;
IP_PROTOCOLS[47] = gre;
