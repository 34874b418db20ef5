/**
 * Late keys: ciphertext held while keys are missing is bounded per flow and across all flows of an
 * engine; the held bytes are accounted exactly (back to zero when flows end).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CaptureReader } from '../../src/capture/index.js';
import { Engine } from '../../src/pipeline/engine.js';
import { loadKeys } from '../../src/pipeline/replay.js';

const FX = 'fixtures/https/tls13-parallel-http11';

function run(totalLimit?: number, lateKeys = false) {
  const events: Record<string, any>[] = [];
  const keys = loadKeys([], []);
  const engine = new Engine((e) => events.push(e), keys, totalLimit === undefined ? {} : { tls: { maxPendingRecordBytesTotal: totalLimit } });
  const reader = new CaptureReader(engine);
  reader.push(readFileSync(`${FX}/capture.pcap`));
  reader.end();
  const budget = (engine as unknown as { pendingBudget: { used: number } }).pendingBudget;
  const heldBeforeKeys = budget.used;
  if (lateKeys) keys.secrets.addText(readFileSync(`${FX}/keys.log`, 'utf8'));
  engine.finish();
  return { events, stats: engine.stats, heldBeforeKeys, heldAfter: budget.used };
}

describe('ciphertext held for late keys', () => {
  it('is held for every flow within the default budget and decrypted when the keys arrive', () => {
    const r = run(undefined, true);
    expect(r.heldBeforeKeys).toBeGreaterThan(0);
    expect(r.stats.anomalies.tls_pending_total_limit).toBeUndefined();
    expect(r.stats.sessionsByStatus.decrypted).toBe(3);
    expect(r.heldAfter).toBe(0);
  });

  it('is bounded across flows: past the total, a flow drops what it held and it is counted', () => {
    const r = run(6000, true);
    expect(r.stats.anomalies.tls_pending_total_limit).toBeGreaterThan(0);
    expect(r.heldBeforeKeys).toBeLessThanOrEqual(6000 + 17 * 1024); // at most one record over before the drop
    expect(r.stats.sessionsByStatus.decrypted ?? 0).toBeLessThan(3);
    expect(r.heldAfter).toBe(0);
  });

  it('ends as no_key, with nothing left held, when the keys never come', () => {
    const r = run();
    expect(r.stats.sessionsByStatus.no_key).toBe(3);
    expect(r.heldAfter).toBe(0);
  });
});
