/**
 * The mirror receiver's per-datagram path without sockets: the partition is publish pcap's
 * (packetPartition of the inner frame, both directions together), the sensor is vni-N@SENDER or
 * --sensor, --vni filters, and the --listen parser's answers.
 */
import { describe, expect, it } from 'vitest';
import type { RemoteInfo } from 'node:dgram';
import { newDecodedPacket } from '../../src/decode/index.js';
import type { KafkaClient, OutRecord, Producer } from '../../src/kafka/adapter.js';
import { PartitionBatcher } from '../../src/kafka/batcher.js';
import { MirrorReceiver, parseListen, type MirrorOptions } from '../../src/kafka/mirror.js';
import { packetPartition } from '../../src/kafka/publish.js';
import { InputError } from '../../src/pipeline/replay.js';

function frame(src: [number, number], dst: [number, number]): Buffer {
  const b = Buffer.alloc(14 + 20 + 20);
  Buffer.from('020000000001020000000002', 'hex').copy(b);
  b.writeUInt16BE(0x0800, 12);
  b[14] = 0x45;
  b.writeUInt16BE(40, 16);
  b[22] = 64;
  b[23] = 6;
  b.set([10, 93, 0, src[0]], 26);
  b.set([10, 93, 0, dst[0]], 30);
  b.writeUInt16BE(src[1], 34);
  b.writeUInt16BE(dst[1], 36);
  b[46] = 0x50;
  return b;
}

const vxlan = (vni: number, inner: Buffer): Buffer => Buffer.concat([Buffer.from([0x08, 0, 0, 0, vni >> 16, (vni >> 8) & 0xff, vni & 0xff, 0]), inner]);
const rinfo = (address: string): RemoteInfo => ({ address, family: 'IPv4', port: 50000, size: 0 });

function receiver(o: Partial<MirrorOptions> = {}): { rx: MirrorReceiver; sent: OutRecord[]; batcher: PartitionBatcher } {
  const sent: OutRecord[] = [];
  const producer: Producer = { send: async (_t, rs) => void sent.push(...rs), close: async () => {} };
  const client = { producer: async () => producer } as unknown as KafkaClient;
  const opts: MirrorOptions = { listen: [], topic: 't', partitions: 8, lingerMs: 10, batchBytes: 1 << 20, maxBufferBytes: 1 << 20, ...o };
  const batcher = new PartitionBatcher(client, { topic: 't', partitions: 8, batchBytes: 1 << 20, lingerMs: 10, maxBufferBytes: 1 << 20, onKafkaError: 'fail' }, producer);
  const rx = new MirrorReceiver(batcher, opts, 8);
  rx.stats.datagrams.l = 0;
  rx.stats.bytes.l = 0;
  return { rx, sent, batcher };
}

describe('mirror receiver datagram path', () => {
  it("puts both directions of a flow in publish pcap's partition, sensor vni-N@SENDER", async () => {
    const { rx, sent, batcher } = receiver();
    const flows: [Buffer, Buffer][] = [];
    for (let i = 0; i < 20; i++) flows.push([frame([1, 40000 + i], [2, 443]), frame([2, 443], [1, 40000 + i])]);
    for (const [a, b] of flows) {
      rx.onDatagram(vxlan(42, a), rinfo('10.93.2.1'), 'l', 'vxlan');
      rx.onDatagram(vxlan(42, b), rinfo('10.93.2.1'), 'l', 'vxlan');
    }
    await batcher.flush();
    const decoded = newDecodedPacket();
    const want = new Map<number, number>();
    for (const [a, b] of flows) {
      const p = packetPartition({ linktype: 1, ts: { sec: 0, nsec: 0 }, data: a, origLen: a.length, ifIndex: 0 }, decoded, 8);
      expect(packetPartition({ linktype: 1, ts: { sec: 0, nsec: 0 }, data: b, origLen: b.length, ifIndex: 0 }, decoded, 8)).toBe(p);
      want.set(p, (want.get(p) ?? 0) + 2);
    }
    expect(new Set(want.keys()).size).toBeGreaterThan(1);
    const got = new Map<number, number>();
    for (const r of sent) {
      expect(r.headers?.sensor).toBe('vni-42@10.93.2.1');
      expect(r.headers?.['content-type']).toBe('application/vnd.tcpdump.pcap');
      const v = r.value as Buffer;
      let n = 0;
      for (let o = 24; o < v.length; o += 16 + v.readUInt32LE(o + 8)) n++;
      got.set(r.partition!, (got.get(r.partition!) ?? 0) + n);
    }
    expect(got).toEqual(want);
  });

  it('--vni filters, --sensor names, senders and VNIs are separate sensors', async () => {
    const f = frame([1, 40000], [2, 443]);
    const a = receiver({ vni: 7 });
    a.rx.onDatagram(vxlan(7, f), rinfo('10.0.0.1'), 'l', 'vxlan');
    a.rx.onDatagram(vxlan(8, f), rinfo('10.0.0.1'), 'l', 'vxlan');
    await a.batcher.flush();
    expect(a.rx.stats.vniFiltered).toBe(1);
    expect(a.sent.map((r) => r.headers?.sensor)).toEqual(['vni-7@10.0.0.1']);
    const b = receiver({ sensor: 'dc1' });
    b.rx.onDatagram(vxlan(7, f), rinfo('10.0.0.1'), 'l', 'vxlan');
    await b.batcher.flush();
    expect(b.sent.map((r) => r.headers?.sensor)).toEqual(['dc1']);
    const c = receiver();
    c.rx.onDatagram(vxlan(7, f), rinfo('10.0.0.1'), 'l', 'vxlan');
    c.rx.onDatagram(vxlan(7, f), rinfo('10.0.0.2'), 'l', 'vxlan');
    c.rx.onDatagram(vxlan(9, f), rinfo('10.0.0.1'), 'l', 'vxlan');
    await c.batcher.flush();
    expect(c.sent.map((r) => r.headers?.sensor).sort()).toEqual(['vni-7@10.0.0.1', 'vni-7@10.0.0.2', 'vni-9@10.0.0.1']);
  });

  it('a full buffer drops and counts instead of growing', async () => {
    const { rx, batcher } = receiver({ maxBufferBytes: 1 << 20 });
    const f = vxlan(1, Buffer.concat([frame([1, 40000], [2, 443]), Buffer.alloc(1400)]));
    for (let i = 0; i < 2000; i++) rx.onDatagram(f, rinfo('10.0.0.1'), 'l', 'vxlan'); // ~2.9 MB, synchronously
    expect(batcher.stats.bufferedBytes).toBeLessThanOrEqual(1 << 20);
    expect(batcher.stats.drops.buffer_full).toBe(2000 - batcher.stats.packets);
    expect(batcher.stats.drops.buffer_full).toBeGreaterThan(0);
    await batcher.flush();
    expect(batcher.stats.publishedPackets).toBe(batcher.stats.packets);
  });
});

describe('--listen', () => {
  it('takes HOST:PORT and [v6]:PORT; auto knows 4789 and 6081 only', () => {
    expect(parseListen('0.0.0.0:4789', 'auto')).toEqual({ host: '0.0.0.0', port: 4789, encap: 'vxlan' });
    expect(parseListen('[::]:6081', 'auto')).toEqual({ host: '::', port: 6081, encap: 'geneve' });
    expect(parseListen('10.0.0.1:9999', 'geneve')).toEqual({ host: '10.0.0.1', port: 9999, encap: 'geneve' });
    expect(() => parseListen('10.0.0.1:9999', 'auto')).toThrow(/--encap auto knows 4789 \(VXLAN\) and 6081 \(Geneve\) only/);
    expect(() => parseListen('4789', 'auto')).toThrow(InputError);
    expect(() => parseListen('h:70000', 'vxlan')).toThrow(/out of range/);
  });
});
