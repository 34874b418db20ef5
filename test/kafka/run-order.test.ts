/**
 * `run` under orderings a real broker produces only now and then (test/kafka/fakeKafka.ts drives
 * them exactly; the resilience tests check the same end to end against a real broker).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { resolveRunConfig } from '../../src/kafka/config.js';
import { startRun } from '../../src/kafka/run.js';
import { clockTick, FakeKafka, pcapPackets, pcapRecords } from './fakeKafka.js';
import { until } from './helpers.js';
import { compare, fixtureCopy, replayEvents } from './resilienceHelpers.js';

const dir = mkdtempSync(join(tmpdir(), 'tlsdecrypt-run-order-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function runConfig(topic: string, keylog: string) {
  return resolveRunConfig(
    { brokers: 'fake:9092', 'packets-topic': topic, 'secrets-topic': '', 'events-topic': 'events', 'group-id': 'g', 'stats-interval': '0', keylog, 'finish-on-stop': true },
    {},
  );
}

describe('capture time across partitions', () => {
  it('a partition read ahead in capture time does not time out the open flows of a partition behind it', async () => {
    const name = 'tls13-h2-multiplexed';
    const f = fixtureCopy(dir, name);
    const want = await replayEvents(dir, f.capture, f.keylog);
    const packets = pcapPackets(f.capture);
    const half = Math.floor(packets.length / 2);
    const last = packets[packets.length - 1].ts.sec;
    const k = new FakeKafka('packets');
    const h = await startRun(k.client, runConfig('packets', f.keylog));
    await k.started;
    k.assign([0, 1]);
    // Partition 1 carries the connection; partition 0 is read further in capture time (an hour on)
    // before the rest of partition 1 is read: partitions are fetched side by side, not in time order.
    await k.batch(1, pcapRecords(packets.slice(0, half)));
    await k.batch(0, pcapRecords([clockTick(last + 3600)]));
    await k.batch(1, pcapRecords(packets.slice(half)));
    await k.batch(1, pcapRecords([clockTick(last + 3600)]));
    h.stop();
    const s = await h.done;
    expect(s.exitCode).toBe(0);
    const cmp = compare(k.events, want);
    expect(cmp.missing).toEqual([]);
    expect(cmp.extra.map((e) => `${e.event.dataset}:${e.decryption?.status}`)).toEqual([]);
    expect(cmp.conflicting).toEqual([]);
  });

  it('a partition without traffic holds the clock back only for a while: an idle connection of another partition still times out', async () => {
    const f = fixtureCopy(dir, 'tls13-h2-multiplexed');
    const packets = pcapPackets(f.capture);
    const half = Math.floor(packets.length / 2);
    const k = new FakeKafka('packets');
    const h = await startRun(k.client, runConfig('packets', f.keylog));
    await k.started;
    k.assign([0, 1]); // partition 0 never gets a record
    await k.batch(1, pcapRecords(packets.slice(0, half)));
    await k.batch(1, pcapRecords([clockTick(packets[half - 1].ts.sec + 3600)]));
    // No further batch: the connection (half of it, idle for an hour of capture time) is reported
    // once partition 0 has held the clock back long enough, not only at the stop.
    await until('the idle connection timed out', () => k.events.some((e) => e.event.dataset === 'tls.session'), 30_000, 200);
    const session = k.events.find((e) => e.event.dataset === 'tls.session')!;
    h.stop();
    expect((await h.done).exitCode).toBe(0);
    expect(session.network.community_id).toBe([...(await replayEvents(dir, f.capture, f.keylog)).values()][0].network.community_id);
  });
});
