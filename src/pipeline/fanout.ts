/**
 * `replay --workers N` (N > 1): one reader, N engine threads.
 *
 * The main thread is the dispatcher and does nothing else: it reads the capture (a file or stdin)
 * into large shared chunks (SharedArrayBuffers that every engine thread holds from the start),
 * frames it once there (CaptureReader: packets are views into the chunk), gives each packet its
 * shard by the deterministic host-pair assignment (`packetRouter`, least-loaded at first sight:
 * src/pipeline/sharded.ts), and appends a reference to it (offset, length, header fields) to that
 * shard's packet index (src/pipeline/batch.ts). Once a chunk is framed, each shard that has packets
 * in it gets one message: the chunk's number and its index (a transferred ArrayBuffer). No packet
 * byte is copied: the only copies are the rare record that straddles two reads (the capture reader
 * joins it in a buffer of its own; it travels inline in the index) and pcapng secrets blocks (sent
 * to every shard). A chunk is read into again once every engine that got an index into it has
 * answered that index; the chunks in use are the back-pressure on the reader. Engine threads
 * (workers/engine-thread.ts) answer each index with the NDJSON of the events it produced, which
 * this thread writes out as whole lines (and waits for the writer to drain, the back-pressure of
 * stdout).
 *
 * No engine runs on the dispatcher's thread: with N engines the reader never competes with one of
 * them, and on a machine with more cores than engines the dispatcher's own speed (bench/scaling.mjs
 * `--parts ceiling`) is the bound of the whole process.
 *
 * Why threads with a message port each rather than child processes or Piscina (bench/RESULTS.md,
 * round 5): a shared chunk costs no copy, where a pipe to a child costs two (write, read) and
 * a read pass per child if each reads the file; and a port delivers messages in the order they
 * were posted, which is what an engine needs, where Piscina's queue may start a one-thread pool's
 * tasks out of order (the sequence numbers of workers/stream-shard.ts).
 *
 * The output is the same for every N: each engine sees its host pairs' packets in capture order
 * (plus every pcapng secrets block), so it produces the events a single engine would for them;
 * only the interleaving of shards differs. Capture-level anomalies and malformed key-log lines
 * are counted here, once.
 */
import { existsSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { CaptureReader } from '../capture/index.js';
import { u32be, u32le } from '../capture/pcap.js';
import type { CaptureSink, PcapLayout, RawPacket } from '../types.js';
import { hostPairHashEthIpv4TcpAt } from './flowHash.js';
import { IndexSlots, PacketIndexBuilder } from './batch.js';
import type { EngineOptions, EngineStats } from './engine.js';
import type { NdjsonWriter } from './output.js';
import { InputError, loadKeys, pumpCapture, type ReplayOptions, type RsaKeySpec } from './replay.js';
import { mergeStats, packetRouter } from './sharded.js';

/**
 * Bytes of one shared capture chunk (one file read; one index message per shard that has packets
 * in it): 256 KiB per engine, from 1 to 4 MiB. Small chunks are still in the CPU's cache when they
 * are framed after the read (1 MiB: ~30 % less CPU than 4 MiB with 2 engines, bench/RESULTS.md);
 * with many engines a larger chunk keeps the messages per engine few.
 */
export function fanoutChunkBytes(engines: number): number {
  return Math.min(4 << 20, Math.max(1 << 20, engines << 18));
}
/** Shared chunks per pool, at least: the reader may run this far ahead of the slowest engine. */
const MIN_CHUNKS = 8;

/** What an engine thread needs to start one replay's Engine (`open`). */
export interface EngineThreadConfig {
  keylogs: string[];
  rsaKeys: RsaKeySpec[];
  engine: Partial<EngineOptions>;
  /** Receive indexes and drop them (measures the dispatcher alone). */
  discard?: boolean;
  /**
   * Overwrite what was handed over once it is answered (tests): the index and inline bytes by the
   * engine thread, each chunk by the dispatcher before it is read into again. An engine that kept
   * a view of packet bytes past the call, against the CaptureSink contract, would see garbage.
   */
  poison?: boolean;
}

export type ToEngineThread =
  | { t: 'open'; cfg: EngineThreadConfig }
  /**
   * The pool's shared chunks, numbered by their place in the list (sent before any index), and
   * this engine's index slots: one per chunk in `slots` (IndexSlots).
   */
  | { t: 'chunks'; list: SharedArrayBuffer[]; slots: SharedArrayBuffer; slotWords: number; slotInline: number }
  /** Packets of chunk `chunk` (-1: the index has only inline entries), in capture order. */
  | { t: 'index'; chunk: number; index: Uint32Array; inline?: Uint8Array }
  | { t: 'finish' }
  /** A bare number: this engine's index into that chunk is in the chunk's slot (the common case). */
  | number;
export type FromEngineThread =
  /** `index`: the index's own buffer, handed back for a later one; `chunk`: released by this engine. */
  | { t: 'events'; ndjson: string; events: number; index?: ArrayBuffer; chunk: number }
  /** A bare number: the chunk whose slot index was answered, with no events. */
  | number
  | { t: 'done'; ndjson: string; events: number; stats: EngineStats }
  | { t: 'error'; message: string; input: boolean; chunk?: number };

function engineThreadFile(): string {
  // Compiled: dist/src/pipeline/fanout.js -> dist/workers/engine-thread.js. From sources (tests):
  // src/pipeline/fanout.ts -> <repo>/dist/workers/engine-thread.js (run `npm run build` first).
  const candidates = [new URL('../../workers/engine-thread.js', import.meta.url), new URL('../../dist/workers/engine-thread.js', import.meta.url)];
  for (const u of candidates) {
    const p = fileURLToPath(u);
    if (existsSync(p)) return p;
  }
  throw new Error(`worker module engine-thread.js not found next to ${fileURLToPath(import.meta.url)}: run 'npm run build'`);
}

/** What the dispatcher does with an engine's answers during one replay. */
interface LaneListener {
  events(ndjson: string, events: number): void;
  /** An index was answered: its buffer back, its chunk released by this engine (-1: none). */
  answered(index: ArrayBuffer | undefined, chunk: number): void;
  /** The engine failed or its thread ended (`failure` says why). */
  failed(): void;
}

const NO_LISTENER: LaneListener = { events() {}, answered() {}, failed() {} };

/** One engine thread and the dispatcher's view of it. */
class EngineLane {
  private readonly worker: Worker;
  private done: ((stats: EngineStats | undefined) => void) | undefined;
  private listener: LaneListener = NO_LISTENER;
  /** Why this replay's engine failed (cleared by the next open). */
  failure: Error | undefined;
  /** The thread itself is gone. */
  private dead: Error | undefined;
  closing = false;

  constructor(file: string) {
    this.worker = new Worker(file);
    this.worker.on('message', (m: FromEngineThread) => this.received(m));
    this.worker.on('error', (e: Error) => this.died(new Error(`engine thread failed: ${e.message.split('\n')[0]}`)));
    this.worker.on('exit', (code) => this.died(new Error(`engine thread ended with exit code ${code}`)));
  }

  private received(m: FromEngineThread): void {
    if (typeof m === 'number') {
      this.listener.answered(undefined, m);
      return;
    }
    if (m.t === 'error') {
      this.failure ??= m.input ? new InputError(m.message) : new Error(`engine thread: ${m.message}`);
      if (m.chunk !== undefined) this.listener.answered(undefined, m.chunk);
      this.listener.failed();
      return;
    }
    if (m.ndjson) this.listener.events(m.ndjson, m.events);
    if (m.t === 'events') {
      this.listener.answered(m.index, m.chunk);
    } else {
      const d = this.done;
      this.done = undefined;
      d?.(m.stats);
    }
  }

  private died(e: Error): void {
    if (this.dead) return;
    this.dead = e;
    if (!this.closing) this.failure ??= e;
    this.listener.failed();
    const d = this.done;
    this.done = undefined;
    d?.(undefined);
  }

  /** Hands the pool's shared chunks and this engine's index slots to the thread (before any index refers to them). */
  chunks(list: SharedArrayBuffer[], slots: IndexSlots): void {
    if (!this.dead) this.worker.postMessage({ t: 'chunks', list, slots: slots.sab, slotWords: slots.words, slotInline: slots.inline } satisfies ToEngineThread);
  }

  /** Tells the thread that its index into `chunk` is in the chunk's slot. */
  sendSlot(chunk: number): boolean {
    if (this.dead) return false;
    this.worker.postMessage(chunk satisfies ToEngineThread);
    return true;
  }

  open(cfg: EngineThreadConfig, listener: LaneListener): void {
    if (this.dead) throw this.dead;
    this.failure = undefined;
    this.listener = listener;
    this.worker.postMessage({ t: 'open', cfg } satisfies ToEngineThread);
  }

  /** Hands over an index into `chunk` (its buffer transferred, as the inline bytes': not copied). */
  send(chunk: number, index: Uint32Array, inline: Uint8Array | undefined): boolean {
    if (this.dead) return false;
    const transfer = [index.buffer as ArrayBuffer];
    if (inline) transfer.push(inline.buffer as ArrayBuffer);
    this.worker.postMessage({ t: 'index', chunk, index, inline } satisfies ToEngineThread, transfer);
    return true;
  }

  /** Ends the replay's engine: its last events, then its stats (undefined when the thread is gone). */
  finish(): Promise<EngineStats | undefined> {
    if (this.dead) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      this.done = resolve;
      this.worker.postMessage({ t: 'finish' } satisfies ToEngineThread);
    });
  }

  terminate(): Promise<number> {
    this.closing = true;
    return this.worker.terminate();
  }
}

/**
 * The pool's shared chunks: SharedArrayBuffers made once and handed to every engine thread once,
 * so that an index message names a chunk by its number. A chunk is free, being filled and framed
 * by the reader, or held by the engines that got an index into it until each has answered.
 * (Reused, not made per read: a fresh SharedArrayBuffer per read cost page faults and made V8's
 * reads and framing several times slower, bench/RESULTS.md round 5.)
 */
class ChunkRing {
  readonly sabs: SharedArrayBuffer[];
  readonly bufs: Buffer[];
  private readonly holders: number[];
  private free: number[] = [];
  private wake: (() => void) | undefined;
  /** Set by the replay: fill a released chunk with 0xee before it is read into again (tests). */
  poison = false;
  /** Set by the replay: the reader must stop waiting for a chunk (an engine failed). */
  failed: (() => Error | undefined) | undefined;

  /** Each engine's index slots, one per chunk (by engine number). */
  readonly slots: IndexSlots[];

  constructor(
    readonly chunkBytes: number,
    count: number,
    engines: number,
    /** Entries per index slot, instead of IndexSlots.geometry's (tests). */
    readonly slotEntries?: number,
  ) {
    this.sabs = Array.from({ length: count }, () => new SharedArrayBuffer(chunkBytes));
    this.bufs = this.sabs.map((sab) => Buffer.from(sab));
    this.holders = new Array<number>(count).fill(0);
    const g = IndexSlots.geometry(chunkBytes, engines, slotEntries);
    this.slots = Array.from({ length: engines }, () => new IndexSlots(count, g.words, g.inline));
  }

  /** Every chunk free: a new replay (the last one's engines have all answered). */
  reset(): void {
    this.holders.fill(0);
    this.free = this.sabs.map((_, i) => this.sabs.length - 1 - i);
  }

  /** A free chunk's number; waits while the engines hold them all. Throws when an engine failed. */
  async take(): Promise<number> {
    for (;;) {
      const f = this.failed?.();
      if (f) throw f;
      const id = this.free.pop();
      if (id !== undefined) return id;
      await new Promise<void>((r) => (this.wake = r));
    }
  }

  /** `n` engines got an index into chunk `id` (0: it is free again at once). */
  hold(id: number, n: number): void {
    this.holders[id] = n;
    if (n === 0) this.release(id, true);
  }

  /** One engine answered its index into chunk `id` (or the reader gives back a chunk it did not use). */
  release(id: number, whole = false): void {
    if (id < 0) return;
    if (!whole && --this.holders[id] > 0) return;
    this.holders[id] = 0;
    if (this.poison) this.bufs[id].fill(0xee);
    this.free.push(id);
    this.poke();
  }

  /** Wakes a reader waiting in take() (a chunk came free, or an engine failed). */
  poke(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }
}

/** Where the reader is: the chunk whose bytes the capture reader is framing now. */
interface ReadState {
  chunk: number;
  /** The part just handed to the capture reader ends the chunk: send its indexes. */
  ends: boolean;
}

/**
 * A capture file read into the ring's chunks, one whole chunk per read; the next read runs (in
 * libuv's thread pool) while this thread frames the chunk before it.
 */
async function* fileRegions(capture: string, ring: ChunkRing, at: ReadState): AsyncGenerator<Buffer> {
  const fh = await open(capture, 'r');
  let id = -1;
  let next: Promise<{ bytesRead: number }> | undefined;
  try {
    id = await ring.take();
    next = fh.read(ring.bufs[id], 0, ring.chunkBytes, null);
    for (;;) {
      const { bytesRead } = await next;
      next = undefined;
      if (bytesRead === 0) return;
      const cur = id;
      id = -1;
      id = await ring.take();
      next = fh.read(ring.bufs[id], 0, ring.chunkBytes, null);
      at.chunk = cur;
      at.ends = true;
      yield ring.bufs[cur].subarray(0, bytesRead);
    }
  } finally {
    await next?.catch(() => undefined);
    ring.release(id, true);
    await fh.close();
  }
}

/**
 * A stream (stdin) copied into the ring's chunks as it comes, each piece framed at once; a chunk's
 * indexes go out when it is full or the stream ends. The copy is one large memcpy per piece the
 * stream delivers, not one per packet.
 */
async function* streamRegions(input: AsyncIterable<Buffer>, ring: ChunkRing, at: ReadState): AsyncGenerator<Buffer> {
  let id = -1;
  let fill = 0;
  for await (const piece of input) {
    let o = 0;
    while (o < piece.length) {
      if (id < 0) {
        id = await ring.take();
        fill = 0;
      }
      const n = Math.min(piece.length - o, ring.chunkBytes - fill);
      const buf = ring.bufs[id];
      buf.set(o === 0 && n === piece.length ? piece : piece.subarray(o, o + n), fill);
      at.chunk = id;
      at.ends = fill + n === ring.chunkBytes;
      yield buf.subarray(fill, fill + n);
      fill += n;
      o += n;
      if (at.ends) id = -1;
    }
  }
  // the last, partly filled chunk: its indexes go out after the capture reader's end
}

/**
 * N engine threads, started once and reusable for one replay after another (not concurrently),
 * and the shared chunks they read packets from. `close()` ends them.
 */
export class EnginePool {
  readonly lanes: EngineLane[];
  private ring: ChunkRing | undefined;

  constructor(readonly size: number) {
    const file = engineThreadFile();
    this.lanes = Array.from({ length: size }, () => new EngineLane(file));
  }

  /** The shared chunks of `chunkBytes` each (made, and handed to every thread, on first use). */
  chunks(chunkBytes: number, slotEntries?: number): ChunkRing {
    if (this.ring?.chunkBytes !== chunkBytes || this.ring.slotEntries !== slotEntries) {
      const ring = new ChunkRing(chunkBytes, Math.max(MIN_CHUNKS, 2 * this.size), this.size, slotEntries);
      this.lanes.forEach((l, i) => l.chunks(ring.sabs, ring.slots[i]));
      this.ring = ring;
    }
    this.ring.reset();
    return this.ring;
  }

  async close(): Promise<void> {
    await Promise.all(this.lanes.map((l) => l.terminate()));
  }
}

export interface FanoutOptions {
  /** Engines to use (the first `shards` threads of the pool); default: all. */
  shards?: number;
  /** Engines receive the indexes and drop them: the dispatcher's own ceiling (bench only). */
  discard?: boolean;
  /** See EngineThreadConfig.poison (tests). */
  poison?: boolean;
  /** Bytes per shared chunk (tests use tiny chunks, so that records straddle them and chunks go round). */
  chunkBytes?: number;
  /** Entries per index slot (tests: tiny slots, so that indexes also go the way of those that do not fit). */
  slotEntries?: number;
  /** Read the capture from this stream instead of `opts.capture` (tests: stdin's path with pieces of their choice). */
  input?: AsyncIterable<Buffer>;
}

/**
 * Replays `opts.capture` through `pool`: this thread reads, frames and dispatches, the pool's
 * threads decrypt. Events go to `out`; resolves with the merged stats.
 */
export async function replayFanout(opts: ReplayOptions, out: NdjsonWriter, pool: EnginePool, fo: FanoutOptions = {}): Promise<EngineStats> {
  // Checks the key files before anything is read (exit 2 naming the file) and counts their
  // malformed lines once; each engine thread loads its own copy.
  const keys = loadKeys(opts.keylogs, opts.rsaKeys);
  const shards = fo.shards ?? pool.size;
  if (shards < 1 || shards > pool.size) throw new Error(`replayFanout: ${shards} shards for a pool of ${pool.size}`);
  const lanes = pool.lanes.slice(0, shards);
  const cfg: EngineThreadConfig = { keylogs: opts.keylogs, rsaKeys: opts.rsaKeys, engine: opts.engine, discard: fo.discard, poison: fo.poison };
  const ring = pool.chunks(fo.chunkBytes ?? fanoutChunkBytes(pool.size), fo.slotEntries);
  ring.poison = fo.poison === true;
  ring.failed = () => lanes.find((l) => l.failure)?.failure;
  // Index buffers go to an engine and come back with its answer, to be filled again.
  const spare: ArrayBuffer[] = [];
  const listener: LaneListener = {
    events: (ndjson, events) => out.writeRaw(ndjson, events),
    answered: (index, chunk) => {
      if (index) spare.push(index);
      ring.release(chunk);
    },
    failed: () => ring.poke(),
  };
  for (const l of lanes) l.open(cfg, listener);
  const indexes = lanes.map(() => new PacketIndexBuilder(() => spare.pop() ?? new ArrayBuffer(4096 * 7 * 4)));
  const at: ReadState = { chunk: -1, ends: false };
  /**
   * Sends every shard's index into the current chunk (in the chunk's slot of that engine, or in a
   * buffer of its own when it does not fit); the chunk is held until they answer.
   */
  const dispatch = (): void => {
    let holders = 0;
    const c = at.chunk;
    for (let s = 0; s < shards; s++) {
      const ix = indexes[s];
      if (ix.count === 0) continue;
      if (c >= 0 && ix.copyToSlot(ring.slots[s].slotWords[c], ring.slots[s].slotInline[c])) {
        if (lanes[s].sendSlot(c)) holders++;
        continue;
      }
      const refs = ix.refs > 0;
      const { index, inline } = ix.take();
      if (lanes[s].send(refs ? at.chunk : -1, index, inline) && refs) holders++;
    }
    if (at.chunk >= 0) ring.hold(at.chunk, holders);
    at.chunk = -1;
  };
  const route = packetRouter(shards);
  // Whether `buf` is (a view of) the chunk being framed; remembered per buffer, since `.buffer`
  // is a call into V8's runtime, too dear once per packet.
  let lastBuf: Buffer | undefined;
  let lastChunk = -1;
  let lastIn = false;
  const inChunk = (buf: Buffer): boolean => {
    if (buf !== lastBuf || at.chunk !== lastChunk) {
      lastBuf = buf;
      lastChunk = at.chunk;
      lastIn = at.chunk >= 0 && buf.buffer === ring.sabs[at.chunk];
    }
    return lastIn;
  };
  const capAnomalies: Record<string, number> = {};
  const sink: CaptureSink = {
    packet(p: RawPacket) {
      const ix = indexes[route(p)];
      // a view into the chunk being framed, or a record the capture reader joined from two reads
      if (at.chunk >= 0 && p.data.buffer === ring.sabs[at.chunk]) ix.addRef(p, p.data.byteOffset);
      else ix.addInline(p);
    },
    // classic pcap: no RawPacket and no view per packet when its bytes tell its host pair
    packetAt(buf: Buffer, off: number, caplen: number, origLen: number, sec: number, nsec: number, linktype: number) {
      const s = route.at(buf, off, caplen, linktype);
      const p = (): RawPacket => ({ linktype, ts: { sec, nsec }, data: buf.subarray(off, off + caplen), origLen, ifIndex: 0 });
      if (s < 0) sink.packet(p());
      else if (inChunk(buf)) indexes[s].addRefAt(buf.byteOffset + off, caplen, origLen, sec, nsec, linktype);
      else indexes[s].addInline(p());
    },
    // classic pcap, the common case in one loop: complete Ethernet/IPv4/TCP records in the chunk
    // being framed are routed and indexed here, with no call per record; the framer hands on any
    // other record (and those of a buffer the capture reader joined) through packetAt
    pcapRecords(buf: Buffer, off: number, end: number, layout: PcapLayout): number {
      if (layout.linktype !== 1 || !inChunk(buf)) return off;
      const { le, nano, maxCaplen } = layout;
      const base = buf.byteOffset;
      let packets = 0;
      while (end - off >= 16) {
        const caplen = le ? u32le(buf, off + 8) : u32be(buf, off + 8);
        const d = off + 16;
        if (caplen > maxCaplen || end - d < caplen) break;
        const h = hostPairHashEthIpv4TcpAt(buf, d, caplen);
        if (h < 0) break;
        let sec = le ? u32le(buf, off) : u32be(buf, off);
        const frac = le ? u32le(buf, off + 4) : u32be(buf, off + 4);
        const origLen = le ? u32le(buf, off + 12) : u32be(buf, off + 12);
        let nsec = nano ? frac : frac * 1000;
        if (nsec >= 1_000_000_000) {
          // as PcapFramer.record does
          sec += Math.floor(nsec / 1_000_000_000);
          nsec %= 1_000_000_000;
        }
        indexes[route.assigner.shardOf(h, caplen)].addRefAt(base + d, caplen, origLen, sec, nsec, 1);
        packets++;
        off = d + caplen;
      }
      layout.packets += packets;
      return off;
    },
    secrets(type: number, data: Buffer) {
      for (const ix of indexes) ix.addSecrets(type, data);
    },
    anomaly(code: string) {
      capAnomalies[code] = (capAnomalies[code] ?? 0) + 1;
    },
  };
  const reader = new CaptureReader(sink, opts.captureLimits);
  opts.progress?.watch(reader);
  const stdin = fo.input ?? (opts.capture === '-' ? process.stdin : undefined);
  let finals: (EngineStats | undefined)[];
  try {
    await pumpCapture(
      opts.capture,
      reader,
      async () => {
        if (at.ends) dispatch();
        await out.drained();
      },
      opts.stop,
      stdin ? streamRegions(stdin, ring, at) : fileRegions(opts.capture, ring, at),
    );
    // the last chunk of a stream, and what the capture reader's end added
    dispatch();
  } finally {
    // Also after a failure: every engine ends this replay (its answers all in) before the pool
    // can serve another one.
    finals = await Promise.all(lanes.map((l) => l.finish()));
    ring.failed = undefined;
  }
  for (const l of lanes) if (l.failure) throw l.failure;
  if (finals.some((s) => s === undefined)) throw new Error('an engine thread ended before the replay did');
  const total = mergeStats(finals as EngineStats[]);
  total.packets = reader.packets;
  for (const [k, v] of Object.entries(capAnomalies)) total.anomalies[k] = (total.anomalies[k] ?? 0) + v;
  if (keys.malformedKeylogLines) total.anomalies.keylog_malformed_line = (total.anomalies.keylog_malformed_line ?? 0) + keys.malformedKeylogLines;
  return total;
}

/** Replays `opts.capture` with `shards` engines in threads; one reader dispatches . */
export async function replaySharded(opts: ReplayOptions, out: NdjsonWriter, shards: number): Promise<EngineStats> {
  const pool = new EnginePool(shards);
  try {
    return await replayFanout(opts, out, pool);
  } finally {
    await pool.close();
  }
}
