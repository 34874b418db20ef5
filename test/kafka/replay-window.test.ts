/**
 * The replay window's bound (issue 12), on the shared broker: a connection longer than
 * --replay-window (capture time) stops holding its partition's commit back — counted on its owner
 * (`flow_replay_released`) — and the next owner, which starts after its first packet, reports the
 * rest as a mid-connection session (`missing_handshake`): never lost silently. A record that cannot
 * be parsed is counted once, also when its partition is re-read. Invalid window or
 * byte bound values exit 2 with one line.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CaptureReader } from '../../src/capture/index.js';
import { resolveRunConfig } from '../../src/kafka/config.js';
import { PCAP_CONTENT_TYPE, PcapStreamBuilder } from '../../src/kafka/formats.js';
import type { RawPacket } from '../../src/types.js';
import { publishKeylog, publishPcap } from '../../src/kafka/publish.js';
import { startRun } from '../../src/kafka/run.js';
import { InputError } from '../../src/pipeline/replay.js';
import { brokers, client, ensureBuilt, readAll, REPO, uniq, until } from './helpers.js';
import { compare, lastPacketSec, publishClockTick, replayEvents, splitPcap } from './resilienceHelpers.js';

const dir = mkdtempSync(join(tmpdir(), 'tlsdecrypt-window-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
beforeAll(() => ensureBuilt(), 300_000);
const quiet = new Writable({ write: (_c, _e, cb) => cb() });
type Ev = Record<string, any>;

/**
 * One connection of a fixture cut in two at packet `at` (two pcap files), its key log published, a
 * one-partition packets topic and `run`'s flags for it (shared broker, group of its own).
 */
async function cutConnection(fixture: string, at: number, prefix: string, extraFlags: Record<string, string> = {}) {
  const capture = join(dir, `${prefix}.pcap`), keylog = join(dir, `${prefix}.log`);
  copyFileSync(join(REPO, 'fixtures', fixture, 'capture.pcap'), capture);
  copyFileSync(join(REPO, 'fixtures', fixture, 'keys.log'), keylog);
  const p1 = join(dir, `${prefix}1.pcap`), p2 = join(dir, `${prefix}2.pcap`);
  splitPcap(capture, at, p1, p2);
  const c = client();
  const t0 = uniq(prefix);
  const t = { packets: `${t0}.packets`, secrets: `${t0}.secrets`, events: `${t0}.events`, groupId: `${t0}.group` };
  const admin = await c.admin();
  await admin.ensureTopic(t.packets, 1);
  await publishKeylog(c, { file: keylog, topic: t.secrets, partitions: 1, follow: false });
  const flags = { brokers: brokers(), 'packets-topic': t.packets, 'secrets-topic': t.secrets, 'events-topic': t.events, 'group-id': t.groupId, 'stats-interval': '0', 'session-timeout-ms': '6000', ...extraFlags };
  return { capture, keylog, p1, p2, c, t, admin, flags };
}

describe('replay window (shared broker)', () => {
  it('a connection longer than the window is released (counted on the old owner) and reported missing_handshake by the new one', async () => {
    // tls13-keyupdate: one connection over 2 s of capture time; records 1-22 (to 1.99 s) go to the
    // first owner, the rest (the key update and the large response) to the second.
    const { capture, p1, p2, c, t, admin, flags } = await cutConnection('https/tls13-keyupdate', 22, 'window', { 'replay-window': '1' });
    try {
      const first = await publishPcap(c, { capture: p1, topic: t.packets, partitions: 1, format: 'pcap', batchBytes: 512 });
      const a = await startRun(c, resolveRunConfig(flags, {}), quiet);
      // the connection is open, but older than the window: its first record no longer holds the
      // commit back, the whole partition is committed
      await until('first part read and committed', async () => a.counters.packets >= first.packets && (await admin.lag(t.groupId, t.packets)) === 0, 90_000);
      a.stop(); // planned leave: the open connection is left to the next owner
      const sa = await a.done;
      expect(sa.exitCode).toBe(0);
      expect(sa.stats.anomalies.flow_replay_released).toBe(1);
      expect(sa.stats.sessionsByStatus).toEqual({}); // not closed into a truncated session

      await publishPcap(c, { capture: p2, topic: t.packets, partitions: 1, format: 'pcap', batchBytes: 512 });
      await publishClockTick(c, t.packets, 1, lastPacketSec(capture) + 3600);
      const b = await startRun(client('window-b'), resolveRunConfig({ ...flags, 'finish-on-stop': true }, {}), quiet);
      await until('second part read and committed', async () => (await admin.lag(t.groupId, t.packets)) === 0 && b.counters.packets > 0, 90_000);
      b.stop();
      const sb = await b.done;
      expect(sb.exitCode).toBe(0);
      expect(sb.stats.sessionsByStatus).toEqual({ missing_handshake: 1 });
    } finally {
      await admin.close();
    }
    const evs = (await readAll(c, t.events)).map((r) => JSON.parse(r.value!.toString()) as Ev);
    const sessions = evs.filter((e) => e.event.dataset === 'tls.session');
    expect(sessions.map((e) => [e.source.port, e.decryption.status])).toEqual([[38828, 'missing_handshake']]);
  }, 240_000);

  it('a QUIC connection open at a planned leave is left to the next owner, which rebuilds it from its Initial: replay\'s events, nothing lost or conflicting', async () => {
    // one HTTP/3 connection (100 KiB download with key updates): the first half of its packets go
    // to the first owner, which leaves (SIGTERM's path) with the connection open; the watermark
    // holds the commit at the record of its client Initial, so the second owner re-reads it whole.
    const { capture, keylog, p1, p2, c, t, admin, flags } = await cutConnection('quic/aes128-download-keyupdate', 60, 'quicleave');
    const want = await replayEvents(dir, capture, keylog);
    expect([...want.values()].filter((e) => e.event.dataset === 'tls.session').map((e) => e.decryption.status)).toEqual(['decrypted']);
    try {
      const first = await publishPcap(c, { capture: p1, topic: t.packets, partitions: 1, format: 'pcap', batchBytes: 4096 });
      const a = await startRun(c, resolveRunConfig(flags, {}), quiet);
      await until('first half read', async () => (a.counters.packets >= first.packets ? true : undefined), 90_000);
      a.stop();
      const sa = await a.done;
      expect(sa.exitCode).toBe(0);
      expect(sa.stats.sessionsByStatus).toEqual({}); // not closed into a truncated session
      expect(sa.stats.anomalies.flow_replay_released).toBeUndefined();

      await publishPcap(c, { capture: p2, topic: t.packets, partitions: 1, format: 'pcap', batchBytes: 4096 });
      await publishClockTick(c, t.packets, 1, lastPacketSec(capture) + 3600);
      const b = await startRun(client('quicleave-b'), resolveRunConfig({ ...flags, 'finish-on-stop': true }, {}), quiet);
      await until('second half read and committed', async () => (await admin.lag(t.groupId, t.packets)) === 0 && b.counters.packets > 0, 90_000);
      b.stop();
      const sb = await b.done;
      expect(sb.exitCode).toBe(0);
      expect(sb.stats.sessionsByStatus).toEqual({ decrypted: 1 });
    } finally {
      await admin.close();
    }
    const got = (await readAll(c, t.events)).map((r) => JSON.parse(r.value!.toString()) as Ev);
    const cmp = compare(got, want);
    expect({ missing: cmp.missing, extra: cmp.extra.map((e) => e.event.dataset), conflicting: cmp.conflicting }).toEqual({ missing: [], extra: [], conflicting: [] });
  }, 240_000);

  it('a record that cannot be parsed is counted once, also when its partition comes back and is re-read', async () => {
    // Per partition: the first half of a connection (it stays open: the commit stays at its first
    // record), then a garbage record. Instance A reads both partitions; B joins and takes one; B
    // leaves and A gets it back: A re-reads it from the commit, garbage included.
    const firstHalf = (fixture: string): Buffer => {
      const packets: RawPacket[] = [];
      const reader = new CaptureReader({ packet: (p) => packets.push({ ...p, data: Buffer.from(p.data), ts: { ...p.ts } }), secrets() {}, anomaly() {} });
      reader.push(readFileSync(join(REPO, 'fixtures/https', fixture, 'capture.pcap')));
      reader.end();
      const half = new PcapStreamBuilder();
      for (const p of packets.slice(0, Math.floor(packets.length / 2))) half.add(p);
      return half.take();
    };
    const halves = [firstHalf('tls13-aes128gcm-h2'), firstHalf('tls13-aes256gcm-http11')]; // two connections
    const c = client();
    const t0 = uniq('reread');
    const t = { packets: `${t0}.packets`, events: `${t0}.events`, groupId: `${t0}.group` };
    const admin = await c.admin();
    await admin.ensureTopic(t.packets, 2);
    const prod = await c.producer();
    const ct = { 'content-type': PCAP_CONTENT_TYPE };
    await prod.send(t.packets, [0, 1].flatMap((partition) => [{ value: halves[partition], headers: ct, partition }, { value: Buffer.from('not a pcap stream'), headers: ct, partition }]));
    await prod.close();
    const flags = { brokers: brokers(), 'packets-topic': t.packets, 'secrets-topic': '', 'events-topic': t.events, 'group-id': t.groupId, 'stats-interval': '0', 'session-timeout-ms': '6000' };
    const a = await startRun(c, resolveRunConfig(flags, {}), quiet);
    try {
      await until('A read both partitions', () => a.counters.records >= 4, 90_000);
      expect(a.counters.badRecords).toEqual({ kafka_record_not_pcap: 2 });
      const b = await startRun(client('reread-b'), resolveRunConfig(flags, {}), quiet);
      await until('B took a partition', () => b.assignment().length === 1 && a.assignment().length === 1, 90_000);
      await until('B read it', () => b.counters.records >= 2, 90_000);
      b.stop();
      expect((await b.done).counters.badRecords).toEqual({ kafka_record_not_pcap: 1 });
      await until('A got the partition back and re-read it', () => a.assignment().length === 2 && a.counters.reread >= 2, 90_000);
      expect(a.counters.badRecords).toEqual({ kafka_record_not_pcap: 2 });
    } finally {
      a.stop();
      await a.done;
      await admin.close();
    }
    const sa = await a.done;
    expect(sa.stats.anomalies.kafka_record_not_pcap).toBe(2);
  }, 240_000);

  it('invalid --replay-window / --replay-max-bytes: exit 2 with one line', () => {
    const base = { brokers: '127.0.0.1:9092', 'events-topic': 'e' };
    expect(resolveRunConfig(base, {})).toMatchObject({ replayWindowSec: 120, replayMaxBytes: 256 * 1024 * 1024, finishOnStop: false });
    expect(resolveRunConfig({ ...base, 'tcp-idle-timeout': '60' }, {}).replayWindowSec).toBe(30); // the default follows the idle timeout
    const bad: [Record<string, unknown>, NodeJS.ProcessEnv, RegExp][] = [
      [{ ...base, 'replay-window': '-1' }, {}, /^command line: replay-window takes a whole number from 0 to 86400, got '-1'$/],
      [{ ...base, 'replay-window': '2m' }, {}, /^command line: replay-window takes a whole number/],
      [{ ...base, 'replay-window': '400' }, {}, /^--replay-window 400 must be below the TCP idle timeout \(300 s\)/],
      [base, { TLSDECRYPT_REPLAY_MAX_BYTES: '1000' }, /^environment TLSDECRYPT_REPLAY_MAX_BYTES: replay-max-bytes takes a whole number from 1048576 to/],
      [{ ...base, 'session-timeout-ms': '6000', 'heartbeat-interval-ms': '2500' }, {}, /^--heartbeat-interval-ms 2500 must be at most a third of --session-timeout-ms \(6000\)$/],
    ];
    // the heartbeat: 1 s by default (a member learns of a join or a planned leave within a second)
    expect(resolveRunConfig(base, {}).heartbeatIntervalMs).toBe(1000);
    expect(resolveRunConfig({ ...base, 'session-timeout-ms': '6000', 'heartbeat-interval-ms': '2000' }, {}).heartbeatIntervalMs).toBe(2000);
    for (const [flags, env, msg] of bad) expect(() => resolveRunConfig(flags, env)).toThrow(msg);
    for (const [flags, env] of bad) expect(() => resolveRunConfig(flags, env)).toThrow(InputError);
    const r = spawnSync(process.execPath, [join(REPO, 'dist/src/cli.js'), 'run', '--brokers', '127.0.0.1:1', '--replay-window', 'x'], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toEqual([`tlsdecrypt: command line: replay-window takes a whole number from 0 to 86400, got 'x'`]);
  });
});
