/**
 * `run` under orderings a real broker produces only now and then (test/kafka/fakeKafka.ts drives
 * them exactly; the resilience tests check the same end to end against a real broker).
 *
 * Capture time across partitions (src/kafka/captureClock.ts): partitions are fetched side by side,
 * so a fetch answer can hand over a partition read an hour further in capture time before another
 * partition's rest of an open connection. The connection must not time out in between. With
 * `--workers N` each worker's engine runs on the time ITS partitions have reached (the case that
 * matters: two partitions of the same worker, one far ahead).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveRunConfig } from '../../src/kafka/config.js';
import { startRun } from '../../src/kafka/run.js';
import type { RawPacket } from '../../src/types.js';
import { clockTick, FakeBroker, pcapPackets, pcapRecords, tcpClockTick } from './fakeKafka.js';
import { ensureBuilt, until } from './helpers.js';
import { compare, fixtureCopy, replayEvents, type Ev } from './resilienceHelpers.js';

const dir = mkdtempSync(join(tmpdir(), 'tlsdecrypt-run-order-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function runConfig(keylogs: string[], workers = 1) {
  return resolveRunConfig(
    { brokers: 'fake:9092', 'packets-topic': 'packets', 'secrets-topic': '', 'events-topic': 'events', 'group-id': 'g', 'stats-interval': '0', keylog: keylogs.join(','), 'finish-on-stop': true, workers: String(workers) },
    {},
  );
}

/** A fixture's packets (split in two halves), its key log and replay's events. */
async function connection(name: string): Promise<{ first: RawPacket[]; second: RawPacket[]; last: number; keylog: string; want: Map<string, Ev> }> {
  const f = fixtureCopy(dir, name);
  const packets = pcapPackets(f.capture);
  const half = Math.floor(packets.length / 2);
  return { first: packets.slice(0, half), second: packets.slice(half), last: packets[packets.length - 1].ts.sec, keylog: f.keylog, want: await replayEvents(dir, f.capture, f.keylog) };
}

function expectReplay(got: Ev[], want: Map<string, Ev>): void {
  const cmp = compare(got, want);
  const desc = (e: Ev): string => `${e.event.dataset}:${e.decryption?.status ?? ''}`;
  expect(cmp.missing.map((id) => desc(want.get(id)!))).toEqual([]);
  expect(cmp.extra.map(desc)).toEqual([]);
  expect(cmp.conflicting).toEqual([]);
}

/**
 * One fetch answer holds partition `ahead` an hour on and partition `open` the rest of a connection
 * cut in two: the stream's events must still be replay's.
 */
/** `run` on a fake broker with `assigned` partitions, the first half of a connection fed on `open`. */
async function halfOpen(workers: number, assigned: number[], open: number) {
  const c = await connection('tls13-h2-multiplexed');
  const k = new FakeBroker();
  const m = k.member('a');
  const h = await startRun(m.client, runConfig([c.keylog], workers));
  await m.started;
  m.assign(assigned);
  k.append(open, pcapRecords(c.first));
  await m.fetch(open);
  return { c, k, m, h };
}

async function farAheadInOneFetch(workers: number, assigned: number[], ahead: number, open: number, tick = clockTick): Promise<void> {
  const { c, k, m, h } = await halfOpen(workers, assigned, open);
  k.append(ahead, pcapRecords([tick(c.last + 3600)]));
  k.append(open, [...pcapRecords(c.second), ...pcapRecords([tick(c.last + 3600)])]);
  await m.fetch(ahead);
  await m.fetch(open);
  h.stop();
  expect((await h.done).exitCode).toBe(0);
  expectReplay(k.events, c.want);
}

/**
 * Half a connection on partition `open`, then an hour of capture time on it and no further batch;
 * the other assigned partitions never get a record: the idle connection is reported once they have
 * held the clock back long enough, not only at the stop.
 */
async function idleStillTimesOut(workers: number, assigned: number[], open: number): Promise<void> {
  const { c, k, m, h } = await halfOpen(workers, assigned, open);
  k.append(open, pcapRecords([clockTick(c.first[c.first.length - 1].ts.sec + 3600)]));
  await m.fetch(open);
  await until('the idle connection timed out', () => k.events.some((e) => e.event.dataset === 'tls.session'), 30_000, 200);
  const session = k.events.find((e) => e.event.dataset === 'tls.session')!;
  h.stop();
  expect((await h.done).exitCode).toBe(0);
  expect(session.network.community_id).toBe([...c.want.values()][0].network.community_id);
}

describe('capture time across partitions', () => {
  it('a partition handed over further in capture time does not time out the open connection of a partition behind it', async () => {
    // one fetch answer: partition 0 an hour on, partition 1 the rest of the connection
    await farAheadInOneFetch(1, [0, 1], 0, 1);
  });

  it('TCP packets of a partition far ahead do not time out the open connection of a partition behind it (the flow table runs on the clock, not on each packet)', async () => {
    await farAheadInOneFetch(1, [0, 1], 0, 1, tcpClockTick);
  });

  it('a second instance joins: the new owner re-reads an open connection from the watermark while its other partition is an hour ahead', async () => {
    const x = await connection('tls13-h2-multiplexed');
    const y = await connection('tls13-parallel-http11');
    const k = new FakeBroker();
    const a = k.member('a');
    const ha = await startRun(a.client, runConfig([x.keylog, y.keylog]));
    await a.started;
    a.assign([0, 1, 2]);
    // First halves of two connections (partitions 1 and 2), open in A; A commits below them.
    k.append(1, pcapRecords(x.first));
    k.append(2, pcapRecords(y.first));
    await a.fetch(1);
    await a.fetch(2);
    await until('A committed', () => k.committed.size === 2, 10_000, 20);
    // B joins and takes partitions 0 and 1 (A keeps 2).
    const b = k.member('b');
    const hb = await startRun(b.client, runConfig([x.keylog, y.keylog]));
    await b.started;
    a.assign([2]);
    b.assign([0, 1]);
    // B's first fetch answer: partition 0 an hour on (a clock tick), then partition 1 re-read from
    // A's commit (the first half); the rest of the connection comes in B's next fetch.
    k.append(0, pcapRecords([clockTick(x.last + 3600)]));
    await b.fetch(0);
    await b.fetch(1);
    k.append(1, [...pcapRecords(x.second), ...pcapRecords([clockTick(x.last + 3600)])]);
    k.append(2, [...pcapRecords(y.second), ...pcapRecords([clockTick(x.last + 3600)])]);
    await b.fetch(1);
    await a.fetch(2);
    ha.stop();
    hb.stop();
    expect((await ha.done).exitCode).toBe(0);
    expect((await hb.done).exitCode).toBe(0);
    expect(k.commits.some((c) => c.member === 'a' && c.partition === 1 && c.offset === '0')).toBe(true);
    expectReplay(k.events, new Map([...x.want, ...y.want]));
  });

  it('a partition without traffic holds the clock back only for a while: an idle connection of another partition still times out', async () => {
    await idleStillTimesOut(1, [0, 1], 1); // partition 0 never gets a record
  });
});

describe('capture time across partitions, run --workers 2', () => {
  beforeAll(() => ensureBuilt(), 300_000);

  // Partitions assigned [0, 1, 2] go to workers 0, 1, 0: partitions 0 and 2 share worker 0's engine.
  it('a partition of the same worker handed over far ahead does not time out the open connection of the other', async () => {
    await farAheadInOneFetch(2, [0, 1, 2], 0, 2);
  });

  it('TCP packets of a partition of the same worker far ahead do not time out the open connection of the other', async () => {
    await farAheadInOneFetch(2, [0, 1, 2], 0, 2, tcpClockTick);
  });

  it('a partition of the same worker without traffic holds its clock back only for a while: an idle connection still times out', async () => {
    await idleStillTimesOut(2, [0, 1, 2], 2); // partition 0 (worker 0, as partition 2) never gets a record
  });
});
