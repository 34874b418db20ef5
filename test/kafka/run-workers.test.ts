/**
 * `run --workers N` on the real broker (one packets partition per worker thread,
 * src/kafka/partitionShards.ts):
 *  - N = 1, 2, 3, 8 on the same published captures: the events topic equals replay's events
 *    (byte-identical, no duplicates) and the summary counts equal replay's;
 *  - partitions move between the workers of an instance and another instance during a stream
 *    (a second instance joins while connections are open, then leaves): nothing missing, nothing
 *    extra, no conflicting duplicates;
 *  - a worker that fails (TLSDECRYPT_TEST_WORKER_FAIL) is replaced and its partitions are read again
 *    from their last commit: the output is still complete.
 * Every test runs with kafkajs's fetch and the native one (--fetch native, src/kafka/fetch.ts).
 * Every capture, N = 1, 2, 3, 8, through the same hand-off without a broker: run-workers-file.test.ts.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KafkaClient } from '../../src/kafka/adapter.js';
import { resolveRunConfig } from '../../src/kafka/config.js';
import { fetchCuts } from '../../src/kafka/fetch.js';
import { publishKeylog, publishPcap } from '../../src/kafka/publish.js';
import { startRun, type RunHandle, type RunSummary } from '../../src/kafka/run.js';
import { replay } from '../../src/pipeline/replay.js';
import { NdjsonWriter } from '../../src/pipeline/output.js';
import type { EngineStats } from '../../src/pipeline/engine.js';
import { brokers, client, ensureBuilt, uniq, until } from './helpers.js';
import { compare, expectAllOf, fixtureCopy, splitPcap, topicEvents, type Ev } from './resilienceHelpers.js';

const dir = mkdtempSync(join(tmpdir(), 'tlsdecrypt-run-workers-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
beforeAll(() => ensureBuilt(), 300_000);

interface Topics {
  packets: string;
  secrets: string;
  events: string;
}

/** replay's events (by event.id) and summary counts of several captures, each on its own engine. */
async function replayOf(files: { capture: string; keylog: string }[]): Promise<{ want: Map<string, Ev>; stats: Record<string, number> }> {
  const want = new Map<string, Ev>();
  const stats: Record<string, number> = {};
  for (const f of files) {
    const out = join(dir, `replay-${Math.random().toString(36).slice(2)}.ndjson`);
    const w = await NdjsonWriter.toFile(out);
    const st = await replay({ capture: f.capture, keylogs: [f.keylog], rsaKeys: [], engine: {} }, w);
    await w.close();
    for (const l of readFileSync(out, 'utf8').split('\n').filter(Boolean)) {
      const e = JSON.parse(l);
      want.set(e.event.id, e);
    }
    add(stats, counts(st));
  }
  return { want, stats };
}

function counts(s: EngineStats): Record<string, number> {
  const o: Record<string, number> = { flows: s.flows, tlsFlows: s.tlsFlows, decryptedBytes: s.decryptedBytes };
  for (const [k, v] of Object.entries(s.sessionsByStatus)) o[`session.${k}`] = v;
  for (const [k, v] of Object.entries(s.eventsByDataset)) o[`dataset.${k}`] = v;
  return o;
}

function add(a: Record<string, number>, b: Record<string, number>): void {
  for (const [k, v] of Object.entries(b)) a[k] = (a[k] ?? 0) + v;
}

/** The packets-topic fetch of the describe running (each test runs with both). */
let fetchImpl: 'kafkajs' | 'native' = 'kafkajs';

function start(c: KafkaClient, t: Topics, groupId: string, workers: number, extra: Record<string, string | boolean> = {}): Promise<RunHandle> {
  const cfg = resolveRunConfig(
    {
      brokers: brokers(),
      'packets-topic': t.packets,
      'secrets-topic': t.secrets,
      'events-topic': t.events,
      'group-id': groupId,
      workers: String(workers),
      'stats-interval': '0',
      'max-cpu': '0',
      'max-memory': '0',
      'session-timeout-ms': '10000',
      fetch: fetchImpl,
      ...extra,
    },
    {},
  );
  return startRun(c, cfg);
}

async function lagZero(c: KafkaClient, groupId: string, topic: string, what: string): Promise<void> {
  const admin = await c.admin();
  try {
    await until(what, async () => (await admin.lag(groupId, topic)) === 0, 120_000, 250);
  } finally {
    await admin.close();
  }
}

async function publish(c: KafkaClient, t: Topics, files: { capture: string; keylog: string }[], partitions: number, format: 'pcap' | 'frame' = 'pcap'): Promise<number> {
  let packets = 0;
  for (const f of files) {
    await publishKeylog(c, { file: f.keylog, topic: t.secrets, partitions: 1, follow: false });
    packets += (await publishPcap(c, { capture: f.capture, topic: t.packets, partitions, format, batchBytes: 4096 })).packets;
  }
  return packets;
}

describe.each(['kafkajs', 'native'] as const)('run --workers N on the real broker (--fetch %s)', (fetch) => {
  beforeAll(() => {
    fetchImpl = fetch;
  });
  it('N = 1, 2, 3, 8 on the same published captures: events and summary equal replay', async () => {
    // captures one after the other in capture time, so that one topic holds them all
    const files = ['tls13-parallel-http11', 'tls12-resumption-ticket', 'tls13-h2-multiplexed'].map((n) => fixtureCopy(dir, n));
    const { want, stats } = await replayOf(files);
    const c = client();
    const t0 = uniq('runworkers.n');
    const t: Topics = { packets: `${t0}.packets`, secrets: `${t0}.secrets`, events: '' };
    const published = await publish(c, t, files, 8);
    for (const n of [1, 2, 3, 8]) {
      const tn = { ...t, events: `${t0}.events.${n}` };
      const h = await start(c, tn, `${t0}.group.${n}`, n, { 'finish-on-stop': true });
      let summary: RunSummary;
      try {
        await until(`--workers ${n}: every packet fed`, () => h.counters.packets >= published, 90_000);
        await lagZero(c, `${t0}.group.${n}`, t.packets, `--workers ${n}: everything committed`);
      } finally {
        h.stop();
        summary = await h.done;
      }
      expect(summary.exitCode).toBe(0);
      expect(summary.counters.packets).toBe(published);
      const got = await topicEvents(c, tn.events);
      const cmp = compare(got, want);
      expect({ n, duplicates: cmp.duplicates, missing: cmp.missing, extra: cmp.extra.length }).toEqual({ n, duplicates: 0, missing: [], extra: 0 });
      expectAllOf(got, want);
      expect(counts(summary.stats), `--workers ${n} summary`).toEqual(stats);
    }
  }, 300_000);

  it('partitions move between workers and instances during a stream (a second instance joins, then leaves): 0 missing, 0 extra, 0 conflicting', async () => {
    // in capture-time order: complete before the moves, cut by them (halves), complete after
    const before = ['tls13-aes128gcm-h2', 'tls13-aes256gcm-http11'].map((n) => fixtureCopy(dir, n));
    const cut = ['tls13-parallel-http11', 'tls13-h2-multiplexed'].map((n) => fixtureCopy(dir, n));
    const after = ['tls13-chunked-gzip-http11', 'tls13-keyupdate'].map((n) => fixtureCopy(dir, n));
    const { want } = await replayOf([...before, ...cut, ...after]);
    const halves = cut.map((f, i) => {
      const a = join(dir, `cut${i}-a.pcap`);
      const b = join(dir, `cut${i}-b.pcap`);
      splitPcap(f.capture, Math.floor(pcapRecords(f.capture) / 2), a, b);
      return { a: { capture: a, keylog: f.keylog }, b: { capture: b, keylog: f.keylog } };
    });
    const c = client();
    const t0 = uniq('runworkers.move');
    const t: Topics = { packets: `${t0}.packets`, secrets: `${t0}.secrets`, events: `${t0}.events` };
    const groupId = `${t0}.group`;
    let published = await publish(c, t, [...before, ...halves.map((h) => h.a)], 8);
    // A: 3 workers, the last instance standing (closes what is open at its stop)
    const a = await start(c, t, groupId, 3, { 'finish-on-stop': true });
    let b: RunHandle | undefined;
    let sa: RunSummary | undefined;
    let sb: RunSummary | undefined;
    try {
      await until('A read the first part', () => a.counters.packets >= published, 90_000);
      // B joins with 2 workers: A's workers lose partitions while connections are open on them
      b = await start(c, t, groupId, 2);
      await until('B took partitions from A', () => b!.assignment().length > 0 && a.assignment().length > 0 && a.assignment().length < 8, 90_000);
      published += await publish(c, t, [...halves.map((h) => h.b), ...after], 8);
      await lagZero(c, groupId, t.packets, 'both caught up');
      // B leaves (planned: open connections stay uncommitted); A's workers get its partitions back
      b.stop();
      sb = await b.done;
      await until('A owns every partition again', () => a.assignment().length === 8, 90_000);
      await lagZero(c, groupId, t.packets, 'A caught up');
      a.stop();
      sa = await a.done;
    } finally {
      if (!sb && b) {
        b.stop();
        await b.done;
      }
      if (!sa) {
        a.stop();
        await a.done;
      }
    }
    expect(sa.exitCode).toBe(0);
    expect(sb!.exitCode).toBe(0);
    const got = await topicEvents(c, t.events);
    const cmp = compare(got, want);
    console.log(`moves: A ${JSON.stringify(a.counters)}; B ${JSON.stringify(b!.counters)}; ${got.length} records, ${cmp.distinct} distinct of ${want.size}, re-deliveries ${cmp.duplicates}`);
    expect(cmp.conflicting).toEqual([]);
    expect(cmp.missing).toEqual([]);
    expect(cmp.extra).toEqual([]);
    expectAllOf(got, want);
    // B read partitions that A's workers had connections open on (from A's commits) and reported them
    expect(b!.counters.records).toBeGreaterThan(0);
    expect(b!.counters.events).toBeGreaterThan(0);
  }, 300_000);

  it.each([
    ['throws', '0:40'],
    ['thread exits', '1:40:exit'],
  ])('a worker that fails (%s) is replaced, its partitions are read again from their last commit, and the output is still complete', async (_how, hook) => {
    const files = ['tls13-parallel-http11', 'tls12-resumption-ticket'].map((n) => fixtureCopy(dir, n));
    const { want } = await replayOf(files);
    const c = client();
    const t0 = uniq('runworkers.fail');
    const t: Topics = { packets: `${t0}.packets`, secrets: `${t0}.secrets`, events: `${t0}.events` };
    const groupId = `${t0}.group`;
    // one record per packet: the failure comes in the middle of worker 0's partitions
    const published = await publish(c, t, files, 4, 'frame');
    process.env.TLSDECRYPT_TEST_WORKER_FAIL = hook;
    let h: RunHandle;
    try {
      h = await start(c, t, groupId, 2, { 'finish-on-stop': true, 'max-bytes-per-partition': '2048' });
    } finally {
      delete process.env.TLSDECRYPT_TEST_WORKER_FAIL;
    }
    let summary: RunSummary;
    try {
      await until('the worker failed and was replaced', () => h.counters.workerRestarts > 0, 90_000);
      await until('every packet fed', () => h.counters.packets >= published, 90_000);
      await lagZero(c, groupId, t.packets, 'everything committed');
    } finally {
      h.stop();
      summary = await h.done;
    }
    expect(summary.exitCode).toBe(0);
    expect(summary.counters.workerRestarts).toBe(1);
    const got = await topicEvents(c, t.events);
    const cmp = compare(got, want);
    console.log(`worker failure: ${JSON.stringify(h.counters)}; ${got.length} records, ${cmp.distinct} distinct of ${want.size}`);
    expect(cmp.conflicting).toEqual([]);
    expect(cmp.missing).toEqual([]);
    expect(cmp.extra).toEqual([]);
    expectAllOf(got, want);
  }, 300_000);

  it.runIf(fetch === 'native')('fetch connections cut while fetches are in flight and mid-answer: run reconnects, the output is complete and equals replay', async () => {
    const files = ['tls13-parallel-http11', 'tls12-resumption-ticket', 'tls13-h2-multiplexed'].map((n) => fixtureCopy(dir, n));
    const { want } = await replayOf(files);
    const c = client();
    const t0 = uniq('runworkers.cut');
    const t: Topics = { packets: `${t0}.packets`, secrets: `${t0}.secrets`, events: `${t0}.events` };
    const groupId = `${t0}.group`;
    const cuts0 = fetchCuts.count + fetchCuts.midAnswer;
    // two captures are there at the start (an answer of over 64 KiB), the third comes while run waits in fetches
    let published = await publish(c, t, files.slice(0, 2), 4);
    process.env.TLSDECRYPT_TEST_FETCH_CUT = '2';
    let h: RunHandle;
    try {
      h = await start(c, t, groupId, 2, { 'finish-on-stop': true });
    } finally {
      delete process.env.TLSDECRYPT_TEST_FETCH_CUT;
    }
    let summary: RunSummary;
    try {
      await until('the first captures fed', () => h.counters.packets >= published, 90_000);
      published += await publish(c, t, files.slice(2), 4);
      await until('every packet fed', () => h.counters.packets >= published, 90_000);
      await lagZero(c, groupId, t.packets, 'everything committed');
    } finally {
      h.stop();
      summary = await h.done;
    }
    console.log(`fetch cuts: ${fetchCuts.count} in flight, ${fetchCuts.midAnswer} mid-answer; ${JSON.stringify(h.counters)}`);
    expect(fetchCuts.count + fetchCuts.midAnswer - cuts0).toBeGreaterThan(0);
    expect(summary.exitCode).toBe(0);
    expect(summary.counters.packets).toBe(published);
    const got = await topicEvents(c, t.events);
    const cmp = compare(got, want);
    expect(cmp.conflicting).toEqual([]);
    expect(cmp.missing).toEqual([]);
    expect(cmp.extra).toEqual([]);
    expectAllOf(got, want);
  }, 300_000);

  it('a worker that fails again and again stops the run (exit 1) instead of restarting for ever', async () => {
    const files = ['tls13-parallel-http11'].map((n) => fixtureCopy(dir, n));
    const c = client();
    const t0 = uniq('runworkers.failing');
    const t: Topics = { packets: `${t0}.packets`, secrets: `${t0}.secrets`, events: `${t0}.events` };
    await publish(c, t, files, 2, 'frame');
    process.env.TLSDECRYPT_TEST_WORKER_FAIL = '0:3:always';
    let h: RunHandle;
    try {
      h = await start(c, t, `${t0}.group`, 2, { 'max-bytes-per-partition': '2048' });
    } finally {
      delete process.env.TLSDECRYPT_TEST_WORKER_FAIL;
    }
    const summary = await Promise.race([h.done, new Promise<undefined>((r) => setTimeout(() => r(undefined), 60_000))]);
    if (!summary) {
      h.stop();
      await h.done;
    }
    expect(summary?.exitCode).toBe(1);
    expect(h.counters.workerRestarts).toBe(5); // the 6th failure within 60 s stops the run
  }, 120_000);
});

/** Number of records of a classic pcap. */
function pcapRecords(file: string): number {
  const b = readFileSync(file);
  let n = 0;
  for (let o = 24; o + 16 <= b.length; n++) o += 16 + b.readUInt32LE(o + 8);
  return n;
}
