export { decodePacket, decodeFrame, DEFAULT_DECODE_OPTIONS, LINK_TYPES } from './decoder.js';
export type { DecodeOutcome, DecodeOptions } from './decoder.js';
export { ipToString } from './ip.js';
export { newDecodedPacket } from './packet.js';
