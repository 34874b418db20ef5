/**
 * Decapsulation of mirror tunnels as a receiver sees them: the UDP payload of one datagram sent
 * to a VXLAN or Geneve collector (AWS VPC Traffic Mirroring, Gateway Load Balancer, Tencent and
 * Alibaba Cloud mirroring, Linux `tc ... action mirred` into a vxlan device).
 *
 * Unlike the in-capture tunnel layers of decoder.ts (which follow a tunnel found inside a captured
 * frame, leniently), a receiver owns the tunnel endpoint, so the headers are checked as the RFCs
 * ask an endpoint to: a datagram that fails a check is not published and its kind is counted.
 * Pure: no allocation, no exceptions; the result is written into a caller-owned object.
 */

export type MirrorEncap = 'vxlan' | 'geneve';

/** Why a datagram was not decapsulated (metric label `kind`, stable snake_case). */
export type DecapErrorKind =
  /** Shorter than the 8-byte VXLAN header. */
  | 'vxlan_truncated'
  /** The I flag (valid VNI) is not set (RFC 7348 section 5). */
  | 'vxlan_bad_flags'
  /** Shorter than the 8-byte Geneve header or than the options it announces. */
  | 'geneve_truncated'
  /** A version other than 0 (RFC 8926 section 3.4: the only one defined). */
  | 'geneve_bad_version'
  /** The O bit: a control message between endpoints, not traffic to forward (section 3.4). */
  | 'geneve_control'
  /** An option with the critical bit we do not understand: the endpoint MUST drop (section 3.5). */
  | 'geneve_critical_option'
  /** Option lengths do not add up to Opt Len. */
  | 'geneve_bad_options'
  /** A Protocol Type other than Ethernet (0x6558), IPv4 or IPv6. */
  | 'geneve_unsupported_protocol'
  /** An inner Ethernet frame shorter than its 14-byte header (or an empty inner IP packet). */
  | 'inner_truncated';

export interface Decapsulated {
  /** VXLAN Network Identifier / Geneve Virtual Network Identifier (24 bits). */
  vni: number;
  /** Where the inner packet starts in the datagram. */
  offset: number;
  /** LINKTYPE_* of the inner packet: 1 Ethernet, 228 raw IPv4, 229 raw IPv6. */
  linktype: number;
  /** Geneve options skipped (not critical); 0 for VXLAN. */
  optionsSkipped: number;
}

export function newDecapsulated(): Decapsulated {
  return { vni: 0, offset: 0, linktype: 1, optionsSkipped: 0 };
}

/** IANA ports (RFC 7348 section 5, RFC 8926 section 3.3). */
export const VXLAN_PORT = 4789;
export const GENEVE_PORT = 6081;

const ETH_HEADER = 14;

/**
 * VXLAN (RFC 7348 section 5): flags (8 bits: R R R R I R R R), 24 reserved bits, VNI (24 bits),
 * 8 reserved bits, then an Ethernet frame without FCS. "The I flag MUST be set to 1 for a valid
 * VXLAN Network ID"; the R bits and reserved fields are ignored on receipt (VXLAN-GBP uses them).
 */
export function decapVxlan(b: Buffer, out: Decapsulated): DecapErrorKind | null {
  if (b.length < 8) return 'vxlan_truncated';
  if ((b[0] & 0x08) === 0) return 'vxlan_bad_flags';
  out.vni = (b[4] << 16) | (b[5] << 8) | b[6];
  out.offset = 8;
  out.linktype = 1;
  out.optionsSkipped = 0;
  if (b.length - 8 < ETH_HEADER) return 'inner_truncated';
  return null;
}

/**
 * Geneve (RFC 8926 section 3.4): Ver (2) | Opt Len (6, 4-byte words) | O | C | Rsvd (6) |
 * Protocol Type (16) | VNI (24) | Reserved (8) | options. Each option (section 3.5): Option Class
 * (16) | Type (8, high bit = critical) | R (3) | Length (5, 4-byte words after the option header).
 * We understand no option, so non-critical ones are skipped by length and a critical one drops
 * the packet (section 3.5.1: "If a receiving tunnel endpoint encounters a critical option that it
 * does not understand, it MUST drop the packet"). The options are always walked, whatever the C
 * bit says, so lengths are checked and a critical option is never missed.
 */
export function decapGeneve(b: Buffer, out: Decapsulated): DecapErrorKind | null {
  if (b.length < 8) return 'geneve_truncated';
  if (b[0] >> 6 !== 0) return 'geneve_bad_version';
  const hlen = 8 + (b[0] & 0x3f) * 4;
  if (b.length < hlen) return 'geneve_truncated';
  if (b[1] & 0x80) return 'geneve_control';
  let skipped = 0;
  for (let o = 8; o < hlen; ) {
    if (hlen - o < 4) return 'geneve_bad_options';
    const next = o + 4 + (b[o + 3] & 0x1f) * 4;
    if (next > hlen) return 'geneve_bad_options';
    if (b[o + 2] & 0x80) return 'geneve_critical_option';
    skipped++;
    o = next;
  }
  const proto = (b[2] << 8) | b[3];
  let linktype: number;
  let minInner: number;
  if (proto === 0x6558) {
    linktype = 1;
    minInner = ETH_HEADER;
  } else if (proto === 0x0800) {
    linktype = 228;
    minInner = 1;
  } else if (proto === 0x86dd) {
    linktype = 229;
    minInner = 1;
  } else {
    return 'geneve_unsupported_protocol';
  }
  out.vni = (b[4] << 16) | (b[5] << 8) | b[6];
  out.offset = hlen;
  out.linktype = linktype;
  out.optionsSkipped = skipped;
  if (b.length - hlen < minInner) return 'inner_truncated';
  return null;
}

export function decapsulate(encap: MirrorEncap, b: Buffer, out: Decapsulated): DecapErrorKind | null {
  return encap === 'vxlan' ? decapVxlan(b, out) : decapGeneve(b, out);
}
