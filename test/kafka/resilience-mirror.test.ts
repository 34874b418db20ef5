/**
 * The mirror receiver under pressure, against a PRIVATE broker (TLSDECRYPT_TEST_OWN_KAFKA_PORT)
 * that is stopped and started again: memory stays under --max-buffer-bytes, what does not fit is
 * dropped and counted (cause kafka_unavailable), every datagram is accounted for (published,
 * dropped, or dropped by the kernel), and the receiver reconnects by itself: what it held and
 * what arrives after the restart reaches the topic.
 */
import { createSocket } from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MirrorReceiver, MirrorResult } from '../../src/kafka/mirror.js';
import { publishMirror } from '../../src/kafka/mirrorPublish.js';
import { readAll, sleep, uniq, until } from './helpers.js';
import { OwnBroker } from './resilienceHelpers.js';
import { PCAP_CONTENT_TYPE } from '../../src/kafka/formats.js';

/** A VXLAN datagram carrying an Ethernet/IPv4/TCP frame of `payload` bytes (flow by `flow`). */
function vxlanTcp(flow: number, seq: number, payload: number): Buffer {
  const b = Buffer.alloc(8 + 14 + 20 + 20 + payload);
  b[0] = 0x08;
  b.writeUIntBE(7, 4, 3); // VNI 7
  let o = 8;
  Buffer.from('020000000001020000000002', 'hex').copy(b, o);
  b.writeUInt16BE(0x0800, o + 12);
  o += 14;
  b[o] = 0x45;
  b.writeUInt16BE(20 + 20 + payload, o + 2);
  b[o + 8] = 64;
  b[o + 9] = 6;
  b.set([10, 93, 0, 1], o + 12);
  b.set([10, 93, 0, 2], o + 16);
  o += 20;
  b.writeUInt16BE(40000 + flow, o);
  b.writeUInt16BE(443, o + 2);
  b.writeUInt32BE(seq, o + 4);
  b[o + 12] = 0x50;
  b[o + 13] = 0x18;
  return b;
}

describe('publish mirror with the broker stopped and restarted (private broker)', () => {
  const broker = new OwnBroker();
  const topic = uniq('h13.mirror.outage');
  const maxBufferBytes = 1 << 20;
  let stop!: () => void;
  let rx!: MirrorReceiver;
  let done!: Promise<MirrorResult>;
  let port = 0;
  let sent = 0;
  const sock = createSocket('udp4');

  const send = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i++) {
      sock.send(vxlanTcp(sent % 16, sent, 1400), port, '127.0.0.1');
      sent++;
      if (i % 50 === 49) await sleep(2); // a pace the receiver keeps up with: kernel drops stay rare
    }
    await sleep(50);
  };

  beforeAll(async () => {
    broker.start();
    let started!: () => void;
    const ready = new Promise<void>((r) => (started = r));
    done = publishMirror(broker.client('h13-mirror'), {
      listen: [{ host: '127.0.0.1', port: 0, encap: 'vxlan' }],
      topic,
      partitions: 4,
      lingerMs: 20,
      batchBytes: 64 * 1024,
      maxBufferBytes,
      stopSignal: new Promise<void>((r) => (stop = r)),
      kernelPollMs: 200,
      onStarted: (r) => {
        rx = r;
        port = (r.sockets[0].address() as { port: number }).port;
        started();
      },
    });
    await ready;
  }, 300_000);

  afterAll(async () => {
    sock.close();
    stop?.();
    await done?.catch(() => {});
    if (broker.running()) broker.stop();
  });

  const accounted = (): number => {
    const s = rx.batcher.stats;
    return s.packets + s.drops.buffer_full + s.drops.kafka_unavailable + rx.stats.kernelDrops;
  };

  it('bounded while Kafka is down, counts what it drops, reconnects by itself', async () => {
    await send(200);
    await until('the first packets published', () => rx.batcher.stats.publishedPackets === rx.batcher.stats.packets && accounted() === sent, 30_000, 100);
    expect(rx.batcher.stats.publishedPackets).toBeGreaterThan(0);

    broker.stop();
    // ~2.9 MB into a 1 MiB buffer while nothing can be sent
    let peak = 0;
    const sampler = setInterval(() => (peak = Math.max(peak, rx.batcher.stats.bufferedBytes)), 5);
    await send(2000);
    await until('every datagram accounted for', () => accounted() === sent, 10_000, 50);
    clearInterval(sampler);
    peak = Math.max(peak, rx.batcher.stats.bufferedBytes);
    expect(peak).toBeLessThanOrEqual(maxBufferBytes);
    expect(rx.batcher.stats.drops.kafka_unavailable + rx.batcher.stats.drops.buffer_full).toBeGreaterThan(0);
    const heldDuringOutage = rx.batcher.stats.packets;

    broker.start();
    await until('the held packets delivered after the restart', () => rx.batcher.stats.publishedPackets === heldDuringOutage, 120_000, 200);
    expect(rx.batcher.stats.connected).toBe(true);
    await send(200);
    await until('packets after the restart published', () => accounted() === sent && rx.batcher.stats.publishedPackets === rx.batcher.stats.packets, 30_000, 100);

    stop();
    const r = await done;
    expect(r.publish.drops.shutdown).toBe(0);
    // the topic holds what the receiver says it published (at least once: a send retried after a
    // lost acknowledgement may repeat a record)
    const records = await readAll(broker.client('h13-mirror-read'), topic);
    expect(records.every((x) => x.headers['content-type']?.toString() === PCAP_CONTENT_TYPE)).toBe(true);
    expect(records.every((x) => x.headers.sensor?.toString() === 'vni-7@127.0.0.1')).toBe(true);
    let packets = 0;
    for (const x of records) {
      const v = x.value!;
      for (let o = 24; o < v.length; o += 16 + v.readUInt32LE(o + 8)) packets++;
    }
    expect(packets).toBeGreaterThanOrEqual(r.publish.publishedPackets);
  }, 240_000);
});
