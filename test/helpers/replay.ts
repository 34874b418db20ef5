import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CaptureReader } from '../../src/capture/index.js';
import { Engine, type EngineOptions, type EngineStats } from '../../src/pipeline/engine.js';
import { loadKeys, type RsaKeySpec } from '../../src/pipeline/replay.js';
import type { EcsEvent } from '../../src/events/builder.js';

export interface ReplayResult {
  events: EcsEvent[];
  stats: EngineStats;
}

/** Runs a capture file through the in-process pipeline, the way `tlsdecrypt replay` does. */
export function replayFile(
  capture: string,
  keys: { keylogs?: string[]; rsaKeys?: RsaKeySpec[] } = {},
  opts: Partial<EngineOptions> = {},
  chunkSize = 1 << 16,
): ReplayResult {
  const events: EcsEvent[] = [];
  const engine = new Engine((ev) => events.push(JSON.parse(JSON.stringify(ev))), loadKeys(keys.keylogs ?? [], keys.rsaKeys ?? []), opts);
  const reader = new CaptureReader(engine);
  const data = readFileSync(capture);
  for (let o = 0; o < data.length; o += chunkSize) reader.push(data.subarray(o, o + chunkSize));
  reader.end();
  engine.finish();
  return { events, stats: engine.stats };
}

/** Reads a dotted ECS path from an event. */
export function field(ev: unknown, path: string): unknown {
  let cur: unknown = ev;
  for (const k of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[k];
  }
  return cur;
}

export function endpoint(ev: EcsEvent, side: 'source' | 'destination'): string {
  const ip = String(field(ev, `${side}.ip`));
  const port = field(ev, `${side}.port`);
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** Every capture.pcap / capture.pcapng below `dir`, sorted. */
export function captures(dir: string): string[] {
  const found: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) found.push(...captures(p));
    else if (/^capture\.pcap(ng)?$/.test(e.name)) found.push(p);
  }
  return found.sort();
}
