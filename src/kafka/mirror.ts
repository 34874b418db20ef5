/**
 * `tlsdecrypt publish mirror`: a VXLAN / Geneve mirror receiver. UDP datagrams from a mirror
 * session (AWS VPC Traffic Mirroring, Gateway Load Balancer, Tencent/Alibaba Cloud mirroring,
 * Linux `tc ... action mirred` into a vxlan device) are decapsulated (headers checked, see
 * src/decode/mirrorDecap.ts) and their inner packets go to the packets topic exactly as
 * `publish pcap` puts them there: pcap-stream records, partition = direction-independent flow
 * hash (partitionOfDecoded), so `run` reads them unchanged.
 *
 *   socket(s) --datagram--> decapsulate --inner frame--> decode (partition, not-IP check)
 *     --> PartitionBatcher (per partition and sensor; linger, byte bound, memory bound)
 *     --> Kafka (reconnects by itself; what does not fit is dropped and counted by cause)
 *
 * The sensor header is `vni-N@SENDER` (the mirror session's VNI and the sender's address) unless
 * --sensor names one. Kernel-side drops (socket receive buffer overflows) come from the drops
 * column of /proc/net/udp[6] for the sockets' inodes. Metrics: src/kafka/publishMetrics.ts.
 */
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { readdirSync, readFileSync, readlinkSync, readSync } from 'node:fs';
import { isIPv6 } from 'node:net';
import { decodePacket, newDecodedPacket } from '../decode/index.js';
import { decapsulate, newDecapsulated, type DecapErrorKind, type MirrorEncap } from '../decode/mirrorDecap.js';
import { InputError } from '../pipeline/replay.js';
import type { RawPacket } from '../types.js';
import type { KafkaClient, ProducerImpl, ProducerOptions } from './adapter.js';
import { PartitionBatcher, type BatcherStats } from './batcher.js';
import { log, RateLimitedLog } from './log.js';
import { FragmentPartitions, openPacketsTopic, partitionOfDecoded } from './publish.js';

export interface MirrorListen {
  host: string;
  port: number;
  encap: MirrorEncap;
}

export interface MirrorOptions {
  listen: MirrorListen[];
  topic: string;
  /** Partitions when the topic has to be created. */
  partitions: number;
  /** Only this VNI is published (others counted as filtered). */
  vni?: number;
  sensor?: string;
  /**
   * Receive threads (default 1: everything on the main thread). With N >= 2, N threads read the
   * sockets and the main thread batches and produces (src/kafka/mirrorThreads.ts).
   */
  threads?: number;
  /** SO_RCVBUF asked for (Linux caps it at net.core.rmem_max and doubles it). */
  rcvbufBytes?: number;
  lingerMs: number;
  batchBytes: number;
  maxBufferBytes: number;
  compression?: 'none' | 'gzip';
  /** Packets producer: 'auto' (default) = native on plaintext connections (adapter.ts). */
  producer?: ProducerImpl | 'auto';
  /** Produce requests in flight at once (batcher.ts BatcherOptions.maxInFlight) [5]. */
  maxInFlight?: number;
  /** Resolves to stop (default: SIGINT/SIGTERM). */
  stopSignal?: Promise<void>;
  /** How long a stop waits for Kafka to take what is buffered (default 10 s). */
  flushTimeoutMs?: number;
  /** Kernel drop polling interval (default 2 s). */
  kernelPollMs?: number;
  onStarted?: (r: MirrorReceiver) => void;
  observeLatency?: (seconds: number) => void;
}

export interface MirrorStats {
  datagrams: Record<string, number>;
  /** UDP payload bytes per listen address. */
  bytes: Record<string, number>;
  decapErrors: Partial<Record<DecapErrorKind | 'inner_not_ip', number>>;
  vniFiltered: number;
  /** Inner packets handed to the batcher. */
  packets: number;
  /** Geneve options skipped (not critical). */
  geneveOptionsSkipped: number;
  /** Datagrams the kernel dropped (socket buffer full) since the receiver started. */
  kernelDrops: number;
}

export interface MirrorResult {
  mirror: MirrorStats;
  publish: BatcherStats;
  partitions: number;
}

/** "HOST:PORT" / "[v6]:PORT" → parts; InputError when it is not one. */
export function parseListen(s: string, encap: 'auto' | MirrorEncap): MirrorListen {
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(s) ?? /^([^\s:[\]]+):(\d{1,5})$/.exec(s);
  if (!m) throw new InputError(`--listen: '${s.slice(0, 80)}' is not HOST:PORT (IPv6 as [ADDR]:PORT)`);
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw new InputError(`--listen: port ${port} out of range in '${s.slice(0, 80)}'`);
  let e: MirrorEncap;
  if (encap !== 'auto') e = encap;
  else if (port === 4789) e = 'vxlan';
  else if (port === 6081) e = 'geneve';
  else throw new InputError(`--listen ${s.slice(0, 80)}: --encap auto knows 4789 (VXLAN) and 6081 (Geneve) only; give --encap vxlan or --encap geneve`);
  return { host: m[1], port, encap: e };
}

/** Inode numbers of this process's sockets (from /proc/self/fd). */
function ownSocketInodes(): Set<string> {
  const out = new Set<string>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const l = readlinkSync(`/proc/self/fd/${fd}`);
      if (l.startsWith('socket:[')) out.add(l.slice(8, -1));
    } catch {
      /* closed meanwhile */
    }
  }
  return out;
}

/**
 * Kernel drops of the given local UDP ports' sockets owned by this process: the last column of
 * /proc/net/udp and /proc/net/udp6 (sk_drops: receive buffer full and the like). undefined when
 * /proc is not there (not Linux).
 */
export function kernelUdpDrops(ports: number[]): number | undefined {
  let inodes: Set<string>;
  try {
    inodes = ownSocketInodes();
  } catch {
    return undefined;
  }
  let total = 0;
  let seen = false;
  for (const f of ['/proc/net/udp', '/proc/net/udp6']) {
    let text: string;
    try {
      text = readFileSync(f, 'latin1');
    } catch {
      continue;
    }
    seen = true;
    const lines = text.split('\n');
    for (let i = 1; i < lines.length; i++) {
      const c = lines[i].trim().split(/\s+/);
      if (c.length < 13) continue;
      const port = parseInt(c[1].slice(c[1].lastIndexOf(':') + 1), 16);
      if (!ports.includes(port) || !inodes.has(c[9])) continue;
      total += Number(c[c.length - 1]) || 0;
    }
  }
  return seen ? total : undefined;
}

/**
 * The per-datagram path of the receiver, without sockets or batching: count, decapsulate, filter
 * by VNI, decode the inner frame, pick the partition and the sensor. One per receive thread.
 */
export class MirrorDecoder {
  readonly stats: MirrorStats = { datagrams: {}, bytes: {}, decapErrors: {}, vniFiltered: 0, packets: 0, geneveOptionsSkipped: 0, kernelDrops: 0 };
  /** After decode() returned a partition: the inner packet (a view of the datagram; reused). */
  readonly packet: RawPacket = { linktype: 1, ts: { sec: 0, nsec: 0 }, data: Buffer.alloc(0), origLen: 0, ifIndex: 0 };
  /** After decode() returned a partition: the packet's sensor. */
  sensor = '';
  private readonly decap = newDecapsulated();
  private readonly decoded = newDecodedPacket();
  /** IP fragments go where their datagram's flow goes (publish.ts FragmentPartitions). */
  private readonly frags = new FragmentPartitions();
  private readonly sensors = new Map<string, Map<number, string>>();
  private readonly rl = new RateLimitedLog();
  private readonly ignore = { anomaly() {} };

  constructor(
    private readonly o: { vni?: number; sensor?: string },
    private readonly partitions: number,
  ) {}

  private sensorOf(vni: number, address: string): string {
    let byVni = this.sensors.get(address);
    if (!byVni) {
      if (this.sensors.size > 10_000) this.sensors.clear();
      byVni = new Map();
      this.sensors.set(address, byVni);
    }
    let s = byVni.get(vni);
    if (s === undefined) {
      s = `vni-${vni}@${address}`;
      byVni.set(vni, s);
    }
    return s;
  }

  private error(kind: DecapErrorKind | 'inner_not_ip', sender: string): -1 {
    const n = (this.stats.decapErrors[kind] ?? 0) + 1;
    this.stats.decapErrors[kind] = n;
    this.rl.log('warn', `decap:${kind}`, 'mirror datagram skipped', { kind, sender, count: n });
    return -1;
  }

  /**
   * One datagram from `sender` on `listen`: its inner packet's partition (then `packet` and
   * `sensor` are set, and the packet is counted), or -1 (skipped and counted by kind).
   */
  decode(msg: Buffer, sender: string, listen: string, encap: MirrorEncap): number {
    this.stats.datagrams[listen]++;
    this.stats.bytes[listen] += msg.length;
    const d = this.decap;
    const err = decapsulate(encap, msg, d);
    if (err !== null) return this.error(err, sender);
    if (this.o.vni !== undefined && d.vni !== this.o.vni) {
      this.stats.vniFiltered++;
      return -1;
    }
    this.stats.geneveOptionsSkipped += d.optionsSkipped;
    const ms = performance.timeOrigin + performance.now();
    const sec = Math.floor(ms / 1000);
    const p = this.packet;
    p.linktype = d.linktype;
    p.ts.sec = sec;
    p.ts.nsec = Math.floor((ms - sec * 1000) * 1e6);
    p.data = msg.subarray(d.offset);
    p.origLen = p.data.length;
    const outcome = decodePacket(p, this.decoded, this.ignore);
    if (outcome === 'not_ip' || outcome === 'unsupported_link') return this.error('inner_not_ip', sender);
    this.sensor = this.o.sensor ?? this.sensorOf(d.vni, sender);
    this.stats.packets++;
    return partitionOfDecoded(outcome, this.decoded, this.partitions, this.frags);
  }
}

interface DgramHandle {
  fd: number;
  recvStart(): number;
  recvStop(): number;
}

/** Datagrams read with read(2) per datagram event at most (then timers and messages get a turn). */
const DRAIN_MAX = 64;

/**
 * Reads up to DRAIN_MAX queued datagrams of the (non-blocking) socket `fd` into `scratch`, each
 * handed to `f` (a view valid during the call); stops at EAGAIN. Where the sender's address is not
 * needed this costs a fraction of a `message` event (no Buffer, address object or callback per
 * datagram).
 */
export function drainSocket(fd: number, scratch: Buffer, f: (d: Buffer) => void): void {
  for (let i = 0; i < DRAIN_MAX; i++) {
    let n: number;
    try {
      n = readSync(fd, scratch, 0, scratch.length, null);
    } catch {
      return; // EAGAIN: the queue is empty (errors are the event path's to report)
    }
    f(scratch.subarray(0, n));
  }
}

/** The libuv handle of a dgram socket (Node keeps it under a symbol; `_handle` is deprecated). */
export function dgramHandle(s: Socket): DgramHandle {
  const sym = Object.getOwnPropertySymbols(s).find((k) => k.description === 'state symbol');
  const h = sym ? (s as unknown as Record<symbol, { handle?: DgramHandle }>)[sym]?.handle : undefined;
  if (!h || typeof h.fd !== 'number' || h.fd < 0) throw new Error("this Node.js keeps no file descriptor on its dgram sockets where tlsdecrypt looks: use '--threads 1'");
  return h;
}

export class MirrorReceiver {
  readonly stats: MirrorStats;
  readonly sockets: Socket[] = [];
  /** The bound sockets' names (HOST:PORT, the port the kernel chose for port 0), encapsulations and types. */
  protected readonly bound: { name: string; encap: MirrorEncap; type: 'udp4' | 'udp6' }[] = [];
  protected readonly rl = new RateLimitedLog();
  private readonly dec: MirrorDecoder;
  /** --sensor: datagrams drained with read(2) land here (copied by the batcher at once). */
  private readonly scratch = Buffer.allocUnsafe(65536);
  private kernelBase: number | undefined;
  private readonly ports: number[] = [];
  private kernelTimer: NodeJS.Timeout | undefined;
  /** Rejects when the receiver cannot go on (a receive thread failed); never with one thread. */
  readonly failed: Promise<never> = new Promise<never>(() => {});

  constructor(
    readonly batcher: PartitionBatcher,
    protected readonly o: MirrorOptions,
    protected readonly partitions: number,
  ) {
    this.dec = new MirrorDecoder(o, partitions);
    this.stats = this.dec.stats;
  }

  /**
   * Binds every --listen; rejects with an InputError naming the address that failed. With
   * receive = false the sockets are bound but not read here (receive threads read them).
   */
  async bind(receive = true): Promise<void> {
    for (const l of this.o.listen) {
      const hostPart = l.host.includes(':') ? `[${l.host}]` : l.host;
      const type = isIPv6(l.host) ? 'udp6' : 'udp4';
      const s = createSocket({ type, ...(this.o.rcvbufBytes ? { recvBufferSize: this.o.rcvbufBytes } : {}) });
      await new Promise<void>((resolve, reject) => {
        s.once('error', (e: NodeJS.ErrnoException) => reject(new InputError(`--listen ${hostPart}:${l.port}: cannot bind (${e.code ?? e.message})`)));
        s.bind(l.port, l.host, () => {
          if (!receive) dgramHandle(s).recvStop(); // before the first read: libuv reads on the next loop turn
          resolve();
        });
      });
      s.removeAllListeners('error');
      const port = s.address().port; // port 0: the one the kernel chose
      const name = `${hostPart}:${port}`;
      this.ports.push(port);
      this.stats.datagrams[name] = 0;
      this.stats.bytes[name] = 0;
      s.on('error', (e) => this.rl.log('error', `socket:${name}`, 'mirror socket error', { listen: name, error: e }));
      const encap = l.encap;
      if (receive && this.o.sensor === undefined) s.on('message', (msg, rinfo) => this.onDatagram(msg, rinfo, name, encap));
      else if (receive) {
        // --sensor: the sender's address is not needed, so each datagram event drains the queue
        // with read(2) (drainSocket)
        const fd = dgramHandle(s).fd;
        const noSender: RemoteInfo = { address: '-', family: type === 'udp4' ? 'IPv4' : 'IPv6', port: 0, size: 0 };
        s.on('message', (msg, rinfo) => {
          this.onDatagram(msg, rinfo, name, encap);
          drainSocket(fd, this.scratch, (d) => this.onDatagram(d, noSender, name, encap));
        });
      }
      this.sockets.push(s);
      this.bound.push({ name, encap, type });
      if (receive) log('info', 'mirror receiver listening', { listen: name, encap, rcvbuf: s.getRecvBufferSize() });
    }
    this.pollKernel();
    this.kernelTimer = setInterval(() => this.pollKernel(), this.o.kernelPollMs ?? 2000);
    this.kernelTimer.unref();
  }

  private pollKernel(): void {
    const d = kernelUdpDrops(this.ports);
    if (d === undefined) return;
    if (this.kernelBase === undefined) this.kernelBase = d;
    const now = d - this.kernelBase;
    if (now > this.stats.kernelDrops) {
      this.rl.log('warn', 'kernel', 'the kernel dropped mirror datagrams (socket receive buffer full: raise --rcvbuf / net.core.rmem_max)', { dropped: now });
      this.stats.kernelDrops = now;
    }
  }

  /** One datagram (also the entry point for tests and benches without a socket). */
  onDatagram(msg: Buffer, rinfo: RemoteInfo, listen: string, encap: MirrorEncap): void {
    const part = this.dec.decode(msg, rinfo.address, listen, encap);
    if (part >= 0 && !this.batcher.add(part, this.dec.packet, this.dec.sensor)) this.batcher.drop();
  }

  async close(): Promise<void> {
    clearInterval(this.kernelTimer);
    this.pollKernel();
    await Promise.all(this.sockets.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
}
