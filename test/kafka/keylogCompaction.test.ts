/**
 * Secrets records stay complete under log compaction: a compacted topic keeps only the newest
 * record per key (the client random), so that record must carry every line of its session.
 */
import { describe, expect, it } from 'vitest';
import { classifyKeylogLine, CumulativeKeylog, newestPerKey } from '../../src/kafka/keylogLines.js';
import { SecretsStore } from '../../src/tls/crypto/keylog.js';
import { readFileSync } from 'node:fs';

describe('compaction-safe key-log records', () => {
  const lines = readFileSync('fixtures/https/tls13-aes128gcm-h2/keys.log', 'utf8').split('\n');

  it('the newest record of a TLS 1.3 session holds all five of its secrets', () => {
    const cum = new CumulativeKeylog();
    const records: { key: string; value: string }[] = [];
    for (const l of lines) {
      const c = classifyKeylogLine(l);
      if (c.kind === 'line') records.push({ key: c.key, value: cum.add(c.key, c.line) });
    }
    expect(records.length).toBe(5);
    const compacted = newestPerKey(records); // what a compacted topic keeps
    expect(compacted).toHaveLength(1);
    const fromCompacted = new SecretsStore();
    fromCompacted.addText(compacted[0].value);
    const fromAll = new SecretsStore();
    fromAll.addText(lines.join('\n'));
    expect(fromCompacted.size).toBe(fromAll.size);
    const cr = Buffer.from(compacted[0].key, 'hex');
    for (const label of ['CLIENT_HANDSHAKE_TRAFFIC_SECRET', 'SERVER_HANDSHAKE_TRAFFIC_SECRET', 'CLIENT_TRAFFIC_SECRET_0', 'SERVER_TRAFFIC_SECRET_0', 'EXPORTER_SECRET']) {
      expect(fromCompacted.get(cr, label)).toEqual(fromAll.get(cr, label));
    }
  });

  it('a label written again replaces its earlier line (latest wins), and old keys are forgotten beyond the bound', () => {
    const cum = new CumulativeKeylog(2);
    const a = 'a'.repeat(64);
    cum.add(a, `CLIENT_RANDOM ${a} ${'11'.repeat(48)}`);
    expect(cum.add(a, `CLIENT_RANDOM ${a} ${'22'.repeat(48)}`)).toBe(`CLIENT_RANDOM ${a} ${'22'.repeat(48)}`);
    cum.add('b'.repeat(64), `CLIENT_RANDOM ${'b'.repeat(64)} ${'33'.repeat(48)}`);
    cum.add('c'.repeat(64), `CLIENT_RANDOM ${'c'.repeat(64)} ${'44'.repeat(48)}`);
    expect(cum.add(a, `EXPORTER_SECRET ${a} ${'55'.repeat(32)}`)).toBe(`EXPORTER_SECRET ${a} ${'55'.repeat(32)}`);
  });
});
