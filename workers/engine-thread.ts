/**
 * Worker thread of `replay --workers N` (src/pipeline/fanout.ts): one Engine, fed packet indexes
 * (src/pipeline/batch.ts, transferred ArrayBuffers) into the dispatcher's shared capture chunks
 * (SharedArrayBuffers handed over once), in the order its dispatcher sent them. Each index's
 * buffer goes back with the answer, for a later index, and the answer releases this engine's hold
 * on the chunk: the engine keeps no view of packet bytes past the call (the CaptureSink contract;
 * it copies what it holds), so the dispatcher may read into the chunk again once every engine
 * with packets in it has answered.
 * A plain message port, not a Piscina task queue: messages on a port arrive in the order they were
 * posted, which is the order an engine needs, and each index is answered with the NDJSON of the
 * events it produced.
 *
 * The thread outlives one replay: `open` starts a new Engine (key files and options of that
 * replay), `finish` ends it and answers its stats, so a pool of threads can serve replay after
 * replay (tests run every fixture through one pool).
 */
import { parentPort } from 'node:worker_threads';
import { Engine, type EngineStats } from '../src/pipeline/engine.js';
import { INDEX_WORDS, IndexSlots, readIndex, readSlot, SLOT_HEADER_WORDS } from '../src/pipeline/batch.js';
import { InputError, loadKeys } from '../src/pipeline/replay.js';
import type { EngineThreadConfig, FromEngineThread, ToEngineThread } from '../src/pipeline/fanout.js';

const port = parentPort!;
let engine: Engine | undefined;
/** An `open` with `discard`: indexes are received and dropped (the dispatcher's own ceiling). */
let discarding = false;
let poison = false;
let lines: string[] = [];
/** The dispatcher's shared chunks, by number. */
let chunks: Buffer[] = [];
/** This engine's index slots, by chunk number (IndexSlots). */
let slotWords: Uint32Array[] = [];
let slotInline: Buffer[] = [];

function emptyStats(): EngineStats {
  return {
    packets: 0, bytes: 0, tcpPackets: 0, flows: 0, tlsFlows: 0, otherFlows: 0, decryptedBytes: 0,
    sessionsByStatus: {}, eventsByDataset: {}, anomalies: {}, notDecoded: {},
  };
}

function open(cfg: EngineThreadConfig): void {
  lines = [];
  discarding = cfg.discard === true;
  poison = cfg.poison === true;
  // Key files are checked by the dispatcher before any thread opens; malformed key-log lines are
  // counted there too (once, not once per engine).
  engine = discarding ? undefined : new Engine((ev) => lines.push(JSON.stringify(ev)), loadKeys(cfg.keylogs, cfg.rsaKeys), cfg.engine);
}

function take(): { ndjson: string; events: number } {
  const n = lines.length;
  const ndjson = n ? lines.join('\n') + '\n' : '';
  lines = [];
  return { ndjson, events: n };
}

function answer(m: FromEngineThread): void {
  port.postMessage(m);
}

port.on('message', (m: ToEngineThread) => {
  let chunk: number | undefined;
  try {
    if (typeof m === 'number') {
      // the common case: our index into chunk m is in its slot; nothing was transferred
      chunk = m;
      const words = slotWords[m];
      if (engine) {
        readSlot(words, slotInline[m], chunks[m], engine);
        engine.quic.flush();
      } else if (!discarding) throw new Error('packets before open');
      if (poison) {
        slotInline[m].subarray(0, words[1]).fill(0xee);
        words.subarray(0, SLOT_HEADER_WORDS + words[0] * INDEX_WORDS).fill(0xeeeeeeee);
      }
      if (lines.length === 0) port.postMessage(m satisfies FromEngineThread);
      else port.postMessage({ t: 'events', ...take(), chunk: m } satisfies FromEngineThread);
    } else if (m.t === 'chunks') {
      chunks = m.list.map((sab) => Buffer.from(sab));
      const slots = new IndexSlots(m.list.length, m.slotWords, m.slotInline, m.slots);
      slotWords = slots.slotWords;
      slotInline = slots.slotInline.map((u) => Buffer.from(u.buffer, u.byteOffset, u.byteLength));
    } else if (m.t === 'open') {
      open(m.cfg);
    } else if (m.t === 'index') {
      chunk = m.chunk;
      const inline = m.inline ? Buffer.from(m.inline.buffer, m.inline.byteOffset, m.inline.byteLength) : undefined;
      if (engine) {
        readIndex(m.index, m.chunk >= 0 ? chunks[m.chunk] : undefined, inline, engine);
        engine.quic.flush(); // QUIC packets held for their batch's authentication: this chunk's events go back with it
      }
      else if (!discarding) throw new Error('packets before open');
      const index = m.index.buffer as ArrayBuffer;
      if (poison) {
        new Uint8Array(index).fill(0xee);
        inline?.fill(0xee);
      }
      port.postMessage({ t: 'events', ...take(), index, chunk: m.chunk } satisfies FromEngineThread, [index]);
    } else {
      engine?.finish();
      const stats = engine?.stats ?? emptyStats();
      engine = undefined;
      answer({ t: 'done', ...take(), stats });
    }
  } catch (e) {
    // The message only: never a stack with key material in scope. The chunk is released all the same.
    engine = undefined;
    answer({ t: 'error', message: e instanceof Error ? e.message.split('\n')[0] : String(e), input: e instanceof InputError, chunk });
  }
});
