import type { DecodedPacket } from '../types.js';

const EMPTY = Buffer.alloc(0);

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
  };
}
