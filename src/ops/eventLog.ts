/**
 * The log view's memory: the most recent events `run` delivered, as the NDJSON lines that went to
 * the events topic (so credentials are redacted exactly as there). A fixed ring of strings: adding
 * costs one array store and no parse; a query (the status page polls, scripts ask /api/events)
 * parses what it scans. It is a troubleshooting window onto the last N events, not a store: the
 * events topic is the record.
 */
import { DECRYPTION_TAG } from '../events/builder.js';

export const DEFAULT_LOG_VIEW_EVENTS = 1000;
/** Most events one answer carries. */
export const MAX_EVENTS_PER_ANSWER = 1000;

export interface EventQuery {
  /** Only events tagged "Decryption Detection". */
  decrypted?: boolean;
  /** event.dataset, exactly (http, smtp, ftp, tls.session, alert, ...). */
  dataset?: string;
  /** Part of the server: destination IP, `ip:port`, SNI or host name (case-insensitive). */
  server?: string;
  /** Free text: a case-insensitive substring of the whole event. */
  text?: string;
  /** Most events returned (newest first); default 200. */
  limit?: number;
}

export interface EventAnswer {
  /** Ring size. */
  capacity: number;
  /** Events held now (at most capacity). */
  held: number;
  /** Events seen since start (held + those that fell out of the ring). */
  seen: number;
  /** Held events that match the query. */
  matched: number;
  /** Matching events, newest first, at most `limit`. */
  events: Record<string, unknown>[];
}

type Obj = Record<string, unknown>;
const get = (o: unknown, ...path: string[]): unknown => {
  let v = o;
  for (const k of path) {
    if (!v || typeof v !== 'object') return undefined;
    v = (v as Obj)[k];
  }
  return v;
};
const str = (v: unknown): string => (typeof v === 'string' || typeof v === 'number' ? String(v) : '');

/** The strings an event's server is known by: destination ip, ip:port, SNI, host names. */
export function serverNames(ev: Obj): string[] {
  const ip = str(get(ev, 'destination', 'ip'));
  const port = str(get(ev, 'destination', 'port'));
  const names = [ip, ip && port ? (ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`) : '', str(get(ev, 'tls', 'client', 'server_name')), str(get(ev, 'destination', 'domain')), str(get(ev, 'url', 'domain'))];
  return names.filter((s) => s !== '');
}

export class RecentEvents {
  private readonly ring: string[];
  private next = 0;
  private count = 0;
  private total = 0;

  constructor(readonly capacity = DEFAULT_LOG_VIEW_EVENTS) {
    this.ring = new Array<string>(Math.max(0, capacity));
  }

  /** Events as serialized for the events topic (one JSON object each). */
  add(lines: readonly string[]): void {
    this.total += lines.length;
    if (this.capacity === 0) return;
    for (const l of lines) {
      this.ring[this.next] = l;
      this.next = (this.next + 1) % this.capacity;
      if (this.count < this.capacity) this.count++;
    }
  }

  query(q: EventQuery = {}): EventAnswer {
    const limit = Math.max(0, Math.min(q.limit ?? 200, MAX_EVENTS_PER_ANSWER));
    const text = q.text?.toLowerCase();
    const server = q.server?.toLowerCase();
    const events: Obj[] = [];
    let matched = 0;
    for (let i = 1; i <= this.count; i++) {
      const line = this.ring[(this.next - i + this.capacity) % this.capacity];
      // Cheap string tests first: most polls filter, and a miss needs no parse.
      if (text && !line.toLowerCase().includes(text)) continue;
      if (q.decrypted && !line.includes(DECRYPTION_TAG)) continue;
      let ev: Obj;
      try {
        ev = JSON.parse(line) as Obj;
      } catch {
        continue;
      }
      if (q.decrypted && !(Array.isArray(ev.tags) && ev.tags.includes(DECRYPTION_TAG))) continue;
      if (q.dataset && str(get(ev, 'event', 'dataset')) !== q.dataset) continue;
      if (server && !serverNames(ev).some((n) => n.toLowerCase().includes(server))) continue;
      matched++;
      if (events.length < limit) events.push(ev);
    }
    return { capacity: this.capacity, held: this.count, seen: this.total, matched, events };
  }
}

/** EventQuery from the query string of `/api/events?decrypted=1&dataset=http&server=..&q=..&limit=..`. */
export function eventQueryFromParams(p: URLSearchParams): EventQuery {
  const flag = p.get('decrypted');
  const limit = p.get('limit');
  const n = limit !== null && /^\d{1,7}$/.test(limit) ? Number(limit) : undefined;
  const s = (k: string): string | undefined => {
    const v = p.get(k);
    return v === null || v === '' ? undefined : v.slice(0, 200);
  };
  return {
    decrypted: flag === '1' || flag === 'true',
    dataset: s('dataset'),
    server: s('server'),
    text: s('q'),
    limit: n,
  };
}
