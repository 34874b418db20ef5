/**
 * Consumer-group resilience of `tlsdecrypt run` (a private broker, see resilienceHelpers.ts):
 *  - instance loss: two instances in one group, one is stopped mid-stream (SIGTERM, and separately
 *    SIGKILL) while connections are open; the survivor takes over its partitions, re-reads them from
 *    the replay low watermark and rebuilds the open connections from their first packet.
 *  - rebalance: a second instance joins mid-stream, while connections are open.
 * Every case: 0 missing exchanges, 0 conflicting duplicates, nothing extra: after de-duplication by
 * event.id the events topic equals replay's events.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { KafkaClient } from '../../src/kafka/adapter.js';
import { resolveRunConfig } from '../../src/kafka/config.js';
import { publishKeylog, publishPcap } from '../../src/kafka/publish.js';
import { startRun, type RunSummary } from '../../src/kafka/run.js';
import { uniq, until } from './helpers.js';
import { compare, exitOf, expectAllOf, fedPackets, fixtureCopy, ownBrokerForFile, gated, lastAssignment, lastPacketSec, OwnBroker, publishClockTick, replayEvents, spawnRun, splitPcap, topicEvents, type Ev, type RunChild } from './resilienceHelpers.js';

const dir = mkdtempSync(join(tmpdir(), 'tlsdecrypt-resil-group-'));
const broker = new OwnBroker(Number(process.env.TLSDECRYPT_TEST_OWN_KAFKA_PORT_GROUP ?? 19592));

ownBrokerForFile(broker, dir);

// In capture-time order (the engine's clock): complete before the loss, cut by it, complete after.
const BEFORE = ['tls13-aes128gcm-h2', 'tls13-aes256gcm-http11'];
const CUT = ['tls13-parallel-http11', 'tls13-h2-multiplexed'];
const AFTER = ['tls13-chunked-gzip-http11', 'tls13-keyupdate'];

interface Topics {
  packets: string;
  secrets: string;
  events: string;
  groupId: string;
}

/** `finish`: the instance is stopped only at the end (a finite topic): --finish-on-stop. */
function runArgs(t: Topics, finish = true): string[] {
  return ['--brokers', broker.addr, '--packets-topic', t.packets, '--secrets-topic', t.secrets, '--events-topic', t.events, '--group-id', t.groupId, '--stats-interval', '1', '--session-timeout-ms', '10000', ...(finish ? ['--finish-on-stop'] : [])];
}



async function lagZero(c: KafkaClient, t: Topics, what: string, timeoutMs = 120_000): Promise<void> {
  const admin = await c.admin();
  try {
    await until(what, async () => (await admin.lag(t.groupId, t.packets)) === 0, timeoutMs, 500);
  } finally {
    await admin.close();
  }
}

async function wants(names: string[]): Promise<Map<string, Ev>> {
  const m = new Map<string, Ev>();
  for (const n of names) {
    const f = fixtureCopy(dir, n);
    for (const [k, v] of await replayEvents(dir, f.capture, f.keylog)) m.set(k, v);
  }
  return m;
}

/** community ids of a set of events */
const cids = (m: Map<string, Ev>): Set<string> => new Set([...m.values()].map((e) => e.network.community_id));

type Mode = 'SIGTERM' | 'SIGKILL' | 'join';

/**
 * BEFORE (complete flows) -> first halves of CUT -> the event (one instance stopped by a signal, or
 * a second instance joins) -> second halves of CUT -> AFTER; then every instance is stopped cleanly
 * and the events topic is compared with replay.
 */
async function scenario(mode: Mode): Promise<void> {
  const t0 = uniq(`resil.${mode.toLowerCase()}`);
  const t: Topics = { packets: `${t0}.packets`, secrets: `${t0}.secrets`, events: `${t0}.events`, groupId: `${t0}.group` };
  const c = broker.client(`resil-${mode}`);
  const wantBefore = await wants(BEFORE);
  const wantCut = await wants(CUT);
  const wantAfter = await wants(AFTER);
  for (const n of [...BEFORE, ...CUT, ...AFTER]) await publishKeylog(c, { file: fixtureCopy(dir, n).keylog, topic: t.secrets, partitions: 1, follow: false });
  let beforePackets = 0;
  for (const n of BEFORE) beforePackets += (await publishPcap(c, { capture: fixtureCopy(dir, n).capture, topic: t.packets, partitions: 4, format: 'pcap', batchBytes: 4096 })).packets;

  // The instance stopped mid-stream leaves its open flows to the re-read (no --finish-on-stop).
  const a = spawnRun(runArgs(t, mode === 'join'));
  let b: RunChild | undefined = mode === 'join' ? undefined : spawnRun(runArgs(t));
  const fed = (): number => fedPackets(a) + (b ? fedPackets(b) : 0);
  try {
    await until('instances own partitions', () => (lastAssignment(a.stderr())?.length ?? 0) > 0 && (!b || (lastAssignment(b.stderr())?.length ?? 0) > 0), 120_000);
    await bothFed(fed, beforePackets);
    // First halves of CUT: flows open in the engines when the instance goes away / partitions move.
    const halves: string[] = [];
    let firstHalves = 0;
    for (const n of CUT) {
      const f = fixtureCopy(dir, n);
      const p1 = join(dir, `${n}-${mode}-1.pcap`), p2 = join(dir, `${n}-${mode}-2.pcap`);
      splitPcap(f.capture, Math.floor(pcapRecords(f.capture) / 2), p1, p2);
      firstHalves += (await publishPcap(c, { capture: p1, topic: t.packets, partitions: 4, format: 'pcap', batchBytes: 4096 })).packets;
      halves.push(p2);
    }
    const before = await bothFed(fed, beforePackets + firstHalves);
    // The open flows hold the commits back (replay watermark): the group's lag is not 0 now.
    const admin = await c.admin();
    const lagOpen = await admin.lag(t.groupId, t.packets).finally(() => admin.close());
    console.log(`${mode}: ${before} packets fed, lag with the cut flows open: ${lagOpen} records`);
    expect(lagOpen).toBeGreaterThan(0);
    let survivors: RunChild[];
    if (mode === 'join') {
      expect(lastAssignment(a.stderr())).toEqual([0, 1, 2, 3]);
      b = spawnRun(runArgs(t));
      await until('the partitions are split between the two', () => (lastAssignment(b!.stderr())?.length ?? 0) > 0 && (lastAssignment(a.stderr())?.length ?? 0) < 4, 120_000);
      console.log(`join: a now owns ${JSON.stringify(lastAssignment(a.stderr()))}, b ${JSON.stringify(lastAssignment(b.stderr()))}`);
      survivors = [a, b];
    } else {
      console.log(`${mode}: assignments a=${JSON.stringify(lastAssignment(a.stderr()))} b=${JSON.stringify(lastAssignment(b!.stderr()))}; stopping a`);
      a.child.kill(mode);
      const code = await exitOf(a, 90_000);
      if (mode === 'SIGTERM') expect(code, a.stderr()).toBe(0);
      survivors = [b!];
    }
    for (const p2 of halves) await publishPcap(c, { capture: p2, topic: t.packets, partitions: 4, format: 'pcap', batchBytes: 4096 });
    for (const n of AFTER) await publishPcap(c, { capture: fixtureCopy(dir, n).capture, topic: t.packets, partitions: 4, format: 'pcap', batchBytes: 4096 });
    if (mode !== 'join') await until('the survivor owns every partition', () => lastAssignment(b!.stderr())?.length === 4, 120_000);
    // Capture time moves on (a live stream does): every flow is closed, every commit reaches the end.
    await publishClockTick(c, t.packets, 4, lastPacketSec(fixtureCopy(dir, AFTER[AFTER.length - 1]).capture) + 3600);
    await lagZero(c, t, 'everything consumed and committed');
    for (const r of survivors) r.child.kill('SIGTERM');
    for (const r of survivors) expect(await exitOf(r, 90_000), r.stderr()).toBe(0);
  } finally {
    for (const r of [a, b]) if (r && r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGKILL');
  }

  const got = await topicEvents(c, t.events);
  const all = new Map([...wantBefore, ...wantCut, ...wantAfter]);
  const cmp = compare(got, all);
  const cutIds = cids(wantCut);
  const extraDesc = cmp.extra.map((e) => `${e.event.dataset}${e.decryption?.status ? ':' + e.decryption.status : ''}`);
  console.log(
    `${mode}: ${got.length} event records, ${cmp.distinct} distinct; replay has ${all.size} (cut flows: ${wantCut.size} events in ${cutIds.size} flows); ` +
      `re-deliveries ${cmp.duplicates}; missing ${cmp.missing.length}; extra ${cmp.extra.length} [${extraDesc.join(', ')}]; conflicting ${cmp.conflicting.length}`,
  );
  expect(cmp.conflicting).toEqual([]);
  expect(cmp.missing).toEqual([]);
  expect(extraDesc).toEqual([]);
  expectAllOf(got, all);
}

/** Waits until the instances have fed `n` packets (stats lines); returns how many. */
async function bothFed(fed: () => number, n: number): Promise<number> {
  await until(`${n} packets fed`, () => fed() >= n, 120_000);
  return fed();
}

describe('instance loss (two instances, private broker)', () => {
  for (const sig of ['SIGTERM', 'SIGKILL'] as const) {
    it(`${sig} on one instance while connections are open: the survivor re-reads its partitions from the watermark; 0 missing, 0 extra, 0 conflicting`, () => scenario(sig), 600_000);
  }
});

describe('rebalance (private broker)', () => {
  it('a second instance joins while connections are open: the new owner rebuilds them from their first packet; 0 missing, 0 extra, 0 conflicting', () => scenario('join'), 600_000);

  it('a second instance joins while the first one still holds undelivered events: no loss, re-deliveries identical, old owner does not commit moved partitions', async () => {
    const t0 = uniq('resil.inflight');
    const t: Topics = { packets: `${t0}.packets`, secrets: `${t0}.secrets`, events: `${t0}.events`, groupId: `${t0}.group` };
    const c = broker.client('resil-inflight');
    const names = [...BEFORE, ...AFTER];
    const want = await wants(names);
    for (const n of names) await publishKeylog(c, { file: fixtureCopy(dir, n).keylog, topic: t.secrets, partitions: 1, follow: false });
    let published = 0;
    for (const n of names) published += (await publishPcap(c, { capture: fixtureCopy(dir, n).capture, topic: t.packets, partitions: 4, format: 'pcap', batchBytes: 4096 })).packets;

    // A: in-process, its event sends held -> it has consumed everything, delivered and committed nothing.
    const g = gated(broker.client('resil-inflight-a'));
    const cfg = resolveRunConfig(
      { brokers: broker.addr, 'packets-topic': t.packets, 'secrets-topic': t.secrets, 'events-topic': t.events, 'group-id': t.groupId, 'stats-interval': '0', 'session-timeout-ms': '10000', 'finish-on-stop': true },
      {},
    );
    const h = await startRun(g.client, cfg);
    let b: RunChild | undefined;
    let summary: RunSummary | undefined;
    try {
      await until('A consumed everything', () => h.counters.packets >= published && g.held() > 0, 120_000);
      expect(h.counters.commits).toBe(0);
      b = spawnRun(runArgs(t));
      await until('B joined and took partitions from A', () => (lastAssignment(b!.stderr())?.length ?? 0) > 0 && h.assignment().length > 0 && h.assignment().length < 4, 120_000);
      const moved = lastAssignment(b.stderr())!;
      g.open(); // A now delivers everything it held, including the moved partitions' events
      await lagZero(c, t, 'everything committed');
      h.stop();
      summary = await h.done;
      b.child.kill('SIGTERM');
      expect(await exitOf(b, 90_000), b.stderr()).toBe(0);
      console.log(`in-flight rebalance: B took ${JSON.stringify(moved)}; A counters ${JSON.stringify(h.counters)}`);
    } finally {
      if (!summary) {
        h.stop();
        await h.done;
      }
      if (b && b.child.exitCode === null && b.child.signalCode === null) b.child.kill('SIGKILL');
    }
    expect(summary!.exitCode).toBe(0);
    expect(h.counters.commitsSkipped).toBeGreaterThan(0);
    const got = await topicEvents(c, t.events);
    const cmp = compare(got, want);
    console.log(`in-flight rebalance: ${got.length} event records, ${cmp.distinct} distinct of ${want.size}; re-deliveries ${cmp.duplicates}; missing ${cmp.missing.length}; extra ${cmp.extra.length}; conflicting ${cmp.conflicting.length}`);
    expect(cmp.conflicting).toEqual([]);
    expect(cmp.missing).toEqual([]);
    expect(cmp.extra).toEqual([]);
    expect(cmp.duplicates).toBeGreaterThan(0); // B re-did the moved partitions from the last commit
    expectAllOf(got, want);
  }, 600_000);
});

/** Number of records of a classic pcap. */
function pcapRecords(file: string): number {
  const b = readFileSync(file);
  let n = 0;
  for (let o = 24; o + 16 <= b.length; n++) o += 16 + b.readUInt32LE(o + 8);
  return n;
}
