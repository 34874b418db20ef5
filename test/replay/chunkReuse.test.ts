/**
 * `replay` reads a capture file into two buffers in turn (src/pipeline/replay.ts fileChunks): the
 * engine gets views of packets in a chunk that is overwritten two reads later. Here every fixture
 * is replayed in 4 KiB chunks, each chunk overwritten (`poison`) as soon as the reader asks for
 * the next one, against the same chunks as fresh copies: a stage that kept a view of packet bytes
 * past its call (instead of copying them) would decrypt or report garbage and the events differ.
 */
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CaptureReader } from '../../src/capture/index.js';
import { NdjsonWriter } from '../../src/pipeline/output.js';
import { fileChunks, loadKeys, pumpToWriter, writerEngine } from '../../src/pipeline/replay.js';
import { captures } from '../helpers/replay.js';

const CHUNK = 4096;

async function* freshCopies(capture: string): AsyncGenerator<Buffer> {
  const all = readFileSync(capture);
  for (let off = 0; off < all.length; off += CHUNK) yield Buffer.from(all.subarray(off, off + CHUNK));
}

async function* poisoned(capture: string): AsyncGenerator<Buffer> {
  for await (const c of fileChunks(capture, CHUNK)) {
    yield c;
    c.fill(0xa5);
  }
}

const tmp = mkdtempSync(join(tmpdir(), 'tlsd-chunks-'));
let seq = 0;

async function run(capture: string, source: AsyncIterable<Buffer>): Promise<{ lines: string[]; stats: unknown } | { error: string }> {
  const dir = capture.slice(0, capture.lastIndexOf('/'));
  const keylogs = existsSync(join(dir, 'keys.log')) ? [join(dir, 'keys.log')] : [];
  const rsaKeys = keylogs.length === 0 && existsSync(join(dir, 'server.key')) ? [{ path: join(dir, 'server.key') }] : [];
  const path = join(tmp, `out-${seq++}.ndjson`);
  const out = await NdjsonWriter.toFile(path);
  const engine = writerEngine(out, loadKeys(keylogs, rsaKeys), {});
  try {
    await pumpToWriter(capture, new CaptureReader(engine), out, source);
  } catch (e) {
    await out.close();
    return { error: (e as Error).message };
  }
  engine.finish();
  await out.close();
  return { lines: readFileSync(path, 'utf8').split('\n').filter(Boolean), stats: engine.stats };
}

describe('replay reads a capture into reused buffers', () => {
  const all = captures('fixtures');
  it('has the fixtures', () => {
    expect(all.length).toBeGreaterThanOrEqual(80);
  });
  for (const capture of all) {
    it(`${capture}: the same events and stats from overwritten 4 KiB chunks as from fresh copies`, async () => {
      const want = await run(capture, freshCopies(capture));
      const got = await run(capture, poisoned(capture));
      expect(got).toEqual(want);
    });
  }
});
