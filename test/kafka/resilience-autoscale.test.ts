/**
 * Autoscaling (issue 12), on a private broker: a continuous stream of connections that overlap in
 * time (real fixture connections, each on its own client address, started 20 ms apart), 8
 * partitions, and the group going 1 -> 3 -> 2 -> 1 instances (two joins, a SIGTERM, a SIGKILL) while
 * connections are open. After de-duplication by event.id, the events topic equals `replay`'s events
 * for the same capture: nothing missing, nothing extra, no conflicting duplicate.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { publishKeylog, publishPcap } from '../../src/kafka/publish.js';
import { pcapHeader, REPO, uniq, until } from './helpers.js';
import { compare, exitOf, expectAllOf, fedPackets, lastAssignment, lastPacketSec, OwnBroker, ownBrokerForFile, publishClockTick, replayEvents, spawnRun, splitPcap, topicEvents, type RunChild } from './resilienceHelpers.js';

const dir = mkdtempSync(join(tmpdir(), 'tlsdecrypt-autoscale-'));
const broker = new OwnBroker(Number(process.env.TLSDECRYPT_TEST_OWN_KAFKA_PORT_AUTOSCALE ?? 19594));
ownBrokerForFile(broker, dir);

const FIXTURES = [
  'tls13-aes128gcm-h2', 'tls13-aes256gcm-http11', 'tls13-chacha20-http11', 'tls13-parallel-http11', 'tls13-h2-multiplexed', 'tls13-chunked-gzip-http11',
  'tls13-keyupdate', 'tls13-64k-http11', 'tls13-smallmss-http11', 'tls12-ecdhe-aes128gcm-http11', 'tls12-ecdhe-chacha20-http11', 'tls12-ecdhe-aes256gcm-h2',
  'tls12-dhe-aes128gcm-http11', 'tls12-ecdhe-cbc-sha256-http11', 'tls13-gnutls-http11', 'tls13-python-http11',
];

/**
 * One classic pcap (microseconds, Ethernet/IPv4) of every fixture, connection k moved to start
 * 20 ms after connection k-1 and its client address 10.77.0.1 rewritten to 10.100.k.1 (distinct
 * 5-tuples), merged in capture-time order; and the key logs together.
 */
function mergedCapture(out: string, keysOut: string): void {
  const recs: { t: number; rec: Buffer }[] = [];
  const base = 1_800_000_000;
  FIXTURES.forEach((name, k) => {
    const b = readFileSync(join(REPO, 'fixtures/https', name, 'capture.pcap'));
    if (b.readUInt32LE(0) !== 0xa1b2c3d4 || b.readUInt32LE(20) !== 1) throw new Error(`${name}: not a microsecond Ethernet pcap`);
    let first: number | undefined;
    for (let o = 24; o + 16 <= b.length; ) {
      const len = b.readUInt32LE(o + 8);
      const rec = Buffer.from(b.subarray(o, o + 16 + len));
      o += 16 + len;
      const t = rec.readUInt32LE(0) * 1e6 + rec.readUInt32LE(4);
      first ??= t;
      const nt = base * 1e6 + k * 20_000 + (t - first);
      rec.writeUInt32LE(Math.floor(nt / 1e6), 0);
      rec.writeUInt32LE(nt % 1e6, 4);
      if (rec.readUInt16BE(16 + 12) !== 0x0800) throw new Error(`${name}: not IPv4`);
      for (const at of [16 + 14 + 12, 16 + 14 + 16]) if (rec.readUInt32BE(at) === 0x0a4d0001) rec.writeUInt32BE(0x0a640001 + (k << 8), at);
      recs.push({ t: nt, rec });
    }
  });
  recs.sort((a, b) => a.t - b.t);
  writeFileSync(out, Buffer.concat([pcapHeader(262144), ...recs.map((r) => r.rec)]));
  writeFileSync(keysOut, FIXTURES.map((n) => readFileSync(join(REPO, 'fixtures/https', n, 'keys.log'), 'utf8')).join('\n'));
}

describe('autoscaling: 1 -> 3 -> 2 -> 1 instances (private broker)', () => {
  it('overlapping connections, 8 partitions, two joins, a SIGTERM and a SIGKILL: events equal replay after de-duplication by event.id', async () => {
    const capture = join(dir, 'merged.pcap'), keylog = join(dir, 'merged.keys.log');
    mergedCapture(capture, keylog);
    const want = await replayEvents(dir, capture, keylog);
    expect(want.size).toBeGreaterThan(40);
    // five consecutive slices of the stream, one per group size
    const total = countRecords(capture);
    const slices: string[] = [];
    let rest = capture;
    for (let i = 0; i < 4; i++) {
      const a = join(dir, `slice-${i}.pcap`), b = join(dir, `rest-${i}.pcap`);
      splitPcap(rest, Math.floor(total / 5), a, b);
      slices.push(a);
      rest = b;
    }
    slices.push(rest);

    const t0 = uniq('autoscale');
    const t = { packets: `${t0}.packets`, secrets: `${t0}.secrets`, events: `${t0}.events`, groupId: `${t0}.group` };
    const c = broker.client('autoscale');
    const admin = await c.admin();
    await admin.ensureTopic(t.packets, 8);
    await publishKeylog(c, { file: keylog, topic: t.secrets, partitions: 1, follow: false });
    const args = (finish: boolean) => ['--brokers', broker.addr, '--packets-topic', t.packets, '--secrets-topic', t.secrets, '--events-topic', t.events, '--group-id', t.groupId, '--stats-interval', '1', '--session-timeout-ms', '6000', ...(finish ? ['--finish-on-stop'] : [])];
    const owns = (r: RunChild): number => lastAssignment(r.stderr())?.length ?? 0;
    let published = 0;
    const publish = async (i: number): Promise<void> => {
      published += (await publishPcap(c, { capture: slices[i], topic: t.packets, partitions: 8, format: 'pcap', batchBytes: 2048 })).packets;
    };
    const fedBy = async (live: RunChild[], what: string): Promise<void> => {
      await until(what, () => live.reduce((a, r) => a + fedPackets(r), 0) >= published, 120_000);
    };

    const a = spawnRun(args(true)); // stays to the end
    let b: RunChild | undefined, d: RunChild | undefined;
    try {
      await until('a owns every partition', () => owns(a) === 8, 120_000);
      await publish(0);
      await fedBy([a], 'slice 1 read by a');
      b = spawnRun(args(false)); // SIGTERM later
      d = spawnRun(args(false)); // SIGKILL later
      await until('three instances share the 8 partitions', () => owns(a) + owns(b!) + owns(d!) === 8 && owns(b!) > 0 && owns(d!) > 0, 120_000);
      await publish(1);
      await fedBy([a, b, d], 'slice 2 read');
      await publish(2);
      b.child.kill('SIGTERM');
      expect(await exitOf(b, 90_000), b.stderr()).toBe(0);
      await until('two instances share the 8 partitions', () => owns(a) + owns(d!) === 8 && owns(d!) > 0, 120_000);
      await publish(3);
      d.child.kill('SIGKILL');
      await exitOf(d, 30_000);
      await until('a owns every partition again', () => owns(a) === 8, 120_000);
      await publish(4);
      await publishClockTick(c, t.packets, 8, lastPacketSec(capture) + 3600);
      await until('everything read and committed', async () => (await admin.lag(t.groupId, t.packets)) === 0, 180_000, 500);
      a.child.kill('SIGTERM');
      expect(await exitOf(a, 90_000), a.stderr()).toBe(0);
    } finally {
      for (const r of [a, b, d]) if (r && r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGKILL');
      await admin.close();
    }
    const got = await topicEvents(c, t.events);
    const cmp = compare(got, want);
    console.log(`autoscale: ${published} packets, ${got.length} event records, ${cmp.distinct} distinct of ${want.size}; re-deliveries ${cmp.duplicates}; missing ${cmp.missing.length}; extra ${cmp.extra.length}; conflicting ${cmp.conflicting.length}`);
    expect(cmp.conflicting).toEqual([]);
    expect(cmp.missing.map((id) => `${want.get(id)!.event.dataset}:${want.get(id)!.source.ip}:${want.get(id)!.decryption?.status ?? ''}`)).toEqual([]);
    expect(cmp.extra.map((e) => `${e.event.dataset}:${e.source?.ip}:${e.decryption?.status}`)).toEqual([]);
    expectAllOf(got, want);
  }, 600_000);
});

function countRecords(file: string): number {
  const b = readFileSync(file);
  let n = 0;
  for (let o = 24; o + 16 <= b.length; n++) o += 16 + b.readUInt32LE(o + 8);
  return n;
}
