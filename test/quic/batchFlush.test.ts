/**
 * 1-RTT packets held for their batch's authentication (src/quic/gcmBatch.ts) do not hold events
 * back past the input that carried them: `replay` processes them after every chunk it reads (a
 * live pipe's chunk is what it had so far), the engine on its tick and before any other traffic.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CaptureReader } from '../../src/capture/index.js';
import { Engine } from '../../src/pipeline/engine.js';
import { NdjsonWriter } from '../../src/pipeline/output.js';
import { loadKeys, pumpToWriter, writerEngine } from '../../src/pipeline/replay.js';
import type { RawPacket } from '../../src/types.js';

const FX = join(import.meta.dirname, '../../fixtures/quic/aes128-get');

describe('batched QUIC packets and event latency', () => {
  it('an engine emits the HTTP/3 exchanges of held packets on its tick, before the connection ends', () => {
    const packets: RawPacket[] = [];
    const r = new CaptureReader({ packet: (p: RawPacket) => packets.push({ ...p, data: Buffer.from(p.data) }), secrets() {}, anomaly() {} });
    r.push(readFileSync(join(FX, 'capture.pcap')));
    r.end();
    const datasets: string[] = [];
    const e = new Engine((ev) => datasets.push(ev.event.dataset), loadKeys([join(FX, 'keys.log')], []), {});
    for (const p of packets) e.packet(p);
    e.tick(packets[packets.length - 1].ts);
    expect(datasets).toEqual(['http', 'http', 'http']);
    e.finish();
    expect(datasets).toEqual(['http', 'http', 'http', 'tls.session']);
  });

  it('replay writes the exchanges of a chunk before it waits for the next one', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    let seenAtGate = -1;
    const path = join(mkdtempSync(join(tmpdir(), 'tlsd-qflush-')), 'out.ndjson');
    const out = await NdjsonWriter.toFile(path);
    const engine = writerEngine(out, loadKeys([join(FX, 'keys.log')], []), {});
    async function* live(): AsyncGenerator<Buffer> {
      yield readFileSync(join(FX, 'capture.pcap'));
      // the pipe has nothing more for now: what the first chunk carried is out
      seenAtGate = out.count;
      await gate;
    }
    const pumping = pumpToWriter('-', new CaptureReader(engine), out, live(), engine);
    await new Promise((r) => setTimeout(r, 50));
    expect(seenAtGate).toBe(3);
    release();
    await pumping;
    engine.finish();
    await out.close();
    expect(out.count).toBe(4);
  });
});
