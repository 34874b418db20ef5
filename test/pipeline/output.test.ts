/**
 * NdjsonWriter back-pressure: a 'drain' that the stream emitted while nobody awaited it (the
 * writes of `replay --workers` come from engine threads' answers, between the reader's awaits)
 * must not leave `drained()` waiting for another one that never comes.
 */
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { NdjsonWriter } from '../../src/pipeline/output.js';

const dir = mkdtempSync(join(tmpdir(), 'tlsd-output-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Resolves with 'resolved', or 'pending' when `p` has not settled after the stream's I/O had every chance to run. */
async function settles(p: Promise<void>): Promise<'resolved' | 'pending'> {
  let state: 'resolved' | 'pending' = 'pending';
  void p.then(() => (state = 'resolved'));
  for (let i = 0; i < 20 && state === 'pending'; i++) await new Promise((r) => setTimeout(r, 10));
  return state;
}

describe('NdjsonWriter', () => {
  it('does not wait for a drain that already happened', async () => {
    const path = join(dir, 'out.ndjson');
    const w = await NdjsonWriter.toFile(path);
    const stream = (w as unknown as { stream: Writable }).stream;
    const big = `${JSON.stringify({ body: 'x'.repeat(100_000) })}\n`;
    w.writeRaw(big, 1); // beyond the stream's high-water mark: the writer is blocked
    expect(w.full).toBe(true);
    await once(stream, 'drain'); // the stream drains while the writer's producer is elsewhere
    expect(await settles(w.drained())).toBe('resolved');
    expect(w.full).toBe(false);
    w.writeRaw(big, 1);
    await w.close();
    expect(readFileSync(path, 'utf8')).toBe(big + big);
    expect(w.count).toBe(2);
  });
});
