import { Kafka, logLevel, type LogEntry } from 'kafkajs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { kafkaLogCreator, log, muteKafkaLog, setLogWriter, Throttle } from '../../src/kafka/log.js';

const SECRET = '0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff';
const SECRET_BYTES = Buffer.from(SECRET, 'hex');

function captureLines(): string[] {
  const lines: string[] = [];
  setLogWriter((l) => lines.push(l));
  return lines;
}

function entry(namespace: string, level: logLevel, message: string, extra: Record<string, unknown> = {}): LogEntry {
  return { namespace, level, label: logLevel[level], log: { timestamp: new Date().toISOString(), message, ...extra } };
}

afterEach(() => {
  setLogWriter(undefined);
  vi.useRealTimers();
});

describe('Kafka logging through the shared pino logger', () => {
  it('writes JSON lines with the shared fields and redaction; payloads are dropped', () => {
    const lines = captureLines();
    log('info', 'consuming', { topic: 'tlsdecrypt.packets', value: 'PAYLOAD-BYTES', messages: ['PAYLOAD-BYTES'], key: SECRET, sasl: { password: SECRET }, conf: { ssl: { key: SECRET_BYTES } }, error: new Error('boom') });
    expect(lines).toHaveLength(1);
    const text = lines.join('');
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain(SECRET_BYTES.toString('base64'));
    expect(text).not.toContain('PAYLOAD-BYTES');
    const rec = JSON.parse(lines[0]);
    expect(rec).toMatchObject({ 'log.level': 'info', 'log.logger': 'tlsdecrypt.kafka', message: 'consuming', topic: 'tlsdecrypt.packets', key: '[REDACTED]', sasl: '[REDACTED]', conf: { ssl: { key: '[REDACTED]' } }, error: { message: 'boom', type: 'Error' } });
    expect(rec['log.redacted']).toEqual(['key', 'sasl', 'conf.ssl.key']);
    expect(typeof rec['@timestamp']).toBe('string');
  });

  it('maps kafkajs entries (warn and error only) onto the logger, through the same redaction', () => {
    const lines = captureLines();
    const logger = kafkaLogCreator(logLevel.INFO);
    logger(entry('Consumer', logLevel.INFO, 'Starting'));
    logger(entry('Consumer', logLevel.DEBUG, 'Fetching'));
    logger(entry('Producer', logLevel.ERROR, 'Failed to send', { broker: '127.0.0.1:9092', clientId: 'tlsdecrypt', stack: 'Error: at x (y.js:1)', sasl: { mechanism: 'plain', username: 'u', password: SECRET }, authentication: { token: SECRET, privateKey: SECRET_BYTES }, premaster: SECRET, value: SECRET }));
    logger(entry('Cluster', logLevel.WARN, 'Metadata stale', { topic: 't', nested: { deeper: { masterSecret: SECRET, tlsSecret: SECRET } } }));
    logger(entry('Cluster', logLevel.ERROR, 'Response Metadata', { error: 'This server is not the leader for that topic-partition' })); // transient: debug only
    expect(lines).toHaveLength(2);
    const text = lines.join('');
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain(SECRET_BYTES.toString('base64'));
    expect(text).not.toContain('y.js'); // no stacks
    const [a, b] = lines.map((l) => JSON.parse(l));
    expect(a).toMatchObject({ 'log.level': 'error', 'log.logger': 'tlsdecrypt.kafka', message: 'kafka: Failed to send', 'kafka.namespace': 'Producer', broker: '127.0.0.1:9092', sasl: '[REDACTED]', premaster: '[REDACTED]', authentication: { token: '[REDACTED]', privateKey: '[REDACTED]' } });
    expect(a['log.redacted']).toEqual(expect.arrayContaining(['sasl', 'premaster', 'authentication.token', 'authentication.privateKey']));
    expect(a).not.toHaveProperty('value');
    expect(b).toMatchObject({ 'log.level': 'warn', message: 'kafka: Metadata stale', nested: { deeper: { masterSecret: '[REDACTED]', tlsSecret: '[REDACTED]' } } });
  });

  it('keeps suppressing repeated outage messages, then says how many were suppressed', () => {
    vi.useFakeTimers({ now: Date.UTC(2026, 0, 1), toFake: ['Date'] });
    const lines = captureLines();
    const logger = kafkaLogCreator(logLevel.INFO);
    const ns = `Connection-${Math.random()}`;
    for (let i = 0; i < 20; i++) {
      logger(entry(ns, logLevel.ERROR, `Connection error: connect ECONNREFUSED 127.0.0.1:${9000 + i}`, { broker: `127.0.0.1:${9000 + i}`, password: SECRET }));
      vi.advanceTimersByTime(1000);
    }
    expect(lines).toHaveLength(1);
    vi.advanceTimersByTime(60_000);
    logger(entry(ns, logLevel.ERROR, 'Connection error: connect ECONNREFUSED 127.0.0.1:9092', { password: SECRET }));
    expect(lines).toHaveLength(3);
    const recs = lines.map((l) => JSON.parse(l));
    expect(recs[1]).toMatchObject({ 'log.level': 'warn', message: 'kafka: similar messages suppressed', 'kafka.namespace': ns, suppressed: 19 });
    expect(recs[2]).toMatchObject({ 'log.level': 'error', password: '[REDACTED]' });
    expect(lines.join('')).not.toContain(SECRET);
    // muted while connecting
    return muteKafkaLog(async () => {
      logger(entry('Admin', logLevel.ERROR, 'Broken'));
    }).then(() => expect(lines).toHaveLength(3));
  });

  it('a real kafkajs client logs through it, SASL password never written', async () => {
    const lines = captureLines();
    const kafka = new Kafka({
      clientId: 'tlsdecrypt-log-test',
      brokers: ['127.0.0.1:1'],
      logCreator: kafkaLogCreator,
      connectionTimeout: 200,
      retry: { retries: 0 },
      sasl: { mechanism: 'plain', username: 'user', password: SECRET },
    });
    const producer = kafka.producer();
    await expect(producer.connect()).rejects.toThrow();
    expect(lines.length).toBeGreaterThan(0);
    const text = lines.join('');
    expect(text).not.toContain(SECRET);
    for (const l of lines) expect(JSON.parse(l)).toMatchObject({ 'log.logger': 'tlsdecrypt.kafka', message: expect.stringMatching(/^kafka: /) });
  });
});

describe('Throttle (outage noise, rate-limited log lines)', () => {
  it('passes a key once per period, then says how many were held back and since when', () => {
    const t = new Throttle(1000, 2);
    expect(t.pass('a', 0)).toEqual({ suppressed: 0, sinceMs: 0 });
    expect(t.pass('a', 10)).toBeUndefined();
    expect(t.pass('a', 999)).toBeUndefined();
    expect(t.pass('b', 500)).toEqual({ suppressed: 0, sinceMs: 0 });
    expect(t.pass('a', 1000)).toEqual({ suppressed: 2, sinceMs: 1000 });
    // a third key forgets the others (bounded state): 'a' passes again at once
    expect(t.pass('c', 1001)).toEqual({ suppressed: 0, sinceMs: 0 });
    expect(t.pass('a', 1002)).toEqual({ suppressed: 0, sinceMs: 0 });
  });
});
