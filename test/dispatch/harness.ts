/**
 * End-to-end harness: capture file + key log -> events, with the ProtocolDispatcher wired the way
 * the Engine should wire it (see the doc comment of src/pipeline/dispatch.ts). Kept independent
 * of engine.ts so the SMTP/FTP fixtures can be replayed before the Engine switches over.
 */
import { readFileSync } from 'node:fs';
import { CaptureReader } from '../../src/capture/index.js';
import { decodePacket } from '../../src/decode/index.js';
import { buildEvent, type EcsEvent } from '../../src/events/builder.js';
import { TcpFlowTable } from '../../src/tcp/index.js';
import { SessionCache, TlsFlowHandler } from '../../src/tls/index.js';
import { SecretsStore } from '../../src/tls/crypto/keylog.js';
import { createAppAnalyzer } from '../../src/analyzers/index.js';
import { DataChannelRegistry } from '../../src/analyzers/ftp/dataChannels.js';
import { ProtocolDispatcher, type TlsAppOverride } from '../../src/pipeline/dispatch.js';
import type { AnomalySink, CaptureSink, DecodedPacket, EcsFields, EventSink, FlowInfo, RawPacket, Timestamp } from '../../src/types.js';

export interface RunResult {
  events: EcsEvent[];
  anomalies: Record<string, number>;
  kinds: Record<string, number>;
}

/** `pcap`: a file path or the capture bytes. */
export function runCapture(pcap: string | Buffer, keylog?: string): RunResult {
  const events: EcsEvent[] = [];
  const anomalies: Record<string, number> = {};
  const kinds: Record<string, number> = {};
  const an: AnomalySink = { anomaly: (c) => void (anomalies[c] = (anomalies[c] ?? 0) + 1) };
  const secrets = new SecretsStore();
  if (keylog) secrets.addText(readFileSync(keylog, 'utf8'));
  const sessionCache = new SessionCache();
  const registry = new DataChannelRegistry(an);
  const dispatchers: ProtocolDispatcher[] = [];

  const newFlow = (flow: FlowInfo) => {
    // one ordinal per flow shared by the clear and the TLS sinks: unique event ids
    let ordinal = 0;
    let handler: TlsFlowHandler | undefined;
    const clearEvents: EventSink = {
      emit: (ds: string, f: EcsFields, ts: Timestamp, dec: boolean) => events.push(buildEvent(flow, undefined, ds, f, ts, dec, ordinal++)),
    };
    const makeTls = (fl: FlowInfo, app?: TlsAppOverride) => {
      const tlsEvents: EventSink = {
        emit: (ds: string, f: EcsFields, ts: Timestamp, dec: boolean) => events.push(buildEvent(fl, handler?.info, ds, f, ts, dec, ordinal++)),
      };
      handler = new TlsFlowHandler(
        fl,
        { secrets, rsaKeys: [], sessionCache, anomalies: an },
        tlsEvents,
        (info) => (app ? app(info, tlsEvents) : createAppAnalyzer(info.alpn, tlsEvents, an, {})),
      );
      return handler;
    };
    const d = new ProtocolDispatcher(flow, { makeTls, clearEvents, anomalies: an, dataChannels: registry });
    dispatchers.push(d);
    return d;
  };

  const flows = new TcpFlowTable(newFlow, an);
  const decoded: DecodedPacket = {
    ipVersion: 4, srcAddr: Buffer.alloc(0), dstAddr: Buffer.alloc(0), protocol: 0, srcPort: 0, dstPort: 0,
    seq: 0, ack: 0, flags: 0, window: 0, payload: Buffer.alloc(0), payloadLen: 0, tunnels: [], vlans: [],
  };
  let last: Timestamp = { sec: 0, nsec: 0 };
  const sink: CaptureSink = {
    anomaly: an.anomaly,
    packet(p: RawPacket) {
      last = p.ts;
      if (decodePacket(p, decoded, an) === 'tcp') flows.processSegment(decoded, p.ts, p.sensor);
    },
    secrets(_t: number, data: Buffer) {
      secrets.addText(data.toString('utf8'));
    },
  };
  const reader = new CaptureReader(sink);
  reader.push(typeof pcap === 'string' ? readFileSync(pcap) : pcap);
  reader.end();
  flows.closeAll(last);
  for (const d of dispatchers) kinds[d.kind] = (kinds[d.kind] ?? 0) + 1;
  return { events, anomalies, kinds };
}

/** Dot-path getter for event fields. */
export function get(o: unknown, path: string): unknown {
  let cur: unknown = o;
  for (const k of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[k];
  }
  return cur;
}
