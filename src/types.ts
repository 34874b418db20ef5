/**
 * The contracts between pipeline stages. Each stage is one module (folder) and talks to the
 * next only through these interfaces, so every stage can be tested alone: bytes in, results out.
 *
 *   capture (pcap, pcapng, Kafka records) -> decode (link/IP/tunnels/TCP) -> tcp (flows + reassembly)
 *     -> tls (records, handshake, keys, decryption) -> analyzers (HTTP/1, HTTP/2, ...) -> events (ECS)
 */

/** Capture time: whole seconds since the epoch and nanoseconds within the second. */
export interface Timestamp {
  sec: number;
  nsec: number;
}

/** Capture time as floating seconds; precise enough for timeouts and ordering (not for output). */
export function tsSeconds(t: Timestamp): number {
  return t.sec + t.nsec / 1e9;
}

/** One captured frame as it came off the capture source. */
export interface RawPacket {
  /** LINKTYPE_* value (https://www.tcpdump.org/linktypes.html). */
  linktype: number;
  ts: Timestamp;
  /** Captured bytes (may be shorter than origLen when snap-truncated). */
  data: Buffer;
  /** Length of the packet on the wire. */
  origLen: number;
  /** Interface index (pcapng) or 0. */
  ifIndex: number;
  /** Optional sensor / mirror-source name (Kafka header `sensor`). */
  sensor?: string;
}

/** Anomalies are data, not exceptions: a stable snake_case code plus an optional detail. */
export interface AnomalySink {
  anomaly(code: string, detail?: string): void;
}

/** A classic pcap stream's record layout (CaptureSink.pcapRecords). */
export interface PcapLayout {
  /** Little-endian header fields. */
  readonly le: boolean;
  /** Nanosecond timestamps (else microseconds). */
  readonly nano: boolean;
  readonly linktype: number;
  /** Largest captured length taken; a larger one is the framer's (an anomaly). */
  readonly maxCaplen: number;
  /** Records taken by pcapRecords so far. */
  packets: number;
}

/** What a capture reader hands on. */
export interface CaptureSink extends AnomalySink {
  packet(p: RawPacket): void;
  /**
   * Optional, instead of `packet` for classic pcap records: the packet's fields and where its bytes
   * lie (buf[off, off + caplen)), with no RawPacket or view made for it. For a sink that mostly
   * needs no packet object (the sharding reader of `replay --workers N`); same rules as `packet`.
   */
  packetAt?(buf: Buffer, off: number, caplen: number, origLen: number, sec: number, nsec: number, linktype: number): void;
  /**
   * Optional, for classic pcap: takes the complete records of buf[off, end) in one loop of its own
   * (the sharding reader of `replay --workers N`: no call per record) and returns the offset after
   * the last record it took, adding their count to `layout.packets`. It stops before any record it
   * does not take (incomplete, caplen above `layout.maxCaplen`, or one it wants as a packet); the
   * framer handles that one as usual and calls again after it. Same rules as `packet`.
   */
  pcapRecords?(buf: Buffer, off: number, end: number, layout: PcapLayout): number;
  /** pcapng Decryption Secrets Block: secretsType 0x544c534b = TLS key log (NSS key-log text). */
  secrets(secretsType: number, data: Buffer): void;
}

/** Direction of a byte stream within a TCP connection. */
export const enum Dir {
  /** From the TCP client (the side that sent SYN) to the server. */
  ToServer = 0,
  /** From the server to the client. */
  ToClient = 1,
}

/** Why a stream ended. */
export type EndReason = 'fin' | 'rst' | 'timeout' | 'eof' | 'evicted';

/**
 * The stream contract (as Zeek's analyzers have it): in-order data, undelivered gaps, end.
 * Used between TCP reassembly and TLS, and between TLS and the application analyzers.
 */
export interface StreamSink {
  /** `data` is a view (into the packet or a reassembly buffer) valid only during the call: copy it to keep it. */
  onData(dir: Dir, data: Buffer, ts: Timestamp): void;
  /** `length` bytes of this direction were never seen (capture loss, started mid-stream, limit). */
  onGap(dir: Dir, length: number, ts: Timestamp): void;
  onEnd(dir: Dir, reason: EndReason, ts: Timestamp): void;
}

/** A StreamSink that is also told when its connection is gone: what TLS hands decrypted streams to. */
export interface AppStream extends StreamSink {
  onClose(ts: Timestamp): void;
  /**
   * Optional: how many of the next plaintext bytes of `dir` this analyzer would only count,
   * reading none of them (e.g. an HTTP/1 body beyond what events keep of it). The TLS layer may
   * then authenticate a record that lies within them without decrypting it, and call onSkipped
   * instead of onData. Content of a record that failed authentication never reaches either.
   */
  skippable?(dir: Dir): number;
  /** With skippable: `length` authenticated application-data bytes of `dir`, not decrypted. */
  onSkipped?(dir: Dir, length: number, ts: Timestamp): void;
}

/** The endpoints of a TCP connection, with the client/server roles resolved. */
export interface FlowInfo {
  /** Stable id within one engine run (monotonic counter). */
  id: number;
  clientIp: string;
  clientPort: number;
  serverIp: string;
  serverPort: number;
  ipVersion: 4 | 6;
  /** Capture time of the first packet of the flow. */
  start: Timestamp;
  /** True when roles came from the SYN/SYN-ACK handshake, false when guessed from ports. */
  rolesFromHandshake: boolean;
  /** Community ID v1 of the flow (https://github.com/corelight/community-id-spec). */
  communityId: string;
  sensor?: string;
  /**
   * The server this connection counts toward as an asset, when it is not its own: an FTP data
   * connection belongs to its control connection's server (its port is an ephemeral one).
   */
  assetServer?: { ip: string; port: number };
}

/** Per-flow byte accounting kept by the TCP layer. */
export interface FlowCounters {
  /** Payload bytes seen from the client / server (including retransmissions: wire view). */
  clientBytes: number;
  serverBytes: number;
  clientPackets: number;
  serverPackets: number;
  /** Bytes that were never delivered because of gaps. */
  gapBytes: number;
  last: Timestamp;
}

/**
 * A flow's consumer: the TCP layer creates one per connection through a FlowHandlerFactory,
 * feeds it the reassembled streams and calls onClose exactly once when the flow is done
 * (both ends finished, reset, idle timeout, eviction or end of input).
 */
export interface FlowHandler extends StreamSink {
  onClose(reason: EndReason, counters: FlowCounters, ts: Timestamp): void;
  /**
   * True when closing the flow now would lose nothing: no bytes are held back (e.g. records
   * waiting for late keys) and nothing else can still change its events. A flow whose handler says
   * so is reported as soon as both directions have ended (FIN delivered or RST) instead of after
   * the closing timeout; without this method it waits for the timeout.
   */
  settled?(): boolean;
}

export type FlowHandlerFactory = (flow: FlowInfo) => FlowHandler;

/**
 * An event under construction: ECS fields as a nested object (`{ http: { request: { method } } }`).
 * Analyzers fill their own fields; the event builder adds the common ones (timestamp, id, source,
 * destination, network, tls.*, tags).
 */
export type EcsFields = Record<string, unknown>;

/** Where analyzers hand their findings. */
export interface EventSink {
  /**
   * @param dataset   `tls.session`, `http`, `smtp`, `ftp`, ...
   * @param fields    dataset-specific ECS fields (nested objects)
   * @param ts        capture time the event refers to (e.g. the request's first byte)
   * @param decrypted true when the content came from decrypted traffic (tag "Decryption Detection")
   */
  emit(dataset: string, fields: EcsFields, ts: Timestamp, decrypted: boolean): void;
}

/**
 * The result of decoding one frame down to TCP (the innermost IP packet of any tunnel).
 * The decoder fills a caller-owned object so the hot path allocates nothing per packet but
 * the payload view; address buffers are views into the frame, valid only during the call.
 */
export interface DecodedPacket {
  ipVersion: 4 | 6;
  /** Raw address bytes (4 or 16), views into the frame. */
  srcAddr: Buffer;
  dstAddr: Buffer;
  /** IP protocol of the innermost packet (6 = TCP; others are counted, not decoded further). */
  protocol: number;
  srcPort: number;
  dstPort: number;
  /** TCP sequence and acknowledgement numbers (unsigned 32-bit). */
  seq: number;
  ack: number;
  /** TCP flags byte: FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20, ECE 0x40, CWR 0x80. */
  flags: number;
  window: number;
  /** TCP payload as captured (view into the frame; may be shorter than payloadLen when snapped). */
  payload: Buffer;
  /** TCP payload length according to the IP header (what was on the wire). */
  payloadLen: number;
  /** Outer tunnel kinds seen on the way in, outermost first (e.g. ['vxlan']); empty when none. */
  tunnels: string[];
  /** 802.1Q/802.1ad VLAN ids seen, outermost first. */
  vlans: number[];
  /**
   * Optional (newDecodedPacket sets it): address buffers of this packet's own that the decoder
   * copies the addresses into, instead of making two views into the frame per packet; srcAddr and
   * dstAddr are then these views (4 or 16 bytes), overwritten by the next decode.
   */
  addrScratch?: AddrScratch;
  /** Set by the decoder with the outcome 'fragment' (src/decode/ipReassembly.ts); stale otherwise. */
  frag?: FragmentInfo;
}

/** What the decoder reports of a fragment (DecodedPacket.frag). */
export interface FragmentInfo {
  ipVersion: 4 | 6;
  /** Identification (IPv4 16 bits, IPv6 32 bits). */
  id: number;
  /** Offset of this fragment's data in the datagram's payload, in bytes. */
  offset: number;
  /** More fragments follow (MF). */
  more: boolean;
  /** Protocol of the reassembled payload (IPv4 protocol; IPv6 the fragment header's next header). */
  nextHeader: number;
  /** The IP header: IPv4 with its options, IPv6 the fixed 40 bytes (views into the frame). */
  header: Buffer;
  /** The fragment's data as captured (a view into the frame). */
  data: Buffer;
}


/** Reused address views of a DecodedPacket (two 16-byte slots of one buffer; v4 uses the first 4 bytes of each). */
export interface AddrScratch {
  src4: Buffer;
  dst4: Buffer;
  src6: Buffer;
  dst6: Buffer;
}

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_ACK = 0x10;
