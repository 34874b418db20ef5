/** Test helpers: a recording event/anomaly sink and a scripted two-direction conversation. */
import type { AnomalySink, EcsFields, EventSink, Timestamp } from '../../src/types.js';
import { Dir } from '../../src/types.js';

export interface Emitted {
  dataset: string;
  fields: EcsFields;
  ts: Timestamp;
  decrypted: boolean;
}

export class Recorder implements EventSink, AnomalySink {
  events: Emitted[] = [];
  anomalies: Record<string, number> = {};
  emit(dataset: string, fields: EcsFields, ts: Timestamp, decrypted: boolean): void {
    this.events.push({ dataset, fields: JSON.parse(JSON.stringify(fields)), ts, decrypted });
  }
  anomaly(code: string): void {
    this.anomalies[code] = (this.anomalies[code] ?? 0) + 1;
  }
}

export interface Stream {
  onData(dir: Dir, data: Buffer, ts: Timestamp): void;
}

let clock = 1_700_000_000;
export function ts(): Timestamp {
  return { sec: clock++, nsec: 0 };
}

/** Sends lines (CRLF appended unless the string already ends with \n) in one direction. */
export function c(s: Stream, ...lines: string[]): void {
  for (const l of lines) s.onData(Dir.ToServer, Buffer.from(l.endsWith('\n') ? l : l + '\r\n', 'utf8'), ts());
}
export function sv(s: Stream, ...lines: string[]): void {
  for (const l of lines) s.onData(Dir.ToClient, Buffer.from(l.endsWith('\n') ? l : l + '\r\n', 'utf8'), ts());
}

/** Dot-path getter. */
export function get(o: unknown, path: string): unknown {
  let cur: unknown = o;
  for (const k of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[k];
  }
  return cur;
}
