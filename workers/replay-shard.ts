/**
 * Child process of `replay --workers N` on a capture file: one engine shard that reads the whole
 * file itself and keeps only its own host pairs (src/pipeline/sharded.ts `shardFilter`). It gets its
 * configuration as the first IPC message, writes its events as NDJSON to stdout (a pipe to the
 * parent, which relays whole lines) and sends its final stats over IPC.
 */
import { CaptureReader } from '../src/capture/index.js';
import { Engine } from '../src/pipeline/engine.js';
import { NdjsonWriter } from '../src/pipeline/output.js';
import { InputError, loadKeys, pumpToWriter } from '../src/pipeline/replay.js';
import { shardFilter, type SplitShardConfig, type SplitShardReport } from '../src/pipeline/sharded.js';

async function runShard(cfg: SplitShardConfig): Promise<void> {
  const out = NdjsonWriter.toStdout();
  const engine = new Engine((ev) => out.write(ev), loadKeys(cfg.keylogs, cfg.rsaKeys), cfg.engine);
  // Not writerEngine: shard 0 counts the key files' malformed lines, once.
  await pumpToWriter(cfg.capture, new CaptureReader(shardFilter(engine, cfg.shard, cfg.shards), cfg.captureLimits), out);
  engine.finish();
  await out.close();
  report({ stats: engine.stats });
}

let reported = false;

function report(r: SplitShardReport): void {
  if (!process.connected) return;
  reported = true;
  process.send!(r, () => {
    if (process.connected) process.disconnect();
  });
}

// The parent went away (it was killed, or stopped because the reader of its output did): this
// shard's work has no one to go to, so it ends now instead of reading the rest of the capture.
process.on('disconnect', () => {
  if (!reported) process.exit(1);
});

process.once('message', (cfg: SplitShardConfig) => {
  runShard(cfg).catch((e: unknown) => {
    // The message only: never a stack with key material in scope, never the key files' content.
    const message = e instanceof Error ? e.message.split('\n')[0] : String(e);
    process.exitCode = 2;
    report({ error: message, input: e instanceof InputError });
  });
});
