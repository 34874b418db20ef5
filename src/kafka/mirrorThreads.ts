/**
 * `publish mirror --threads N` (N >= 2): N receive threads on the same sockets, one batcher and
 * producer on the main thread.
 *
 *   main thread: binds every --listen (bind errors exit 2 as with one thread), reads nothing
 *   receive thread i: its own descriptor of each bound socket (a dup: see dupSockets), so the
 *     kernel hands each datagram to whichever thread calls recvmsg first; per datagram
 *     MirrorDecoder (count, decapsulate, VNI filter, decode, partition, sensor), then the inner
 *     packet is appended to a chunk (CHUNK_BYTES) with a sequence number taken from one shared
 *     atomic counter; full chunks, and every FLUSH_MS the partial one, go to the main thread
 *     (transferred, not copied) with the thread's cumulative counters
 *   main thread: merges the threads' chunks by sequence number up to the watermark (the lowest
 *     counter value any thread has reported: every packet below it has arrived), feeds them to the
 *     PartitionBatcher in that order, hands the chunk buffers back for reuse; Kafka as before
 *
 * Order: the sequence number is taken in the datagram's callback, right after its recvmsg, so the
 * merged order is the order in which the threads took the datagrams from the socket, except for
 * datagrams taken by two threads within the same few microseconds (or while a thread was
 * preempted between its recvmsg and the callback): those may swap. The records of a partition
 * therefore carry its packets in receive order up to such swaps of neighbouring datagrams — the
 * reordering a network path can cause anyway, which the engine's TCP reassembly absorbs: by
 * sequence numbers within a direction, by ACK numbers across the two (src/tcp/flowTable.ts; a
 * preempted thread can put a request after its response).
 *
 * Memory: each thread holds at most `perThreadBytes` of chunks (filling, sent, waiting for the
 * merge); a datagram that does not fit is dropped and counted (`buffer_full`). The batcher gets
 * --max-buffer-bytes minus the threads' share, so the whole stays under --max-buffer-bytes.
 */
import { spawn } from 'node:child_process';
import type { Socket } from 'node:dgram';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker, type MessagePort } from 'node:worker_threads';
import type { MirrorEncap } from '../decode/mirrorDecap.js';
import { InputError } from '../pipeline/replay.js';
import type { RawPacket } from '../types.js';
import type { PartitionBatcher } from './batcher.js';
import { log } from './log.js';
import { dgramHandle, drainSocket, MirrorDecoder, MirrorReceiver, type MirrorOptions, type MirrorStats } from './mirror.js';

/** A chunk holds at least one datagram of the largest size (64 KiB) plus its header. */
export const CHUNK_BYTES = 128 * 1024;
/** How often a receive thread sends its partial chunk (and its counter) to the main thread. */
const FLUSH_MS = 10;
/** Per packet in a chunk: seq i32, length u32, partition u16, sensor index u16, linktype u16, pad, sec u32, nsec u32. */
const HDR = 24;
const EMPTY = Buffer.alloc(0);

/** What one receive thread is given. */
export interface MirrorThreadConfig {
  index: number;
  /** The main thread's descriptors of the bound sockets (each thread gets its own dup of them). */
  fds: number[];
  listen: { name: string; encap: MirrorEncap; type: 'udp4' | 'udp6' }[];
  vni?: number;
  sensor?: string;
  partitions: number;
  /** Int32Array(1): the shared sequence counter. */
  seq: SharedArrayBuffer;
  perThreadBytes: number;
}

export type ThreadCounters = Omit<MirrorStats, 'kernelDrops'> & { stageDrops: number };

/** Receive thread → main thread. */
export interface ThreadPost {
  /** A chunk of packets (transferred), `used` bytes of it, the sensor names its indexes refer to. */
  buf?: ArrayBuffer;
  used?: number;
  sensors?: string[];
  /** The shared counter when this was sent: every packet of this thread below it is sent. */
  hi: number;
  counters: ThreadCounters;
  ready?: boolean;
  final?: boolean;
}

/** Main thread → receive thread. */
type MainPost = { recycle: ArrayBuffer } | { go: true } | { stop: true };

/** The memory each receive thread may hold, and what is left for the batcher. */
export function threadBudget(maxBufferBytes: number, threads: number): { perThreadBytes: number; batcherBytes: number } {
  const perThreadBytes = Math.max(2 * CHUNK_BYTES, Math.min(8 << 20, Math.floor(maxBufferBytes / (4 * threads))));
  const batcherBytes = maxBufferBytes - threads * perThreadBytes;
  if (batcherBytes < maxBufferBytes / 2) {
    throw new InputError(`--max-buffer-bytes ${maxBufferBytes} is too small for --threads ${threads} (needs at least ${threads * 4 * CHUNK_BYTES})`);
  }
  return { perThreadBytes, batcherBytes };
}

// ---------------------------------------------------------------------------------------------
// receive thread

/**
 * Own descriptors of the main thread's sockets: a child process gets them on its stdio and sends
 * them back over its IPC channel (SCM_RIGHTS, as Node's cluster shares UDP sockets), which makes
 * each a separate descriptor owned by this thread, closed by it alone. (Wrapping the main thread's
 * descriptor numbers directly would leave several handles on one number, each closing it.)
 */
export function dupSockets(fds: number[], types: ('udp4' | 'udp6')[]): Promise<Socket[]> {
  const src =
    `const d=require('dgram');const t=${JSON.stringify(types)};let left=t.length;` +
    `t.forEach((ty,i)=>{const s=d.createSocket(ty);s.bind({fd:4+i},()=>process.send(i,s,()=>{s.close();if(--left===0)process.disconnect();}));});`;
  const child = spawn(process.execPath, ['-e', src], { stdio: ['ignore', 'ignore', 'inherit', 'ipc', ...fds] });
  return new Promise((resolve, reject) => {
    const got: Socket[] = [];
    let n = 0;
    child.on('message', (i: number, s: Socket) => {
      dgramHandle(s).recvStop(); // bound and reading from the next loop turn on: not yet
      got[i] = s;
      if (++n === fds.length) resolve(got);
    });
    child.once('error', reject);
    child.once('exit', (code) => {
      if (n < fds.length) reject(new Error(`the socket-sharing helper process exited (${code}) before handing over the sockets`));
    });
  });
}

/** The body of one receive thread (workers/mirror-thread.ts). */
export class MirrorThread {
  private readonly dec: MirrorDecoder;
  private readonly seq: Int32Array;
  private readonly free: ArrayBuffer[] = [];
  private chunk: Buffer | undefined;
  private used = 0;
  /** Bytes of chunks this thread holds (filling, sent and not yet handed back). */
  private held = 0;
  private sensors = new Map<string, number>();
  private sensorList: string[] = [];
  private stageDrops = 0;
  private lastHi = 0;
  /** --sensor: datagrams read with read(2) land here (copied into the chunk at once). */
  private readonly scratch = Buffer.allocUnsafe(65536);
  /** Datagrams came since the last send. */
  private dirty = false;
  private sockets: Socket[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly cfg: MirrorThreadConfig,
    private readonly port: MessagePort,
  ) {
    this.dec = new MirrorDecoder(cfg, cfg.partitions);
    this.seq = new Int32Array(cfg.seq);
    for (const l of cfg.listen) {
      this.dec.stats.datagrams[l.name] = 0;
      this.dec.stats.bytes[l.name] = 0;
    }
  }

  async start(): Promise<void> {
    this.port.on('message', (m: MainPost) => {
      if ('recycle' in m) {
        this.held -= m.recycle.byteLength;
        if (m.recycle.byteLength === CHUNK_BYTES) this.free.push(m.recycle);
      } else if ('go' in m) {
        for (const s of this.sockets) dgramHandle(s).recvStart();
      } else void this.stop();
    });
    // not read until every thread is ready (the main thread merges only what all have reported)
    this.sockets = await dupSockets(this.cfg.fds, this.cfg.listen.map((l) => l.type));
    this.sockets.forEach((s, i) => {
      const { name, encap } = this.cfg.listen[i];
      if (this.cfg.sensor === undefined) {
        s.on('message', (msg, rinfo) => this.onDatagram(msg, rinfo.address, name, encap));
      } else {
        // --sensor: the sender's address is not needed, so each datagram event drains the queue
        // with read(2) (drainSocket)
        const fd = dgramHandle(s).fd;
        s.on('message', (msg, rinfo) => {
          this.onDatagram(msg, rinfo.address, name, encap);
          drainSocket(fd, this.scratch, (d) => this.onDatagram(d, '-', name, encap));
        });
      }
      s.on('error', (e) => log('error', 'mirror socket error', { listen: name, thread: this.cfg.index, error: e }));
    });
    this.timer = setInterval(() => {
      // the partial chunk, the counters when they moved, or the sequence counter alone when other
      // threads moved it (the main thread's watermark)
      if (this.dirty || Atomics.load(this.seq, 0) !== this.lastHi) this.send();
    }, FLUSH_MS);
    this.send(false, true);
  }

  onDatagram(msg: Buffer, sender: string, listen: string, encap: MirrorEncap): void {
    this.dirty = true;
    const part = this.dec.decode(msg, sender, listen, encap);
    if (part < 0) return;
    const p = this.dec.packet;
    const need = HDR + p.data.length;
    let c = this.chunk;
    if (c !== undefined && this.used + need > c.length) {
      this.send();
      c = undefined;
    }
    if (c === undefined && !(c = this.newChunk())) {
      this.stageDrops++;
      return;
    }
    let si = this.sensors.get(this.dec.sensor);
    if (si === undefined) {
      si = this.sensorList.push(this.dec.sensor) - 1;
      this.sensors.set(this.dec.sensor, si);
    }
    const o = this.used;
    c.writeInt32LE(Atomics.add(this.seq, 0, 1), o);
    c.writeUInt32LE(p.data.length, o + 4);
    c.writeUInt16LE(part, o + 8);
    c.writeUInt16LE(si, o + 10);
    c.writeUInt16LE(p.linktype, o + 12);
    c.writeUInt32LE(p.ts.sec >>> 0, o + 16);
    c.writeUInt32LE(p.ts.nsec >>> 0, o + 20);
    p.data.copy(c, o + HDR);
    this.used = o + need;
  }

  private newChunk(): Buffer | undefined {
    if (this.chunk !== undefined) return this.chunk; // kept after a copy was sent
    let ab = this.free.pop();
    if (ab === undefined) {
      if (this.held + CHUNK_BYTES > this.cfg.perThreadBytes) return undefined;
      ab = new ArrayBuffer(CHUNK_BYTES);
      this.held += CHUNK_BYTES;
    }
    this.used = 0;
    return (this.chunk = Buffer.from(ab));
  }

  private counters(): ThreadCounters {
    const s = this.dec.stats;
    return { datagrams: s.datagrams, bytes: s.bytes, decapErrors: s.decapErrors, vniFiltered: s.vniFiltered, packets: s.packets, geneveOptionsSkipped: s.geneveOptionsSkipped, stageDrops: this.stageDrops };
  }

  /** Sends the partial chunk (or the counter alone) now. */
  flush(): void {
    this.send();
  }

  /**
   * Sends the chunk (or the counter alone). A chunk less than half full (the timer's flush at low
   * rates) goes as a copy of its used part, so that a trickle does not hold a chunk per flush.
   */
  private send(final = false, ready = false): void {
    this.dirty = false;
    const hi = (this.lastHi = Atomics.load(this.seq, 0));
    const m: ThreadPost = { hi, counters: this.counters(), ...(final ? { final } : {}), ...(ready ? { ready } : {}) };
    const c = this.chunk;
    if (c === undefined || this.used === 0) {
      this.port.postMessage(m);
      return;
    }
    if (this.used < c.length / 2 && this.held + this.used <= this.cfg.perThreadBytes) {
      const copy = new Uint8Array(this.used);
      copy.set(c.subarray(0, this.used));
      this.held += this.used;
      m.buf = copy.buffer;
    } else {
      m.buf = c.buffer as ArrayBuffer;
      this.chunk = undefined;
    }
    m.used = this.used;
    m.sensors = this.sensorList;
    this.used = 0;
    this.sensors = new Map();
    this.sensorList = [];
    this.port.postMessage(m, [m.buf]);
  }

  private async stop(): Promise<void> {
    clearInterval(this.timer);
    await Promise.all(this.sockets.map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.send(true);
  }
}

// ---------------------------------------------------------------------------------------------
// main thread

export function mirrorThreadFile(): string {
  // Compiled: dist/src/kafka/mirrorThreads.js -> dist/workers/mirror-thread.js. From sources
  // (tests): <repo>/dist/workers/mirror-thread.js (run `npm run build` first).
  for (const u of [new URL('../../workers/mirror-thread.js', import.meta.url), new URL('../../dist/workers/mirror-thread.js', import.meta.url)]) {
    const p = fileURLToPath(u);
    if (existsSync(p)) return p;
  }
  throw new Error(`worker module mirror-thread.js not found next to ${fileURLToPath(import.meta.url)}: run 'npm run build'`);
}

interface Pending {
  buf: Buffer;
  off: number;
  end: number;
  sensors: string[];
}

/** `a` before `b` in 32-bit serial-number order. */
const before = (a: number, b: number): boolean => ((a - b) | 0) < 0;

/**
 * The main thread's side of the hand-off: the receive threads' chunks in, their packets out in
 * sequence order, each once every thread has reported a counter above it (the watermark).
 */
export class ChunkMerger {
  private readonly pending: Pending[][] = [];
  private readonly hi: number[] = [];
  private readonly done: boolean[] = [];
  /** Each thread's last counters (summed by the receiver). */
  readonly counters: (ThreadCounters | undefined)[] = [];
  private readonly packet: RawPacket = { linktype: 1, ts: { sec: 0, nsec: 0 }, data: EMPTY, origLen: 0, ifIndex: 0 };

  constructor(
    threads: number,
    /** One packet (a view valid during the call), its partition and sensor. */
    private readonly emit: (partition: number, p: RawPacket, sensor: string) => void,
    /** A chunk buffer every packet of which has been emitted (back to its thread). */
    private readonly recycle: (thread: number, ab: ArrayBuffer) => void,
  ) {
    for (let i = 0; i < threads; i++) {
      this.pending.push([]);
      this.hi.push(0);
      this.done.push(false);
      this.counters.push(undefined);
    }
  }

  get allDone(): boolean {
    return this.done.every(Boolean);
  }

  /** What thread `w` sent; emits every packet that can go now. */
  post(w: number, m: ThreadPost): void {
    if (m.buf) this.pending[w].push({ buf: Buffer.from(m.buf), off: 0, end: m.used!, sensors: m.sensors! });
    this.hi[w] = m.hi;
    if (m.final) this.done[w] = true;
    this.counters[w] = m.counters;
    this.merge();
  }

  private merge(): void {
    let all = true;
    let mark = 0;
    for (let w = 0; w < this.hi.length; w++) {
      if (this.done[w]) continue;
      if (all || before(this.hi[w], mark)) mark = this.hi[w];
      all = false;
    }
    const q = this.pending;
    const p = this.packet;
    for (;;) {
      let best = -1;
      let bestSeq = 0;
      for (let w = 0; w < q.length; w++) {
        if (!q[w].length) continue;
        const h = q[w][0];
        const s = h.buf.readInt32LE(h.off);
        if (!all && !before(s, mark)) continue;
        if (best < 0 || before(s, bestSeq)) {
          best = w;
          bestSeq = s;
        }
      }
      if (best < 0) return;
      const h = q[best][0];
      const b = h.buf;
      const o = h.off;
      const len = b.readUInt32LE(o + 4);
      p.linktype = b.readUInt16LE(o + 12);
      p.ts.sec = b.readUInt32LE(o + 16);
      p.ts.nsec = b.readUInt32LE(o + 20);
      p.data = b.subarray(o + HDR, o + HDR + len);
      p.origLen = len;
      this.emit(b.readUInt16LE(o + 8), p, h.sensors[b.readUInt16LE(o + 10)]);
      h.off = o + HDR + len;
      if (h.off >= h.end) {
        q[best].shift();
        p.data = EMPTY; // no reference to a buffer about to be handed back
        if (!this.done[best]) this.recycle(best, b.buffer as ArrayBuffer);
      }
    }
  }
}

export class ThreadedMirrorReceiver extends MirrorReceiver {
  private readonly workers: Worker[] = [];
  private readonly merger: ChunkMerger;
  private stageDropsSeen = 0;
  private finals: (() => void) | undefined;
  private failure: ((e: Error) => void) | undefined;
  /** Rejects when a receive thread fails (a bug: bad input is counted, never thrown). */
  override readonly failed = new Promise<never>((_, reject) => (this.failure = reject));

  constructor(
    batcher: PartitionBatcher,
    o: MirrorOptions,
    partitions: number,
    private readonly threads: number,
    private readonly perThreadBytes: number,
  ) {
    super(batcher, o, partitions);
    this.failed.catch(() => {});
    this.merger = new ChunkMerger(
      threads,
      (part, p, sensor) => {
        if (!batcher.add(part, p, sensor)) batcher.drop();
      },
      (w, ab) => this.workers[w].postMessage({ recycle: ab } satisfies MainPost, [ab]),
    );
  }

  override async bind(): Promise<void> {
    await super.bind(false);
    const seq = new SharedArrayBuffer(4);
    const fds = this.sockets.map((s) => dgramHandle(s).fd);
    const file = mirrorThreadFile();
    const ready: Promise<void>[] = [];
    for (let i = 0; i < this.threads; i++) {
      const cfg: MirrorThreadConfig = { index: i, fds, listen: this.bound, vni: this.o.vni, sensor: this.o.sensor, partitions: this.partitions, seq, perThreadBytes: this.perThreadBytes };
      const w = new Worker(file, { workerData: cfg });
      this.workers.push(w);
      ready.push(
        new Promise<void>((resolve, reject) => {
          w.on('message', (m: ThreadPost) => {
            this.merger.post(i, m);
            this.sumCounters();
            if (m.ready) resolve();
            if (m.final && this.merger.allDone) this.finals?.();
          });
          w.once('error', (e) => {
            reject(e);
            this.failure?.(e);
          });
          w.once('exit', (code) => {
            const e = new Error(`mirror receive thread ${i} exited (${code})`);
            reject(e);
            if (!this.merger.allDone) this.failure?.(e);
          });
        }),
      );
    }
    await Promise.all(ready);
    for (const w of this.workers) w.postMessage({ go: true } satisfies MainPost);
    for (let i = 0; i < this.bound.length; i++) {
      const { name, encap } = this.bound[i];
      log('info', 'mirror receiver listening', { listen: name, encap, rcvbuf: this.sockets[i].getRecvBufferSize(), threads: this.threads });
    }
  }

  /** The receiver's counters: the threads' sums (kernel drops stay the main thread's own). */
  private sumCounters(): void {
    const s = this.stats;
    for (const k of Object.keys(s.datagrams)) s.datagrams[k] = 0;
    for (const k of Object.keys(s.bytes)) s.bytes[k] = 0;
    for (const k of Object.keys(s.decapErrors) as (keyof MirrorStats['decapErrors'])[]) s.decapErrors[k] = 0;
    s.vniFiltered = s.packets = s.geneveOptionsSkipped = 0;
    let stageDrops = 0;
    for (const c of this.merger.counters) {
      if (!c) continue;
      for (const [k, v] of Object.entries(c.datagrams)) s.datagrams[k] = (s.datagrams[k] ?? 0) + v;
      for (const [k, v] of Object.entries(c.bytes)) s.bytes[k] = (s.bytes[k] ?? 0) + v;
      for (const [k, v] of Object.entries(c.decapErrors) as [keyof MirrorStats['decapErrors'], number][]) s.decapErrors[k] = (s.decapErrors[k] ?? 0) + v;
      s.vniFiltered += c.vniFiltered;
      s.packets += c.packets;
      s.geneveOptionsSkipped += c.geneveOptionsSkipped;
      stageDrops += c.stageDrops;
    }
    if (stageDrops > this.stageDropsSeen) {
      this.batcher.drop(stageDrops - this.stageDropsSeen);
      this.stageDropsSeen = stageDrops;
    }
  }

  override async close(): Promise<void> {
    const finals = new Promise<void>((r) => (this.finals = r));
    for (const w of this.workers) w.postMessage({ stop: true } satisfies MainPost);
    await Promise.race([finals, this.failed]).catch(() => {});
    await Promise.all(this.workers.map((w) => w.terminate()));
    await super.close();
  }
}

/** A receive thread's entry (workers/mirror-thread.ts). */
export async function runMirrorThread(cfg: MirrorThreadConfig, port: MessagePort): Promise<void> {
  await new MirrorThread(cfg, port).start();
}
