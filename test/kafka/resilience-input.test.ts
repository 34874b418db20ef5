/**
 * Bad input at the Kafka boundary of `tlsdecrypt run` (shared broker; nothing destructive):
 *  - records larger than --max-record-bytes are counted (kafka_record_oversized) and skipped, and a
 *    fetch size smaller than the records does not stall the consumer;
 *  - garbage on the secrets topic (malformed key-log lines, binary junk, empty and > 1 MiB values) is
 *    counted (keylog_malformed_line, kafka_secrets_record_bad), never echoed, and does not disturb
 *    decryption with the good lines;
 *  - topics: a missing packets topic is an error (exit 2, one line) — `run` never creates it; a
 *    missing events or secrets topic is created unless creation is disabled (createTopics false in
 *    the config file or TLSDECRYPT_CREATE_TOPICS=false; the boolean flag takes no value), then exit 2 too.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveRunConfig } from '../../src/kafka/config.js';
import { setLogWriter } from '../../src/kafka/log.js';
import { publishKeylog, publishPcap } from '../../src/kafka/publish.js';
import { runSummaryLine, startRun } from '../../src/kafka/run.js';
import { brokers, client, ensureBuilt, REPO, uniq, until } from './helpers.js';
import { compare, exitOf, expectAllOf, fixtureCopy, replayEvents, spawnRun, topicEvents } from './resilienceHelpers.js';

const dir = mkdtempSync(join(tmpdir(), 'tlsdecrypt-resil-input-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const FIXTURE = 'tls13-aes128gcm-h2';
const have = existsSync(join(REPO, 'fixtures/https', FIXTURE, 'capture.pcap'));

describe('bad input on the packets and secrets topics', () => {
  it.runIf(have)('oversized records skipped and counted, tiny fetch size, garbage secrets counted and never echoed: events still equal replay', async () => {
    const f = fixtureCopy(dir, FIXTURE);
    const want = await replayEvents(dir, f.capture, f.keylog);
    const c = client('resil-input');
    const t = uniq('resil.input');
    const packets = `${t}.packets`, secrets = `${t}.secrets`, events = `${t}.events`, groupId = `${t}.group`;

    // Tokens that must never show up in a log line: hex that looks like key material.
    const tokenA = randomBytes(32).toString('hex');
    const tokenB = randomBytes(48).toString('hex');
    const garbageLines = [
      'hello world', // 2 fields
      `CLIENT_RANDOM nothex ${tokenB}`, // bad client random
      `CLIENT_TRAFFIC_SECRET_0 ${tokenA} ${tokenB}0`, // odd-length secret
      `NOT_A_LABEL ${tokenA} ${tokenB}`, // unknown label
      `CLIENT_RANDOM ${tokenA.slice(0, 40)} ${tokenB}`, // short client random
    ];
    const admin0 = await c.admin();
    await admin0.ensureTopic(secrets, 1);
    await admin0.close();
    const p = await c.producer();
    await p.send(secrets, [
      ...garbageLines.map((l) => ({ key: null, value: l })),
      { key: null, value: Buffer.from([0xff, 0xfe, 0x00, 0x01, 0x80, 0x0a, 0x7f]) }, // binary: 2 malformed "lines"
      { key: null, value: Buffer.alloc(0) }, // empty record
      { key: null, value: Buffer.alloc((1 << 20) + 10, 0x41) }, // > 1 MiB
    ]);
    await p.close();
    await publishKeylog(c, { file: f.keylog, topic: secrets, partitions: 1, follow: false });
    const pub = await publishPcap(c, { capture: f.capture, topic: packets, partitions: 2, format: 'frame', batchBytes: 4096 });
    // Oversized records (bigger than --max-record-bytes 65536 and than the fetch size 1024).
    const p2 = await c.producer();
    await p2.send(packets, [
      { value: Buffer.alloc(200_000, 1), headers: { 'content-type': 'application/vnd.tcpdump.pcap' }, partition: 0 },
      { value: Buffer.alloc(70_000, 2), partition: 1 },
    ]);
    await p2.close();

    const cfg = resolveRunConfig(
      {
        brokers: brokers(),
        'packets-topic': packets,
        'secrets-topic': secrets,
        'events-topic': events,
        'group-id': groupId,
        'stats-interval': '0',
        'finish-on-stop': true,
        'max-record-bytes': '65536',
        'max-bytes-per-partition': '1024',
      },
      {},
    );
    const logs: string[] = [];
    setLogWriter((l) => logs.push(l));
    let summary;
    try {
      const h = await startRun(c, cfg);
      try {
        const admin = await c.admin();
        try {
          await until('consumed and committed', async () => (await admin.lag(groupId, packets)) === 0, 120_000, 500);
        } finally {
          await admin.close();
        }
        expect(h.counters.packets).toBe(pub.packets);
      } finally {
        h.stop();
        summary = await h.done;
      }
      logs.push(runSummaryLine(summary));
    } finally {
      setLogWriter((l) => process.stderr.write(l));
    }
    expect(summary.exitCode).toBe(0);
    expect(summary.counters.badRecords).toEqual({ kafka_record_oversized: 2, kafka_secrets_record_bad: 2 });
    expect(summary.stats.anomalies.keylog_malformed_line).toBe(garbageLines.length + 2);
    const text = logs.join('');
    for (const tok of [tokenA, tokenB, tokenA.slice(0, 40), 'hello world', 'NOT_A_LABEL', 'nothex']) expect(text).not.toContain(tok);
    for (const l of readFileSync(f.keylog, 'utf8').split('\n').filter((x) => x && !x.startsWith('#'))) expect(text).not.toContain(l.split(' ')[2]);

    const got = await topicEvents(c, events);
    const cmp = compare(got, want);
    expect(cmp.conflicting).toEqual([]);
    expect(cmp.missing).toEqual([]);
    expect(cmp.extra).toEqual([]);
    expectAllOf(got, want);
  }, 240_000);
});

describe('topics given to run', () => {
  beforeAll(() => ensureBuilt(), 300_000);

  const base = (t: string, more: string[] = []) => ['--brokers', brokers(), '--packets-topic', `${t}.packets`, '--secrets-topic', `${t}.secrets`, '--events-topic', `${t}.events`, '--group-id', `${t}.group`, '--stats-interval', '0', ...more];
  const oneErrorLine = (stderr: string): string => {
    const lines = stderr.split('\n').filter((l) => l.trim() && !l.startsWith('{'));
    expect(lines, stderr).toHaveLength(1);
    expect(stderr).not.toMatch(/\n\s+at /); // no stack trace
    return lines[0];
  };

  it('a missing packets topic: exit 2, one line (run never creates it, even with --create-topics)', async () => {
    const t = uniq('resil.notopic');
    const r = spawnRun(base(t));
    expect(await exitOf(r, 90_000)).toBe(2);
    expect(oneErrorLine(r.stderr())).toBe(`tlsdecrypt: packets topic ${t}.packets does not exist at ${brokers()} (create it, e.g. with 'tlsdecrypt publish pcap')`);
    const admin = await client().admin();
    try {
      expect(await admin.topicExists(`${t}.packets`)).toBe(false);
      expect(await admin.topicExists(`${t}.events`)).toBe(false); // nothing created on the way out
    } finally {
      await admin.close();
    }
  }, 120_000);

  it('missing events / secrets topics with TLSDECRYPT_CREATE_TOPICS=false: exit 2, one line each; created by default', async () => {
    const t = uniq('resil.nocreate');
    const admin = await client().admin();
    try {
      await admin.ensureTopic(`${t}.packets`, 1);
      const r1 = spawnRun(base(t), { TLSDECRYPT_CREATE_TOPICS: 'false' });
      expect(await exitOf(r1, 90_000)).toBe(2);
      expect(oneErrorLine(r1.stderr())).toBe(`tlsdecrypt: events topic ${t}.events does not exist at ${brokers()}`);
      await admin.ensureTopic(`${t}.events`, 1);
      const r2 = spawnRun(base(t), { TLSDECRYPT_CREATE_TOPICS: 'false' });
      expect(await exitOf(r2, 90_000)).toBe(2);
      expect(oneErrorLine(r2.stderr())).toBe(`tlsdecrypt: secrets topic ${t}.secrets does not exist at ${brokers()}`);
      expect(await admin.topicExists(`${t}.secrets`)).toBe(false);
      // default: the missing secrets topic is created and run consumes
      const r3 = spawnRun(base(t));
      await until('run consuming', () => r3.stderr().includes('"consuming"'), 90_000);
      expect(await admin.topicExists(`${t}.secrets`)).toBe(true);
      r3.child.kill('SIGTERM');
      expect(await exitOf(r3, 90_000), r3.stderr()).toBe(0);
    } finally {
      await admin.close();
    }
  }, 240_000);
});
