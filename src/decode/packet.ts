import type { AddrScratch, DecodedPacket } from '../types.js';

const EMPTY = Buffer.alloc(0);

/** Address views for one DecodedPacket (see DecodedPacket.addrScratch). */
function newAddrScratch(): AddrScratch {
  const b = Buffer.alloc(32);
  return { src4: b.subarray(0, 4), dst4: b.subarray(16, 20), src6: b.subarray(0, 16), dst6: b.subarray(16, 32) };
}

/** A fresh DecodedPacket for a caller to own and reuse across decodePacket() calls. */
export function newDecodedPacket(): DecodedPacket {
  return {
    ipVersion: 4,
    srcAddr: EMPTY,
    dstAddr: EMPTY,
    protocol: 0,
    srcPort: 0,
    dstPort: 0,
    seq: 0,
    ack: 0,
    flags: 0,
    window: 0,
    payload: EMPTY,
    payloadLen: 0,
    tunnels: [],
    vlans: [],
    addrScratch: newAddrScratch(),
    frag: undefined,
  };
}
