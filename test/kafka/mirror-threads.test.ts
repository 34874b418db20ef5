/**
 * `publish mirror --threads N`: the receive threads' hand-off to the main thread keeps the order in
 * which the datagrams were taken (sequence numbers, merged up to the watermark), and with real
 * sockets, real threads and the real broker every datagram is counted once across the threads,
 * every bad one by its kind, and every good one published.
 */
import { createSocket } from 'node:dgram';
import { describe, expect, it } from 'vitest';
import type { MessagePort } from 'node:worker_threads';
import { RecordDecoder } from '../../src/kafka/formats.js';
import type { RawPacket } from '../../src/types.js';
import type { MirrorReceiver } from '../../src/kafka/mirror.js';
import { publishMirror } from '../../src/kafka/mirrorPublish.js';
import { ChunkMerger, CHUNK_BYTES, MirrorThread, threadBudget, type ThreadPost } from '../../src/kafka/mirrorThreads.js';
import { InputError } from '../../src/pipeline/replay.js';
import { client, ensureBuilt, readAll, uniq, until } from './helpers.js';

/** An Ethernet/IPv4/TCP frame of flow `port` whose TCP sequence number is `seq`. */
function frame(port: number, seq: number, payload = 40): Buffer {
  const b = Buffer.alloc(14 + 20 + 20 + payload);
  Buffer.from('020000000001020000000002', 'hex').copy(b);
  b.writeUInt16BE(0x0800, 12);
  b[14] = 0x45;
  b.writeUInt16BE(40 + payload, 16);
  b[22] = 64;
  b[23] = 6;
  b.set([10, 93, 0, 1], 26);
  b.set([10, 93, 0, 2], 30);
  b.writeUInt16BE(port, 34);
  b.writeUInt16BE(443, 36);
  b.writeUInt32BE(seq, 38);
  b[46] = 0x50;
  b[47] = 0x18;
  return b;
}
const vxlan = (vni: number, inner: Buffer): Buffer => Buffer.concat([Buffer.from([0x08, 0, 0, 0, vni >> 16, (vni >> 8) & 0xff, vni & 0xff, 0]), inner]);
const tcpSeq = (f: Buffer): number => f.readUInt32BE(38);

/** A receive thread without a socket or a worker: its posts are collected. */
function thread(index: number, seq: SharedArrayBuffer, posts: ThreadPost[], perThreadBytes = 1 << 20): MirrorThread {
  const port = { postMessage: (m: ThreadPost) => posts.push(m), on() {} } as unknown as MessagePort;
  return new MirrorThread({ index, fds: [], listen: [{ name: 'l', encap: 'vxlan', type: 'udp4' }], partitions: 4, seq, perThreadBytes }, port);
}

describe('receive threads: hand-off and merge', () => {
  it('packets come out in the order the threads took them, whatever order the chunks arrive in', () => {
    const seq = new SharedArrayBuffer(4);
    const posts: ThreadPost[][] = [[], [], []];
    const threads = [0, 1, 2].map((i) => thread(i, seq, posts[i], 64 << 20));
    // a deterministic shuffle: which thread takes each datagram, and when a thread flushes
    let r = 12345;
    const rnd = (n: number): number => ((r = (r * 1103515245 + 12345) & 0x7fffffff) % n);
    const N = 3000;
    for (let i = 0; i < N; i++) {
      const t = rnd(3);
      threads[t].onDatagram(vxlan(7, frame(40000 + (i % 5), i, 1000)), `10.0.0.${t}`, 'l', 'vxlan');
      if (rnd(50) === 0) threads[rnd(3)].flush();
    }
    for (const t of threads) t.flush();
    const out: number[] = [];
    const sensors = new Set<string>();
    const merger = new ChunkMerger(3, (_part, p, sensor) => {
      out.push(tcpSeq(p.data));
      sensors.add(sensor);
    }, () => {});
    // thread 2's posts first, then 0's, then 1's: nothing may come out before every thread has reported past it
    for (const w of [2, 0, 1]) {
      for (const m of posts[w]) merger.post(w, m);
      if (w !== 1) expect(out.length).toBe(0);
    }
    for (let w = 0; w < 3; w++) merger.post(w, { hi: Atomics.load(new Int32Array(seq), 0), counters: posts[w].at(-1)!.counters, final: true });
    expect(out).toEqual(Array.from({ length: N }, (_, i) => i));
    expect([...sensors].sort()).toEqual(['vni-7@10.0.0.0', 'vni-7@10.0.0.1', 'vni-7@10.0.0.2']);
    // the counters of the threads add up to what was sent
    expect(posts.reduce((a, p) => a + p.at(-1)!.counters.datagrams.l, 0)).toBe(N);
  });

  it('a thread whose chunks are all held drops and counts (its share of --max-buffer-bytes)', () => {
    const posts: ThreadPost[] = [];
    const t = thread(0, new SharedArrayBuffer(4), posts, 2 * CHUNK_BYTES);
    const n = 400; // 400 x 1,078 bytes: more than two chunks, none handed back
    for (let i = 0; i < n; i++) t.onDatagram(vxlan(7, frame(40000, i, 1000)), '10.0.0.1', 'l', 'vxlan');
    t.flush();
    const c = posts.at(-1)!.counters;
    expect(c.packets).toBe(n);
    expect(c.stageDrops).toBeGreaterThan(0);
    const kept = posts.reduce((a, m) => a + (m.buf ? 1 : 0), 0);
    expect(kept).toBe(2);
    expect(c.stageDrops).toBeLessThan(n);
  });

  it('the threads share of --max-buffer-bytes leaves the batcher the rest; too small a bound is refused', () => {
    const b = threadBudget(64 << 20, 2);
    expect(b.batcherBytes + 2 * b.perThreadBytes).toBe(64 << 20);
    expect(() => threadBudget(1 << 20, 16)).toThrow(InputError);
  });
});

describe('receive threads with sockets and the real broker', () => {
  // with --sensor the socket is drained with read(2) after each datagram event (threads or not)
  it.each([
    [2, undefined],
    [2, 'h13-probe'],
    [1, 'h13-probe'],
  ] as const)('--threads %i (--sensor %s): every datagram counted once, bad ones by kind, good ones published', async (threads, sensor) => {
    ensureBuilt();
    const topic = uniq('h13.mirror.threads');
    let rx: MirrorReceiver | undefined;
    let stop!: () => void;
    const stopSignal = new Promise<void>((r) => (stop = r));
    const done = publishMirror(client(), {
      listen: [{ host: '127.0.0.1', port: 0, encap: 'vxlan' }],
      topic,
      partitions: 4,
      threads,
      sensor,
      rcvbufBytes: 8 << 20,
      lingerMs: 20,
      batchBytes: 64 * 1024,
      maxBufferBytes: 16 << 20,
      stopSignal,
      onStarted: (r) => (rx = r),
    });
    await until('the receiver started', () => rx, 60_000, 50);
    const port = rx!.sockets[0].address().port;
    const s = createSocket('udp4');
    const send = (b: Buffer): Promise<void> => new Promise((r) => s.send(b, port, '127.0.0.1', () => r()));
    const N = 2000;
    for (let i = 0; i < N; i++) {
      await send(vxlan(42, frame(41000 + (i % 7), i)));
      if (i % 100 === 0) {
        await send(Buffer.from([0x08, 0])); // vxlan_truncated
        await send(vxlan(42, Buffer.alloc(6))); // inner_truncated
      }
    }
    await send(Buffer.concat([Buffer.from([0, 0, 0, 0, 0, 0, 42, 0]), frame(1, 1)])); // vxlan_bad_flags
    s.close();
    const bad = 2 * (N / 100) + 1;
    await until('every datagram received', () => Object.values(rx!.stats.datagrams)[0] === N + bad, 30_000, 50);
    stop();
    const res = await done;
    expect(res.mirror.decapErrors).toEqual({ vxlan_truncated: N / 100, inner_truncated: N / 100, vxlan_bad_flags: 1 });
    expect(res.mirror.packets).toBe(N);
    expect(res.publish.publishedPackets).toBe(N);
    expect(Object.values(res.publish.drops).every((d) => d === 0)).toBe(true);
    expect(res.mirror.kernelDrops).toBe(0);
    // every packet once in the topic, each flow in one partition
    const seqs: number[] = [];
    const partOf = new Map<number, number>();
    let partition = -1;
    const sink = {
      packet(p: RawPacket) {
        seqs.push(tcpSeq(p.data));
        const flow = p.data.readUInt16BE(34);
        expect(partOf.get(flow) ?? partition).toBe(partition);
        partOf.set(flow, partition);
        expect(p.sensor).toBe(sensor ?? 'vni-42@127.0.0.1');
      },
      secrets() {},
      anomaly() {},
    };
    const dec = new RecordDecoder(sink);
    for (const rec of await readAll(client(), topic)) {
      partition = rec.partition;
      expect(dec.decode(rec)).toBe(true);
    }
    expect(seqs.sort((a, b) => a - b)).toEqual(Array.from({ length: N }, (_, i) => i));
  }, 120_000);

  it('--max-buffer-bytes too small for the threads: InputError', async () => {
    await expect(
      publishMirror(client(), { listen: [{ host: '127.0.0.1', port: 0, encap: 'vxlan' }], topic: uniq('h13.mirror.small'), partitions: 1, threads: 16, lingerMs: 10, batchBytes: 1024, maxBufferBytes: 1 << 20, stopSignal: Promise.resolve() }),
    ).rejects.toThrow(/too small for --threads 16/);
  });
});
