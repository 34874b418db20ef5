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

  it('writes each event as JSON.stringify would, one line each, across batches and raw text', async () => {
    const path = join(dir, 'lines.ndjson');
    const w = await NdjsonWriter.toFile(path);
    const events: Record<string, unknown>[] = [];
    // non-ASCII (2-, 3- and 4-byte UTF-8), a lone surrogate (written as U+FFFD, as any string
    // write does), lines larger than a batch, and enough small ones to cross several batches
    for (let i = 0; i < 3000; i++) events.push({ '@timestamp': String(i), text: `é€😀 ${i}`, n: i });
    events.splice(10, 0, { lone: '\ud800x' }, { big: 'y'.repeat(200_000) }, { wide: '€'.repeat(50_000) });
    let expected = '';
    for (let i = 0; i < events.length; i++) {
      w.write(events[i] as never);
      expected += JSON.stringify(events[i]) + '\n';
      if (i === 1500) {
        w.writeRaw('{"raw":1}\n', 1);
        expected += '{"raw":1}\n';
      }
    }
    await w.close();
    expect(readFileSync(path)).toEqual(Buffer.from(expected, 'utf8'));
    expect(w.count).toBe(events.length + 1);
  });

  it('reuses a batch buffer only after the stream wrote it: every batch arrives intact', async () => {
    const path = join(dir, 'reuse.ndjson');
    const w = await NdjsonWriter.toFile(path);
    const spare = (w as unknown as { spare: Buffer[] }).spare;
    let expected = '';
    let reused = 0;
    for (let i = 0; i < 400; i++) {
      // each event distinct and ~3 KB, so a batch's bytes differ from the one before it
      const ev = { n: i, text: `${i}:${'abcdefghij€'.repeat(250 + (i % 7))}` };
      w.write(ev as never);
      expected += JSON.stringify(ev) + '\n';
      if (i % 10 === 9) {
        await w.drained();
        await new Promise((r) => setImmediate(r));
        if (spare.length > 0) reused++;
      }
    }
    await w.close();
    expect(reused).toBeGreaterThan(0); // buffers came back and were written into again
    expect(readFileSync(path)).toEqual(Buffer.from(expected, 'utf8'));
    expect(w.count).toBe(400);
  });
});
