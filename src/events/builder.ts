import { digest } from './digest.js';
import type { EcsFields, FlowInfo, Timestamp } from '../types.js';
import { cleanWireStrings } from './text.js';

/** ECS version the field names follow. */
export const ECS_VERSION = '8.11.0';
/** The tag every event whose content came from decrypted traffic carries (CONTRACT.md). */
export const DECRYPTION_TAG = 'Decryption Detection';

/** The TLS facts the builder copies onto every event of a flow (read when the event is built). */
export interface TlsSummary {
  version?: string;
  cipher?: string;
  sni?: string;
  alpn?: string;
  resumed: boolean;
  established: boolean;
}

/** A finished event: a plain JSON-serialisable object. */
export type EcsEvent = Record<string, unknown> & {
  '@timestamp': string;
  event: { id: string; kind: string; dataset: string; [k: string]: unknown };
  network: { community_id: string; [k: string]: unknown };
};

const CATEGORY: Record<string, { category: string[]; type: string[]; protocol: string }> = {
  'tls.session': { category: ['network'], type: ['connection'], protocol: 'tls' },
  http: { category: ['network', 'web'], type: ['protocol'], protocol: 'http' },
  smtp: { category: ['network', 'email'], type: ['protocol'], protocol: 'smtp' },
  ftp: { category: ['network', 'file'], type: ['protocol'], protocol: 'ftp' },
};

/** ISO 8601 with microseconds (as Zeek and most SIEM pipelines carry them). */
export function isoTimestamp(t: Timestamp): string {
  // The 'YYYY-MM-DDTHH:MM:SS.' prefix depends on the whole seconds only: remembered for the last one.
  let prefix: string;
  if (t.sec === lastIsoSec && t.nsec >= 0 && t.nsec < 1e9) prefix = lastIsoPrefix;
  else {
    const ms = t.sec * 1000 + Math.floor(t.nsec / 1e6);
    prefix = new Date(ms).toISOString().slice(0, 20); // YYYY-MM-DDTHH:MM:SS.mmmZ
    if (Number.isInteger(t.sec) && t.nsec >= 0 && t.nsec < 1e9) {
      lastIsoSec = t.sec;
      lastIsoPrefix = prefix;
    }
  }
  const micros = Math.floor(t.nsec / 1000)
    .toString()
    .padStart(6, '0');
  return prefix + micros + 'Z';
}
let lastIsoSec = NaN;
let lastIsoPrefix = '';

/**
 * Deterministic event id: the same input gives the same id (CONTRACT.md), so consumers can
 * de-duplicate re-deliveries. Built from the flow identity (Community ID + first-packet time,
 * which separates port reuse), the dataset and the event's ordinal within its flow.
 */
export function eventId(flow: FlowInfo, dataset: string, ordinal: number): string {
  return digest('sha256', `${flow.communityId}|${flow.start.sec}.${flow.start.nsec}|${dataset}|${ordinal}`, 'base64url').slice(0, 22);
}

/** Recursively merges `src` into `dst` (objects merge, everything else overwrites). */
export function deepMerge(dst: Record<string, unknown>, src: Record<string, unknown>): Record<string, unknown> {
  // for-in, not Object.keys: no key array per merge (fields are plain objects: own keys only)
  for (const k in src) {
    const v = src[k];
    if (v === undefined) continue;
    const cur = dst[k];
    if (isPlainObject(v) && isPlainObject(cur)) deepMerge(cur, v);
    else dst[k] = v;
  }
  return dst;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !Buffer.isBuffer(v);
}

/**
 * Builds the common ECS fields around an analyzer's dataset fields: @timestamp, ecs, event.*,
 * source/destination (source = the TCP client), network.*, tls.* and tags.
 */
export function buildEvent(
  flow: FlowInfo,
  tls: TlsSummary | undefined,
  dataset: string,
  fields: EcsFields,
  ts: Timestamp,
  decrypted: boolean,
  ordinal: number,
): EcsEvent {
  const cat = CATEGORY[dataset] ?? { category: ['network'], type: ['protocol'], protocol: dataset };
  const kind = (fields.event as { kind?: string } | undefined)?.kind ?? 'event';
  const ev: Record<string, unknown> = {
    '@timestamp': isoTimestamp(ts),
    ecs: { version: ECS_VERSION },
    event: {
      kind,
      category: cat.category,
      type: cat.type,
      dataset,
      module: 'tlsdecrypt',
      id: eventId(flow, dataset, ordinal),
    },
    source: { ip: flow.clientIp, port: flow.clientPort },
    destination: { ip: flow.serverIp, port: flow.serverPort },
    network: {
      type: flow.ipVersion === 6 ? 'ipv6' : 'ipv4',
      transport: 'tcp',
      protocol: cat.protocol,
      community_id: flow.communityId,
    },
  };
  if (flow.sensor) ev.observer = { name: flow.sensor };
  if (tls && (tls.version || tls.cipher || tls.sni || dataset === 'tls.session' || decrypted)) {
    const t: Record<string, unknown> = {};
    if (tls.version) {
      t.version = tls.version;
      t.version_protocol = 'tls';
    }
    if (tls.cipher) t.cipher = tls.cipher;
    if (tls.sni) t.client = { server_name: tls.sni };
    if (tls.alpn) t.next_protocol = tls.alpn;
    t.resumed = tls.resumed;
    if (dataset === 'tls.session') t.established = tls.established;
    ev.tls = t;
  }
  // Wire text (analyzer fields, SNI, certificate names) follows one rule for control characters.
  cleanWireStrings(fields);
  if (ev.tls) cleanWireStrings(ev.tls as Record<string, unknown>);
  deepMerge(ev, fields);
  if (decrypted) ev.tags = [DECRYPTION_TAG];
  return ev as EcsEvent;
}
