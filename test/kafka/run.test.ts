/**
 * `run` end to end against the real broker: fixture captures published to a packets topic, keys
 * to a secrets topic; the events read back from the events topic must equal `replay`'s (same
 * event.id set, same content).
 */
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NdjsonWriter } from '../../src/pipeline/output.js';
import { replay } from '../../src/pipeline/replay.js';
import { resolveRunConfig } from '../../src/kafka/config.js';
import { publishKeylog, publishPcap } from '../../src/kafka/publish.js';
import { startRun } from '../../src/kafka/run.js';
import { brokers, client, ensureBuilt, readAll, REPO, sleep, uniq, until } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'tlsdecrypt-run-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type Ev = Record<string, any>;

async function replayEvents(capture: string, keylog: string): Promise<Map<string, Ev>> {
  const f = join(dir, `replay-${Math.random().toString(36).slice(2)}.ndjson`);
  const out = await NdjsonWriter.toFile(f);
  await replay({ capture, keylogs: [keylog], rsaKeys: [], engine: {} }, out);
  await out.close();
  return byId(readFileSync(f, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)));
}

function byId(evs: Ev[]): Map<string, Ev> {
  const m = new Map<string, Ev>();
  for (const e of evs) {
    const id = e.event?.id;
    expect(typeof id).toBe('string');
    expect(m.has(id), `duplicate event.id ${id}`).toBe(false);
    m.set(id, e);
  }
  return m;
}

interface Case {
  fixture: string;
  format: 'pcap' | 'frame';
  workers: number;
  /** Wall-time delay between publishing the packets and the keys (keys before packets when < 0). */
  keysDelayMs: number;
  garbage?: boolean;
  /** Published with header `sensor`: every event must carry observer.name (replay's have none). */
  sensor?: string;
  /** --max-in-flight (1 exercises the pause/resume path). */
  maxInFlight?: number;
}

async function runCase(k: Case): Promise<void> {
  // Private copies: the fixtures folder may be regenerated while tests run.
  const fx = mkdtempSync(join(dir, `${k.fixture}-`));
  const capture = join(fx, 'capture.pcap');
  const keylog = join(fx, 'keys.log');
  copyFileSync(join(REPO, 'fixtures/https', k.fixture, 'capture.pcap'), capture);
  copyFileSync(join(REPO, 'fixtures/https', k.fixture, 'keys.log'), keylog);
  const want = await replayEvents(capture, keylog);
  expect(want.size).toBeGreaterThan(0);
  expect([...want.values()].some((e) => e.tags?.includes('Decryption Detection'))).toBe(true);

  const c = client();
  const t = uniq(`run.${k.fixture}`);
  const packets = `${t}.packets`, secrets = `${t}.secrets`, events = `${t}.events`, groupId = `${t}.group`;
  const keyLines = readFileSync(keylog, 'utf8').split('\n').filter((l) => l.trim() && !l.startsWith('#')).length;
  if (k.keysDelayMs < 0) await publishKeylog(c, { file: keylog, topic: secrets, partitions: 2, follow: false });
  const pub = await publishPcap(c, { capture, topic: packets, partitions: 4, format: k.format, batchBytes: 4096, sensor: k.sensor });
  const publishedAt = Date.now();
  if (k.garbage) {
    const p = await c.producer();
    await p.send(packets, [
      { value: Buffer.from('not a pcap at all'), headers: { 'content-type': 'application/vnd.tcpdump.pcap' }, partition: 0 },
      { value: Buffer.from([1, 2, 3]), headers: { 'content-type': 'text/plain' }, partition: 1 },
      { value: Buffer.from([0xde, 0xad]), headers: { linktype: 'xyz' }, partition: 2 },
      { value: Buffer.from([0xde, 0xad]), partition: 3 }, // frame without timestamp key
      { value: Buffer.from(''), partition: 0 },
    ]);
    await p.close();
  }

  {
    // exactly what was published is in the topic (no producer-retry duplicates)
    const admin = await c.admin();
    const offs = await admin.topicOffsets(packets);
    await admin.close();
    expect(offs.reduce((a, o) => a + Number(o.high), 0)).toBe(pub.records + (k.garbage ? 5 : 0));
  }
  const cfg = resolveRunConfig(
    {
      brokers: brokers(),
      'packets-topic': packets,
      'secrets-topic': secrets,
      'events-topic': events,
      'group-id': groupId,
      workers: String(k.workers),
      'stats-interval': '0',
      // a finite topic: the stop closes what is still open (late-key flows wait for no more packets)
      'finish-on-stop': true,
      // these tests are about what comes out, not the resource governor: no budgets that a busy
      // CI machine could trip (the governor has its own tests in ops.test.ts)
      'max-cpu': '0',
      'max-memory': '0',
      ...(k.maxInFlight ? { 'max-in-flight': String(k.maxInFlight) } : {}),
    },
    {},
  );
  const stdoutLines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      stdoutLines.push(...chunk.toString().split('\n').filter(Boolean));
      cb();
    },
  });
  cfg.stdout = true;
  const h = await startRun(c, cfg, sink);
  let summary;
  try {
    const admin = await c.admin();
    try {
      // every packet fed; with late keys, flows holding ciphertext keep the commit back (replay
      // watermark) until the keys came: lag 0 only then
      await until('packets consumed', () => h.counters.packets >= pub.packets, 90_000);
      if (k.keysDelayMs < 0) await until('packets committed', async () => (await admin.lag(groupId, packets)) === 0, 90_000);
    } finally {
      await admin.close();
    }
    expect(h.counters.packets).toBe(pub.packets);
    if (k.keysDelayMs >= 0) {
      // keys 5 s (wall time) after the packets: the engine holds the ciphertext meanwhile
      const wait = publishedAt + k.keysDelayMs - Date.now();
      if (wait > 0) await sleep(wait);
      expect(h.counters.secretRecords).toBe(0);
      await publishKeylog(c, { file: keylog, topic: secrets, partitions: 2, follow: false });
    }
    await until('secrets read by the engine', () => h.counters.secretLines >= keyLines, 60_000);
  } finally {
    h.stop();
    summary = await h.done;
  }
  expect(summary.exitCode).toBe(0);
  if (k.garbage) {
    const bad = Object.values(summary.counters.badRecords).reduce((a, b) => a + b, 0);
    expect(bad).toBe(5);
  }

  const recs = await readAll(c, events);
  const got = byId(recs.map((r) => JSON.parse(r.value!.toString())));
  if (k.sensor) {
    for (const ev of got.values()) {
      expect(ev.observer).toEqual({ name: k.sensor });
      delete ev.observer;
    }
  }
  for (const r of recs) expect(r.key?.toString()).toBe(JSON.parse(r.value!.toString()).network.community_id);
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
  for (const [id, ev] of want) expect(got.get(id), `event ${id}`).toEqual(ev);
  // --stdout carries the same events
  expect(byId(stdoutLines.map((l) => JSON.parse(l))).size).toBe(want.size);
}

const have = (f: string) => existsSync(join(REPO, 'fixtures/https', f, 'capture.pcap')) && existsSync(join(REPO, 'fixtures/https', f, 'keys.log'));
/** The first fixture present of a preference list (multi-connection captures first). */
const pick = (...names: string[]) => names.find(have);
const multiFlow = pick('tls12-resumption-ticket', 'tls12-resumption-sessionid', 'tls12-ecdhe-aes128gcm-http11', 'tls13-aes128gcm-h2');

describe('run end to end (real broker)', () => {
  it.runIf(have('tls13-aes128gcm-h2'))('pcap-stream records, keys already in the topic, bad records skipped: events equal replay', async () => {
    await runCase({ fixture: 'tls13-aes128gcm-h2', format: 'pcap', workers: 1, keysDelayMs: -1, garbage: true });
  });

  it.runIf(have('tls12-ecdhe-aes128gcm-http11'))('keys published 5 s after the packets still decrypt (events equal replay)', async () => {
    await runCase({ fixture: 'tls12-ecdhe-aes128gcm-http11', format: 'pcap', workers: 1, keysDelayMs: 5000 });
  });

  describe('with worker threads', () => {
    beforeAll(() => ensureBuilt(), 300_000);
    it.runIf(multiFlow !== undefined)('frame records, 2 workers, late keys, sensor header: events equal replay (+ observer.name)', async () => {
      await runCase({ fixture: multiFlow!, format: 'frame', workers: 2, keysDelayMs: 5000, sensor: 'tap-frame' });
    });
    it.runIf(have('tls13-aes128gcm-h2'))('pcap-stream records, 3 workers, max-in-flight 1, keys first, sensor header: events equal replay (+ observer.name)', async () => {
      await runCase({ fixture: 'tls13-aes128gcm-h2', format: 'pcap', workers: 3, keysDelayMs: -1, sensor: 'tap-pcap', maxInFlight: 1 });
    });
  });
});

describe('two engine instances in one consumer group (real broker)', () => {
  const fixture = pick('tls13-parallel-http11', 'tls12-resumption-ticket', 'tls12-resumption-sessionid', 'tls13-aes128gcm-h2');
  it.runIf(fixture !== undefined)('split the partitions; together their events equal replay', async () => {
    const fx = mkdtempSync(join(dir, 'two-'));
    const capture = join(fx, 'capture.pcap');
    const keylog = join(fx, 'keys.log');
    copyFileSync(join(REPO, 'fixtures/https', fixture!, 'capture.pcap'), capture);
    copyFileSync(join(REPO, 'fixtures/https', fixture!, 'keys.log'), keylog);
    const want = await replayEvents(capture, keylog);
    const c = client();
    const t = uniq('two');
    const packets = `${t}.packets`, secrets = `${t}.secrets`, events = `${t}.events`, groupId = `${t}.group`;
    const admin = await c.admin();
    await admin.ensureTopic(packets, 8);
    await publishKeylog(c, { file: keylog, topic: secrets, partitions: 1, follow: false });
    const cfg = resolveRunConfig({ brokers: brokers(), 'packets-topic': packets, 'secrets-topic': secrets, 'events-topic': events, 'group-id': groupId, 'stats-interval': '0', 'max-cpu': '0', 'max-memory': '0' }, {});
    const a = await startRun(c, cfg);
    const b = await startRun(client('second'), cfg);
    let sa, sb;
    try {
      // both members joined before any packet exists: wait until the group is stable with 2 members
      await until('both members hold partitions (8 in all, disjoint)', () => {
        const pa = a.assignment(), pb = b.assignment();
        return pa.length > 0 && pb.length > 0 && new Set([...pa, ...pb]).size === 8 && pa.length + pb.length === 8;
      }, 90_000);
      const pub = await publishPcap(c, { capture, topic: packets, partitions: 8, format: 'pcap', batchBytes: 2048 });
      await until('packets consumed and committed', async () => (await admin.lag(groupId, packets)) === 0, 90_000);
      expect(a.counters.packets + b.counters.packets).toBeGreaterThanOrEqual(pub.packets);
    } finally {
      a.stop();
      b.stop();
      [sa, sb] = await Promise.all([a.done, b.done]);
      await admin.close();
    }
    expect(sa.exitCode).toBe(0);
    expect(sb.exitCode).toBe(0);
    const got = new Map<string, Ev>();
    for (const r of await readAll(c, events)) {
      const ev = JSON.parse(r.value!.toString());
      got.set(ev.event.id, ev); // at-least-once: a re-delivery after the rebalance may repeat an id
    }
    expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
    for (const [id, ev] of want) expect(got.get(id), `event ${id}`).toEqual(ev);
  });
});
