import type { AnomalySink, EcsFields, EventSink, Timestamp } from '../../src/types.js';
import { Dir } from '../../src/types.js';
import { createHttpAnalyzer, type HttpOptions } from '../../src/analyzers/http/index.js';

export interface Emitted {
  dataset: string;
  fields: EcsFields;
  ts: Timestamp;
  decrypted: boolean;
}

export interface Harness {
  events: Emitted[];
  anomalies: string[];
  a: ReturnType<typeof createHttpAnalyzer>;
  /** Feeds one direction; `split` cuts the data into pieces of that size. */
  send(dir: Dir, data: Buffer | string, split?: number): void;
  close(): void;
  fields(): any[];
}

let clock = 1;

export function harness(alpn: string | undefined, opts?: Partial<HttpOptions>): Harness {
  const events: Emitted[] = [];
  const anomalies: string[] = [];
  const sink: EventSink = { emit: (dataset, fields, ts, decrypted) => events.push({ dataset, fields, ts, decrypted }) };
  const an: AnomalySink = {
    anomaly: (code) => {
      // The analyzer's safety net must never be needed: fail the test loudly if it is.
      if (code === 'http_internal_error') throw new Error('analyzer threw internally');
      anomalies.push(code);
    },
  };
  const a = createHttpAnalyzer(alpn, sink, an, opts);
  return {
    events,
    anomalies,
    a,
    send(dir, data, split) {
      const b = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
      const step = split ?? (b.length || 1);
      for (let i = 0; i < b.length; i += step) {
        // A fresh copy each call, then scribbled over: the analyzer must not keep references.
        const piece = Buffer.from(b.subarray(i, i + step));
        a.onData(dir, piece, { sec: clock++, nsec: 0 });
        piece.fill(0x5a);
      }
    },
    close() {
      a.onEnd(Dir.ToServer, 'fin', { sec: clock, nsec: 0 });
      a.onEnd(Dir.ToClient, 'fin', { sec: clock, nsec: 0 });
      a.onClose({ sec: clock++, nsec: 0 });
    },
    fields() {
      return events.map((e) => e.fields);
    },
  };
}

/** Removes capture timestamps so runs with different chunking compare equal. */
export function stripTs(evs: Emitted[]): unknown[] {
  return evs.map((e) => ({ dataset: e.dataset, fields: e.fields, decrypted: e.decrypted }));
}
